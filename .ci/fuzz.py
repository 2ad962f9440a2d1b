"""Fuzz the running API with schemathesis against its own OpenAPI schema (run by .ci/run).

Starts uvicorn on a fresh SQLite database with the demo data, then runs schemathesis with
a bounded number of examples per operation: no 5xx, every response conforming to the schema.
``DELETE /api/users/me`` is left out: it would delete the fuzzing user, and every later call
would only test the 401 (tests/test_erasure.py covers it). ``GET …/{job_id}/events`` is left
out too: on a job that exists it is a stream that stays open for minutes (until the job
ends), which schemathesis would wait on; tests/fitting/test_events.py and test_watcher.py
cover it. ``POST /api/auth/logout`` and ``/logout-all`` are left out: they revoke the fuzzing
token (tests/users/test_api_tokens.py covers them).
"""

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e import Stack


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), FITTING_START_RATE="100000/minute", DATABASE_URL="sqlite://").prepare()
        try:
            stack.start_web()
            stack.start_cluster()
            command = [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"{stack.base}/api/schema/",
                "--url",
                stack.base,
                "-H",
                f"Authorization: Token {stack.token}",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "25",
                "--generation-deterministic",
                "--workers",
                "2",
                "--exclude-operation-id",
                "users_me_delete",
                "--exclude-operation-id",
                "api_virtual_fitting_events",
                "--exclude-operation-id",
                "api_auth_logout_create",
                "--exclude-operation-id",
                "api_auth_logout_all_create",
                *sys.argv[1:],
            ]
            return subprocess.run(command, check=False, timeout=1200).returncode
        finally:
            stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
