"""Webhooks of jobs: POST /api/virtual-fitting with webhookUrl, deliveries, retries, secrets.

Receivers are real HTTP servers on 127.0.0.1 (tests.servers.recording_server); jobs and
deliveries run through the ORM queue as a worker runs them (``run_queue``); signatures are
checked with the ``standardwebhooks`` package. Time is moved, never waited for.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import OrmQ
from rest_framework.test import APIClient
from standardwebhooks import Webhook, WebhookVerificationError

from fitting import tasks
from fitting.models import AttemptOutcome, DeliveryStatus, FittingResult, Status, WebhookAttempt, WebhookDelivery
from fitting.services.lifecycle import fitting_cancel
from fitting.webhooks import REQUEUE_AFTER, webhook_backoff
from tests.factories import make_job, run_now
from tests.helpers import body
from tests.servers import Reply, fake_dns, recording_server, tarpit

URL = "/api/virtual-fitting"
# Real commits: jobs and deliveries are enqueued on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def run_queue(limit: int = 50) -> list[tuple[str, object]]:
    """Run what is in the ORM queue, oldest first, as a worker would (tasks may enqueue more)."""
    ran = []
    for _ in range(limit):
        queued = OrmQ.objects.order_by("id").first()
        if queued is None:
            return ran
        task = queued.task
        queued.delete()
        ran.append((task["func"], import_string(task["func"])(*task["args"], **task.get("kwargs", {}))))
    raise AssertionError("the queue did not drain")


def make_due(delivery: WebhookDelivery) -> None:
    """The next attempt's time has come (instead of waiting for it)."""
    WebhookDelivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def deliveries(job_id) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(job_id=job_id).order_by("id"))


def attempts(delivery: WebhookDelivery) -> list[WebhookAttempt]:
    return list(delivery.attempts.order_by("number"))


def secret_of(api) -> str:
    response = api.get("/api/webhooks/secret")
    assert response.status_code == 200
    return response.json()["secret"]


def start(api, photo, *items, **extra) -> str:
    response = api.post(URL, body(photo, *items, **extra), format="json")
    assert response.status_code == 202, response.content
    return response.json()["jobId"]


@pytest.fixture
def dns(monkeypatch):
    return fake_dns(monkeypatch)


# --- the whole path --------------------------------------------------------------------------
def test_failed_first_delivery_is_retried_with_the_same_id_and_a_valid_signature(api, photo, catalogue):
    with recording_server([Reply(500, body=b"receiver down"), Reply(200)]) as receiver:
        job_id = start(api, photo, catalogue["top"], catalogue["bottom"], webhookUrl=f"{receiver.base}/hooks?x=1")
        run_queue()  # the job, then the first delivery: 500
        [delivery] = deliveries(job_id)
        assert delivery.event == "fitting.completed"
        assert delivery.status == DeliveryStatus.PENDING
        [first] = attempts(delivery)
        assert (first.status_code, first.outcome) == (500, AttemptOutcome.RETRY)
        assert first.error == "receiver down"
        assert delivery.next_attempt_at > timezone.now()  # backed off: not due yet
        assert tasks.webhook_sweep() == {"enqueued": 0, "givenUp": 0}
        make_due(delivery)
        assert tasks.webhook_sweep() == {"enqueued": 1, "givenUp": 0}
        run_queue()  # the second attempt: 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [(a.number, a.status_code, a.outcome) for a in attempts(delivery)] == [
        (1, 500, AttemptOutcome.RETRY),
        (2, 200, AttemptOutcome.DELIVERED),
    ]
    assert all(a.duration_ms >= 0 for a in attempts(delivery))
    one, two = receiver.received
    assert one.method == two.method == "POST"
    assert one.path == two.path == "/hooks?x=1"
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == delivery.webhook_id
    assert delivery.webhook_id.startswith("msg_")
    assert one.body == two.body  # the payload frozen at the event
    assert one.headers["Content-Type"] == "application/json"
    secret = secret_of(api)
    for request in (one, two):
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["type"] == "fitting.completed"
    job = api.get(f"{URL}/{job_id}").json()
    assert job["status"] == "completed"
    assert payload["data"] == job  # the job exactly as GET shows it
    assert payload["data"]["resultImageUrl"].startswith("http://testserver/media/")


def test_default_events_are_the_terminal_ones(api, photo, catalogue):
    with recording_server() as receiver:
        job_id = start(api, photo, catalogue["top"], catalogue["bottom"], webhookUrl=receiver.base)
        run_queue()
    assert [d.event for d in deliveries(job_id)] == ["fitting.completed"]
    assert [json.loads(r.body)["type"] for r in receiver.received] == ["fitting.completed"]
    job = api.get(f"{URL}/{job_id}").json()
    assert job["webhookUrl"] == receiver.base
    assert job["webhookEvents"] == ["fitting.completed", "fitting.failed", "fitting.timeout", "fitting.canceled"]


def test_subscribed_step_events_each_carry_the_job_as_it_was(api, photo, catalogue):
    with recording_server() as receiver:
        job_id = start(
            api,
            photo,
            catalogue["top"],
            catalogue["bottom"],
            webhookUrl=receiver.base,
            webhookEvents=["fitting.step_finished", "fitting.step_finished"],
        )
        run_queue()
    assert [d.event for d in deliveries(job_id)] == ["fitting.step_finished", "fitting.step_finished"]
    payloads = [json.loads(r.body) for r in receiver.received]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 2
    assert [[s["status"] for s in p["data"]["steps"]] for p in payloads] == [
        ["completed", "pending"],
        ["completed", "completed"],
    ]
    assert all(p["data"]["status"] == "processing" for p in payloads)
    assert api.get(f"{URL}/{job_id}").json()["webhookEvents"] == ["fitting.step_finished"]


def test_failed_job_sends_failed(api, photo, catalogue, settings):
    from fitting.services.progress import fitting_fail

    with recording_server() as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        OrmQ.objects.all().delete()  # the worker never ran it: the job fails another way
        fitting_fail(job=FittingResult.objects.get(id=job_id), step="top", code="ENGINE_ERROR", message="no")
        run_queue()
    [request] = receiver.received
    payload = json.loads(request.body)
    assert payload["type"] == "fitting.failed"
    assert payload["data"]["error"]["code"] == "ENGINE_ERROR"


def test_timed_out_job_sends_timeout(api, photo, catalogue):
    with recording_server() as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        OrmQ.objects.all().delete()  # its worker never came
        FittingResult.objects.filter(id=job_id).update(deadline_at=timezone.now() - timedelta(hours=1))
        tasks.sweep_fittings()
        run_queue()
    [request] = receiver.received
    assert json.loads(request.body)["type"] == "fitting.timeout"
    assert json.loads(request.body)["data"]["status"] == "timeout"


def test_canceled_job_sends_canceled(api, photo, catalogue):
    with recording_server() as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        OrmQ.objects.all().delete()  # canceled before a worker took it
        assert api.post(f"{URL}/{job_id}/cancel").status_code == 202
        run_queue()
    [request] = receiver.received
    assert json.loads(request.body)["type"] == "fitting.canceled"
    assert json.loads(request.body)["data"]["status"] == "canceled"


def test_result_from_cache_is_sent_by_a_worker_not_by_the_request(api, photo, catalogue, settings):
    settings.FITTING_RESULT_CACHE = True
    start(api, photo, catalogue["top"])
    run_queue()
    with recording_server() as receiver:
        response = api.post(URL, body(photo, catalogue["top"], webhookUrl=receiver.base), format="json")
        assert response.json()["status"] == "completed"
        assert receiver.received == []  # enqueued, not sent, in the web request
        run_queue()
    [request] = receiver.received
    payload = json.loads(request.body)
    assert payload["type"] == "fitting.completed"
    assert payload["data"]["cached"] is True
    assert payload["data"] == api.get(f"{URL}/{response.json()['jobId']}").json()


def test_job_without_webhook_makes_no_delivery(api, photo, catalogue):
    job_id = start(api, photo, catalogue["top"])
    run_queue()
    assert deliveries(job_id) == []
    job = api.get(f"{URL}/{job_id}").json()
    assert job["webhookUrl"] is None
    assert job["webhookEvents"] == []


# --- what is retried and what is final -----------------------------------------------------------
def _one_attempt(api, photo, catalogue, replies, **extra):
    with recording_server(replies) as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=f"{receiver.base}/in", **extra)
        run_queue()
    [delivery] = deliveries(job_id)
    return receiver, delivery, attempts(delivery)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_other_4xx_is_final(api, photo, catalogue, status):
    receiver, delivery, made = _one_attempt(api, photo, catalogue, [Reply(status)])
    assert [(a.status_code, a.outcome) for a in made] == [(status, AttemptOutcome.FAILED)]
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.next_attempt_at is None
    WebhookDelivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert tasks.webhook_sweep()["enqueued"] == 0
    assert len(receiver.received) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_408_429_and_5xx_are_retried(api, photo, catalogue, status):
    receiver, delivery, made = _one_attempt(api, photo, catalogue, [Reply(status)])
    assert [(a.status_code, a.outcome) for a in made] == [(status, AttemptOutcome.RETRY)]
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.next_attempt_at > timezone.now()
    assert len(receiver.received) == 1  # not again at once: later, by the sweep


def test_retry_after_is_honoured(api, photo, catalogue):
    _receiver, delivery, _made = _one_attempt(api, photo, catalogue, [Reply(429, {"Retry-After": "3600"})])
    assert delivery.next_attempt_at >= timezone.now() + timedelta(minutes=59)


def test_redirect_is_not_followed(api, photo, catalogue):
    with recording_server() as target:
        receiver, delivery, made = _one_attempt(
            api, photo, catalogue, [Reply(307, {"Location": f"{target.base}/elsewhere"})]
        )
    assert [(a.status_code, a.outcome) for a in made] == [(307, AttemptOutcome.FAILED)]
    assert len(receiver.received) == 1
    assert target.received == []
    assert delivery.status == DeliveryStatus.FAILED


def test_timeout_is_recorded_and_retried(api, photo, catalogue, settings):
    settings.FITTING_WEBHOOK_CONNECT_TIMEOUT = 1
    settings.FITTING_WEBHOOK_TIMEOUT = 1
    with tarpit() as port:
        job_id = start(api, photo, catalogue["top"], webhookUrl=f"http://127.0.0.1:{port}/in")
        run_queue()
    [delivery] = deliveries(job_id)
    [attempt] = attempts(delivery)
    assert attempt.status_code is None
    assert attempt.outcome == AttemptOutcome.RETRY
    assert "timed out" in attempt.error
    assert attempt.duration_ms >= 900
    assert delivery.status == DeliveryStatus.PENDING


def test_connection_refused_is_retried(api, photo, catalogue):
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening
        job_id = start(api, photo, catalogue["top"], webhookUrl=f"http://127.0.0.1:{closed.getsockname()[1]}/")
        run_queue()
    [delivery] = deliveries(job_id)
    assert [(a.status_code, a.outcome) for a in attempts(delivery)] == [(None, AttemptOutcome.RETRY)]


def test_no_retry_past_the_retry_window(api, photo, catalogue):
    with recording_server([Reply(500), Reply(503), Reply(200)]) as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        run_queue()
        [delivery] = deliveries(job_id)
        # 24 h later (moved, not waited for): the next failure is the last one.
        WebhookDelivery.objects.filter(id=delivery.id).update(
            created_at=timezone.now() - timedelta(hours=24),
            retry_until=timezone.now() + timedelta(seconds=30),
        )
        make_due(delivery)
        tasks.webhook_sweep()
        run_queue()
        delivery.refresh_from_db()
        assert [a.outcome for a in attempts(delivery)] == [AttemptOutcome.RETRY, AttemptOutcome.EXPIRED]
        assert delivery.status == DeliveryStatus.FAILED
        make_due(delivery)
        assert tasks.webhook_sweep()["enqueued"] == 0
    assert len(receiver.received) == 2


def test_sweep_gives_up_a_delivery_long_past_its_window(api, photo, catalogue):
    with recording_server([Reply(500)]) as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        run_queue()
    [delivery] = deliveries(job_id)
    WebhookDelivery.objects.filter(id=delivery.id).update(
        retry_until=timezone.now() - timedelta(hours=2), next_attempt_at=timezone.now() - timedelta(hours=2)
    )
    assert tasks.webhook_sweep() == {"enqueued": 0, "givenUp": 1}
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED


def test_backoff_grows_with_jitter_and_is_capped():
    for number, full in [(1, 60), (2, 120), (3, 240), (8, 7680)]:
        delays = {webhook_backoff(number).total_seconds() for _ in range(20)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jittered
    assert webhook_backoff(30) <= timedelta(hours=6)
    assert webhook_backoff(1, "900") >= timedelta(seconds=900)


def test_a_task_delivered_twice_makes_one_attempt(api, photo, catalogue):
    with recording_server() as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        run_queue()
        [delivery] = deliveries(job_id)
        assert tasks.webhook_deliver(delivery.id, 1) == "skipped"
    assert len(receiver.received) == 1


def test_delivery_of_a_deleted_job_is_dropped(api, photo, catalogue):
    with recording_server() as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        [job_task] = OrmQ.objects.all()
        job_task.delete()
        tasks.run_fitting(job_id, 1)
        assert api.delete(f"{URL}/{job_id}").status_code == 204
        assert [result for _func, result in run_queue()] == ["skipped"]
    assert receiver.received == []
    assert not WebhookDelivery.objects.exists()


def test_lost_queue_message_is_enqueued_again_by_the_sweep(api, photo, catalogue):
    with recording_server() as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        [job_task] = OrmQ.objects.all()
        job_task.delete()
        tasks.run_fitting(job_id, 1)
        OrmQ.objects.all().delete()  # the delivery's message is lost
        [delivery] = deliveries(job_id)
        assert tasks.webhook_sweep()["enqueued"] == 0  # not yet: it may still be on its way
        WebhookDelivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now() - REQUEUE_AFTER)
        assert tasks.webhook_sweep()["enqueued"] == 1
        run_queue()
    assert len(receiver.received) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


# --- SSRF -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://user:pw@127.0.0.1/",
        "not a url",
    ],
)
def test_forbidden_webhook_url_is_refused_at_post(api, photo, catalogue, url):
    response = api.post(URL, body(photo, catalogue["top"], webhookUrl=url), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_WEBHOOK_URL"
    assert response.json()["error"]["field"] == "webhookUrl"
    assert not FittingResult.objects.exists()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/hook", "http://[::1]/", "http://10.0.0.8/", "http://intranet.test/"]
)
def test_private_addresses_are_refused_unless_allowed(api, photo, catalogue, settings, dns, url):
    dns["intranet.test"] = ["192.168.1.20"]
    settings.FITTING_WEBHOOK_ALLOW_PRIVATE = False
    response = api.post(URL, body(photo, catalogue["top"], webhookUrl=url), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_WEBHOOK_URL"
    settings.FITTING_WEBHOOK_ALLOW_PRIVATE = True
    assert api.post(URL, body(photo, catalogue["top"], webhookUrl=url), format="json").status_code == 202


def test_photo_errors_come_before_webhook_errors(api, catalogue):
    response = api.post(
        URL, {"items": [{"itemId": catalogue["top"].id, "category": "top"}], "webhookUrl": "ftp://x"}, format="json"
    )
    assert response.json()["error"]["code"] == "PHOTO_REQUIRED"


def test_address_that_changes_after_post_is_refused_at_delivery(api, photo, catalogue, dns):
    """DNS rebinding: fine when the job was posted, the cloud metadata address when delivering."""
    with recording_server() as receiver:
        dns["hook.test"] = ["127.0.0.1"]
        job_id = start(api, photo, catalogue["top"], webhookUrl=f"http://hook.test:{receiver.port}/in")
        dns["hook.test"] = ["169.254.169.254"]
        run_queue()
    assert receiver.received == []
    [delivery] = deliveries(job_id)
    [attempt] = attempts(delivery)
    assert attempt.outcome == AttemptOutcome.REFUSED
    assert attempt.status_code is None
    assert "169.254.169.254" in attempt.error
    assert delivery.status == DeliveryStatus.FAILED


def test_delivery_goes_to_the_address_checked_at_delivery(api, photo, catalogue, dns):
    with recording_server() as receiver:
        dns["hook.test"] = ["127.0.0.1"]
        job_id = start(api, photo, catalogue["top"], webhookUrl=f"http://hook.test:{receiver.port}/in")
        run_queue()
    [request] = receiver.received
    assert request.headers["Host"] == f"hook.test:{receiver.port}"
    assert deliveries(job_id)[0].status == DeliveryStatus.DELIVERED


# --- request validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"webhookUrl": "http://127.0.0.1/", "webhookEvents": ["fitting.exploded"]}, "webhookEvents"),
        ({"webhookUrl": "http://127.0.0.1/", "webhookEvents": []}, "webhookEvents"),
        ({"webhookUrl": "http://127.0.0.1/", "webhookEvents": "fitting.completed"}, "webhookEvents"),
        ({"webhookUrl": "http://127.0.0.1/", "webhookEvents": ["fitting.step_started"]}, "webhookEvents"),
        ({"webhookEvents": ["fitting.completed"]}, "webhookEvents"),
        ({"webhookUrl": "http://127.0.0.1/" + "a" * 2000}, "webhookUrl"),
        ({"webhookUrl": ["http://127.0.0.1/"]}, "webhookUrl"),
    ],
)
def test_webhook_fields_are_validated(api, photo, catalogue, extra, field):
    response = api.post(URL, body(photo, catalogue["top"], **extra), format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["field"].startswith(field)


def test_idempotency_key_covers_the_webhook(api, photo, catalogue):
    headers = {"HTTP_IDEMPOTENCY_KEY": "k-1"}
    first = api.post(URL, body(photo, catalogue["top"], webhookUrl="http://127.0.0.1:9/a"), format="json", **headers)
    assert first.status_code == 202
    again = api.post(URL, body(photo, catalogue["top"], webhookUrl="http://127.0.0.1:9/a"), format="json", **headers)
    assert again.json()["jobId"] == first.json()["jobId"]
    other = api.post(URL, body(photo, catalogue["top"], webhookUrl="http://127.0.0.1:9/b"), format="json", **headers)
    assert other.status_code == 422


# --- the secret ---------------------------------------------------------------------------------
def test_secret_is_made_once_and_rotated(api, user, other_user):
    secret = secret_of(api)
    assert secret.startswith("whsec_")
    assert secret_of(api) == secret
    Webhook(secret)  # the form standardwebhooks expects
    other = APIClient()
    other.force_authenticate(other_user)
    assert secret_of(other) != secret
    rotated = api.post("/api/webhooks/secret/rotate")
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != secret
    assert secret_of(api) == rotated.json()["secret"]


def test_secret_needs_authentication(db):
    client = APIClient()
    assert client.get("/api/webhooks/secret").status_code == 401
    assert client.post("/api/webhooks/secret/rotate").status_code == 401


def test_after_rotation_deliveries_verify_with_the_new_secret_only(api, photo, catalogue):
    old = secret_of(api)
    with recording_server([Reply(500), Reply(200)]) as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        run_queue()
        new = api.post("/api/webhooks/secret/rotate").json()["secret"]
        make_due(deliveries(job_id)[0])
        tasks.webhook_sweep()
        run_queue()
    before, after = receiver.received
    Webhook(old).verify(before.body, before.headers)
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(before.body, before.headers)
    assert before.headers["webhook-id"] == after.headers["webhook-id"]


# --- staff: the job's page, the delivery's page, redelivery -----------------------------------------
def test_job_admin_page_shows_deliveries_and_attempts(api, photo, catalogue, staff_client):
    from django.urls import reverse

    with recording_server([Reply(503, body=b"busy")]) as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        run_queue()
    [delivery] = deliveries(job_id)
    html = staff_client.get(reverse("admin:fitting_fittingresult_change", args=[job_id])).content.decode()
    assert delivery.webhook_id in html
    assert "fitting.completed" in html
    assert "<td>503</td>" in html
    assert "busy" in html
    assert reverse("admin:fitting_webhookdelivery_change", args=[delivery.id]) in html
    page = staff_client.get(reverse("admin:fitting_webhookdelivery_change", args=[delivery.id]))
    assert page.status_code == 200
    assert delivery.webhook_id in page.content.decode()
    listing = staff_client.get(reverse("admin:fitting_webhookdelivery_changelist"), {"q": str(job_id)[:8]})
    assert [d.id for d in listing.context["cl"].result_list] == [delivery.id]


@pytest.mark.parametrize("where", ["delivery", "job"])
def test_redeliver_action_sends_the_same_message_again(api, photo, catalogue, staff_client, where):
    from django.urls import reverse

    with recording_server([Reply(200), Reply(200)]) as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        run_queue()
        [delivery] = deliveries(job_id)
        assert delivery.status == DeliveryStatus.DELIVERED
        if where == "delivery":
            url, selected, action = reverse("admin:fitting_webhookdelivery_changelist"), delivery.id, "redeliver"
        else:
            url, selected, action = reverse("admin:fitting_fittingresult_changelist"), job_id, "redeliver_webhook"
        response = staff_client.post(url, {"action": action, "_selected_action": [selected], "index": 0})
        assert response.status_code == 302
        run_queue()
    first, again = receiver.received
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert first.body == again.body
    Webhook(secret_of(api)).verify(again.body, again.headers)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [(a.number, a.outcome) for a in attempts(delivery)] == [(1, "delivered"), (2, "delivered")]


def test_webhook_problem_never_breaks_the_job(api, photo, catalogue, monkeypatch, caplog):
    """The broker refuses the delivery's message: the job still completes, and the sweep
    enqueues the delivery once the broker is back."""
    from django_q.conf import Conf

    with recording_server() as receiver:
        job_id = start(api, photo, catalogue["top"], webhookUrl=receiver.base)
        [job_task] = OrmQ.objects.all()
        job_task.delete()
        monkeypatch.setattr(Conf, "ORM", "missing-alias")  # the broker is down
        tasks.run_fitting(job_id, 1)
        assert FittingResult.objects.get(id=job_id).status == "completed"
        assert "webhook delivery not enqueued" in caplog.text
        [delivery] = deliveries(job_id)
        monkeypatch.setattr(Conf, "ORM", "default")
        WebhookDelivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now() - REQUEUE_AFTER)
        tasks.webhook_sweep()
        run_queue()
    assert len(receiver.received) == 1


# --- the delivery row commits with the change it reports (issue 25, 12(c)) ---------------------
class Rollback(Exception):
    pass


def subscribed_job(user, photo, item, *events: str) -> FittingResult:
    return make_job(
        user,
        photo,
        item,
        status=Status.PROCESSING,
        webhook_url="https://hooks.example.com/in",
        webhook_events=list(events),
    )


@pytest.mark.django_db(transaction=False)
def test_a_delivery_rolls_back_with_the_change_it_reports(user, photo, catalogue):
    job = subscribed_job(user, photo, catalogue["top"], "fitting.canceled")
    with pytest.raises(Rollback), transaction.atomic():
        fitting_cancel(job=job)
        [delivery] = deliveries(job.id)  # written with the change, before any commit
        assert delivery.event == "fitting.canceled"
        assert json.loads(delivery.payload)["data"]["status"] == "canceled"
        raise Rollback  # the change's transaction does not commit
    assert deliveries(job.id) == []
    job.refresh_from_db()
    assert job.status == Status.PROCESSING


@pytest.mark.django_db(transaction=False)
def test_a_committed_change_has_its_delivery_without_any_on_commit_hook(
    user, photo, catalogue, django_capture_on_commit_callbacks
):
    """A crash between the commit and its hooks loses no webhook: the row is there, and the sweep sends it."""
    job = subscribed_job(user, photo, catalogue["top"], "fitting.step_finished", "fitting.completed")
    with django_capture_on_commit_callbacks(execute=False) as hooks:
        run_now(job)  # each change commits (inside the test's transaction); no hook runs
    assert hooks  # the event streams' notices and the enqueueing, never run
    assert [d.event for d in deliveries(job.id)] == ["fitting.step_finished", "fitting.completed"]
    assert not OrmQ.objects.exists()  # nothing was enqueued
    for delivery in deliveries(job.id):
        assert delivery.status == DeliveryStatus.PENDING
        make_due(delivery)
    assert tasks.webhook_sweep() == {"enqueued": 2, "givenUp": 0}
    assert OrmQ.objects.count() == 2
