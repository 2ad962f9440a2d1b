"""CI: a venv made from requirements.txt alone runs a real job with the Gemini engine.

Run with that venv's python from the repository root. uvicorn, qcluster and manage.py run from
the clean venv; Gemini is the tests' fake server, reached through the real google-genai client.
A runtime import missing from requirements.txt fails here, not in production.
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e import PRODUCTION, Stack  # noqa: E402 - after the path
from tests.fakegemini import FakeGemini, answer_mode  # noqa: E402


def main() -> None:
    fake = FakeGemini().start()
    with tempfile.TemporaryDirectory() as tmp:
        # The production settings, on one machine: local files that the app serves to their owners.
        # The quality gate on, as in production: each step answered well (a garment composited onto
        # its region of the photo), so the checks (OpenCV, numpy) run and pass.
        engine = {"FITTING_ENGINE": "gemini", "GEMINI_API_KEY": "ci-key", "GEMINI_BASE_URL": fake.base_url}
        fake.script_image(*(answer_mode("good", category) for category in ("top", "bottom", "outer")))
        stack = Stack(
            Path(tmp), **PRODUCTION, **engine, MEDIA_STORAGE="local", SERVE_MEDIA="true", FITTING_QUALITY_GATE="on"
        )
        try:
            stack.prepare()
            stack.start_web()
            stack.start_cluster()
            with stack.client() as client:
                job = stack.wait_for_job(client, stack.start_job(client))
                result = client.get(job["resultImageUrl"])
            assert job["status"] == "completed", (job, stack.output("worker"))
            assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
            assert len(fake.image_requests) == len(job["steps"]), fake.image_requests  # no retry
            assert all(step["qualityPassed"] for step in job["steps"]), job["steps"]
            settings = stack.python("from django.conf import settings; print('DEBUG', settings.DEBUG)")
            assert "DEBUG False" in settings.splitlines(), settings  # the production settings, really
            print(f"clean install: {sys.executable}: job completed by the gemini engine, {len(job['steps'])} steps")
        finally:
            stack.stop()
            fake.stop()


if __name__ == "__main__":
    main()
