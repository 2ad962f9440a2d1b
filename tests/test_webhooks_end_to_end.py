"""A webhook through real processes: uvicorn, a qcluster and a receiver on 127.0.0.1.

The receiver fails the first delivery; the retry (made due and swept, rather than waited
for) reaches it with the same webhook-id, and both signatures verify with the
``standardwebhooks`` package against the secret the API gives the owner.
"""

import json

import pytest
from standardwebhooks import Webhook

from tests.e2e import wait_until
from tests.servers import Reply, recording_server

pytestmark = pytest.mark.queue


def test_webhook_retried_by_a_real_qcluster_with_the_same_id(stack):
    with recording_server([Reply(500, body=b"not yet"), Reply(204)]) as receiver, stack.client() as client:
        body = {
            "userPhotoUrl": stack.photo_url,
            "items": stack.one_item_per_category(client),
            "webhookUrl": f"{receiver.base}/webhooks/fitting",
        }
        response = client.post("/api/virtual-fitting", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        job = stack.wait_for_job(client, job_id)
        assert job["status"] == "completed", job
        wait_until(lambda: len(receiver.received) == 1, 60, "the first delivery")
        # The worker recorded the failed attempt and backed off; make the retry due and sweep.
        stack.python(
            "from django.utils import timezone\nfrom fitting.models import WebhookDelivery\n"
            "from fitting.tasks import webhook_sweep\n"
            "WebhookDelivery.objects.update(next_attempt_at=timezone.now())\n"
            "print(webhook_sweep())"
        )
        wait_until(lambda: len(receiver.received) == 2, 60, "the retried delivery")
        secret = client.get("/api/webhooks/secret").json()["secret"]
        shown = client.get(f"/api/virtual-fitting/{job_id}").json()
    first, second = receiver.received
    assert first.path == second.path == "/webhooks/fitting"
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    for request in (first, second):
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["type"] == "fitting.completed"
        assert payload["data"] == shown
    out = stack.python(
        "import json\nfrom fitting.models import WebhookAttempt\n"
        "print('ROWS', json.dumps([[a.number, a.status_code, a.outcome, a.delivery.status, a.delivery.webhook_id]"
        " for a in WebhookAttempt.objects.order_by('number')]))"
    )
    rows = json.loads(next(line[5:] for line in out.splitlines() if line.startswith("ROWS ")))
    webhook_id = first.headers["webhook-id"]
    assert rows == [[1, 500, "retry", "delivered", webhook_id], [2, 204, "delivered", "delivered", webhook_id]]
