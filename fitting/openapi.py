"""The event stream in the OpenAPI schema.

``GET /api/virtual-fitting/{job_id}/events`` is a plain async Django view (DRF views are
synchronous), which drf-spectacular does not see: this postprocessing hook adds it, with
its ``text/event-stream`` body and the JSON of each event (the ``Job`` schema).
"""

from __future__ import annotations

from django.conf import settings

PATH = "/api/virtual-fitting/{job_id}/events"


def _error(description: str, *codes: str) -> dict:
    return {
        "description": f"{description} Codes: {', '.join(codes)}.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def add_event_stream(result: dict, generator, request, public) -> dict:
    """SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]: the event stream's operation."""
    job = {"$ref": "#/components/schemas/Job"}
    result.setdefault("paths", {})[PATH] = {
        "get": {
            "operationId": "api_virtual_fitting_events",
            "summary": "Follow a job as a server-sent event stream",
            "description": (
                "A `text/event-stream`. First `retry: <ms>` (how long a browser waits before "
                "reconnecting), then at once one `job` event with the job as it is now, then one "
                "each time it changes:\n\n"
                "```\nevent: job\ndata: {the Job JSON, as GET /api/virtual-fitting/{job_id}}\n"
                "id: <the job's updatedAt in microseconds>\n\n```\n\n"
                "The stream ends after the event with a terminal status (completed, failed, "
                "timeout, canceled), when the job is deleted, or after FITTING_EVENTS_MAX_DURATION "
                "seconds. While nothing changes a comment line (`: keepalive`) comes every "
                "FITTING_EVENTS_HEARTBEAT seconds. A client that reconnects (with `Last-Event-ID` "
                "or not) gets the current state at once, not a replay of what it missed. "
                f"At most FITTING_EVENTS_PER_USER ({settings.FITTING_EVENTS_PER_USER}) streams of one "
                "user are open in one web process; one more is refused with 429. A proxy in front "
                "must not buffer the response (the response says `X-Accel-Buffering: no` to nginx)."
            ),
            "tags": ["api"],
            "parameters": [
                {"in": "path", "name": "job_id", "required": True, "schema": {"type": "string", "format": "uuid"}},
                {
                    "in": "header",
                    "name": "Last-Event-ID",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "Sent by browsers on reconnection; the stream starts with the current state.",
                },
            ],
            "security": [{"tokenAuth": []}, {"cookieAuth": []}],
            "responses": {
                "200": {
                    "description": "The job's events, each `data:` line being one Job (see x-event-data).",
                    "headers": {
                        "Cache-Control": {"schema": {"type": "string", "enum": ["no-cache"]}},
                        "X-Accel-Buffering": {"schema": {"type": "string", "enum": ["no"]}},
                    },
                    "content": {
                        "text/event-stream": {
                            "schema": {"type": "string"},
                            "example": "retry: 3000\n\nevent: job\ndata: {...}\nid: 1764244800123456\n\n",
                            "x-event-name": "job",
                            "x-event-data": job,
                        }
                    },
                },
                "401": _error("No or bad credentials.", "NOT_AUTHENTICATED"),
                "404": _error("Not yours, or does not exist.", "NOT_FOUND"),
                "429": _error("Too many streams of this user open in this process.", "THROTTLED"),
            },
        }
    }
    return result
