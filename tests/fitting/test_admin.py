"""The staff admin: jobs (search, filters, detail, reprocess), the catalogue, photos, django-q2."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from core import images
from fitting.models import FittingResult, Item, Status
from fitting.services.items import item_image_clean
from tests.factories import image_bytes, make_job, make_user

CHANGELIST = "admin:fitting_fittingresult_changelist"


@pytest.fixture
def failed_job(user, photo, catalogue):
    return make_job(
        user,
        photo,
        catalogue["top"],
        catalogue["bottom"],
        catalogue["outer"],
        failed_step="bottom",
        done=["top"],
        step_metrics={"top": {"latency_ms": 812, "prompt_tokens": 10, "candidates_tokens": 5, "total_tokens": 15}},
    )


def listed(response) -> set:
    assert response.status_code == 200
    return {job.id for job in response.context["cl"].result_list}


# --- access ---------------------------------------------------------------------------------
def test_non_staff_user_is_sent_to_the_login_page(client, user, failed_job):
    client.force_login(user)
    for url in (reverse(CHANGELIST), reverse("admin:fitting_fittingresult_change", args=[failed_job.id])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    response = client.post(
        reverse(CHANGELIST), {"action": "reprocess_resume", "_selected_action": [failed_job.id], "index": 0}
    )
    assert response.status_code == 302
    failed_job.refresh_from_db()
    assert (failed_job.status, failed_job.attempt) == ("failed", 1)


def test_staff_with_view_permission_only_cannot_reprocess(client, db, failed_job):
    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_fittingresult"))
    client.force_login(viewer)
    response = client.get(reverse(CHANGELIST))
    assert failed_job.id in listed(response)
    assert "reprocess_resume" not in response.content.decode()
    response = client.post(reverse("admin:fitting_fittingresult_reprocess", args=[failed_job.id]), {"restart": "0"})
    assert response.status_code == 403
    failed_job.refresh_from_db()
    assert failed_job.attempt == 1


# --- changelist -----------------------------------------------------------------------------
def test_changelist_shows_the_job_columns(staff_client, failed_job, user, photo, catalogue):
    running = make_job(user, photo, catalogue["top"], status=Status.PROCESSING, started_at=timezone.now())
    message = "오늘 코디 정말 잘 어울려요! " * 4
    done = make_job(user, photo, catalogue["top"], status=Status.COMPLETED, llm_message=message)
    response = staff_client.get(reverse(CHANGELIST))
    assert listed(response) == {failed_job.id, running.id, done.id}
    html = response.content.decode()
    for job in (failed_job, running, done):
        assert str(job.id)[:8] in html
    assert "ENGINE_REJECTED" in html
    assert "12.0s" in html and "running" in html
    assert "background:#c0392b" in html  # the failed badge
    # Cut to 28 characters; the whole message is in the tooltip, and only there.
    assert f'<span class="message" title="{message}">{message[:27]}…</span>' in html
    assert html.count(message.strip()) == 1
    assert 'title="fake error 400: bad garment">ENGINE_REJECTED<' in html  # the error in a tooltip


def test_canceled_jobs_have_a_filter_and_a_badge(staff_client, failed_job, user, photo, catalogue):
    canceled = make_job(user, photo, catalogue["top"], status=Status.CANCELED, error_code="")
    response = staff_client.get(reverse(CHANGELIST), {"status__exact": "canceled"})
    assert listed(response) == {canceled.id}
    html = response.content.decode()
    assert "background:#6c757d" in html  # the canceled badge
    assert "?status__exact=canceled" in html  # offered by the status filter


def test_the_cancel_action_cancels_processing_jobs_and_skips_finished_ones(staff_client, user, photo, catalogue):
    running = make_job(user, photo, catalogue["top"], status=Status.PROCESSING)
    completed = make_job(user, photo, catalogue["top"], status=Status.COMPLETED)
    response = run_action(staff_client, "cancel", running, completed)
    found = messages_of(response)
    assert found[0] == "1 job canceled."
    assert found[1] == f"1 job skipped: it has already finished ({str(completed.id)[:8]} completed)."
    statuses = dict(FittingResult.objects.values_list("id", "status"))
    assert statuses == {running.id: "canceled", completed.id: "completed"}


def test_the_cancel_action_counts_a_canceled_job_as_canceled_and_skips_every_finished_status(
    staff_client, user, photo, catalogue
):
    canceled = make_job(user, photo, catalogue["top"], status=Status.CANCELED, error_code="")
    finished = [make_job(user, photo, catalogue["top"], status=status) for status in (Status.FAILED, Status.TIMEOUT)]
    found = messages_of(run_action(staff_client, "cancel", canceled, *finished))
    assert found[0] == "1 job canceled."
    assert found[1].startswith("2 jobs skipped: they have already finished (")
    for job in finished:
        assert f"{str(job.id)[:8]} {job.status}" in found[1]
    statuses = dict(FittingResult.objects.values_list("id", "status"))
    assert statuses == {canceled.id: "canceled", finished[0].id: "failed", finished[1].id: "timeout"}


def test_a_canceled_job_can_be_reprocessed_by_staff(staff_client, user, photo, catalogue):
    canceled = make_job(user, photo, catalogue["top"], catalogue["bottom"], status=Status.CANCELED, done=["top"])
    response = run_action(staff_client, "reprocess_resume", canceled)
    assert messages_of(response) == ["1 job reprocessed, resuming from the failed step."]
    canceled.refresh_from_db()
    assert (canceled.status, canceled.attempt) == ("processing", 2)
    assert list(canceled.images.values_list("step", flat=True)) == ["top"]


@pytest.mark.parametrize("term", ["prefix8", "prefix13", "hex12", "full", "full_hex", "upper"])
def test_search_finds_a_job_by_its_id_or_a_prefix(staff_client, user, photo, catalogue, term):
    jobs = [make_job(user, photo, catalogue["top"]) for _ in range(3)]
    target = jobs[1]
    text = str(target.id)
    search = {
        "prefix8": text[:8],
        "prefix13": text[:13],  # "1234abcd-5678", as PostgreSQL prints it
        "hex12": target.id.hex[:12],  # the same digits without the hyphen
        "full": text,
        "full_hex": target.id.hex,
        "upper": text[:8].upper(),
    }[term]
    assert listed(staff_client.get(reverse(CHANGELIST), {"q": search})) == {target.id}


def test_search_finds_jobs_by_username_email_and_message(staff_client, user, other_user, photo, catalogue):
    other_user.email = "bob@example.com"
    other_user.save()
    alice = make_job(user, photo, catalogue["top"], status=Status.COMPLETED, llm_message="네이비 티셔츠가 멋져요 ✨")
    bob = make_job(other_user, photo, catalogue["top"])
    assert listed(staff_client.get(reverse(CHANGELIST), {"q": "alice"})) == {alice.id}
    assert listed(staff_client.get(reverse(CHANGELIST), {"q": "bob@example"})) == {bob.id}
    assert listed(staff_client.get(reverse(CHANGELIST), {"q": "티셔츠"})) == {alice.id}
    assert listed(staff_client.get(reverse(CHANGELIST), {"q": "zzzz"})) == set()


def test_filters_by_status_failed_step_and_engine(staff_client, user, photo, catalogue):
    at_top = make_job(user, photo, catalogue["top"], failed_step="top")
    at_bottom = make_job(user, photo, catalogue["top"], catalogue["bottom"], failed_step="bottom", done=["top"])
    timed_out = make_job(
        user,
        photo,
        catalogue["top"],
        status=Status.TIMEOUT,
        failed_step="top",
        engine="gemini",
        model="gemini-2.5-flash-image",
        error_code="TIMEOUT",
    )
    completed = make_job(user, photo, catalogue["top"], status=Status.COMPLETED)
    url = reverse(CHANGELIST)
    assert listed(staff_client.get(url, {"status__exact": "failed"})) == {at_top.id, at_bottom.id}
    assert listed(staff_client.get(url, {"status__exact": "timeout"})) == {timed_out.id}
    assert listed(staff_client.get(url, {"failed_step__exact": "bottom"})) == {at_bottom.id}
    assert listed(staff_client.get(url, {"failed_step__exact": "top"})) == {at_top.id, timed_out.id}
    assert listed(staff_client.get(url, {"engine": "gemini"})) == {timed_out.id}
    assert listed(staff_client.get(url, {"engine": "local"})) == {at_top.id, at_bottom.id, completed.id}
    old = make_job(user, photo, catalogue["top"], created_at=timezone.now() - timedelta(days=10))
    # the "past 7 days" link of the date filter
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    week = {
        "created_at__gte": str(today - timedelta(days=7)),
        "created_at__lt": str(today + timedelta(days=1)),
    }
    assert listed(staff_client.get(url, week)) == {at_top.id, at_bottom.id, timed_out.id, completed.id}
    assert old.id in listed(staff_client.get(url))


def test_changelist_query_count_does_not_grow_with_rows(
    staff_client, user, photo, catalogue, django_assert_max_num_queries
):
    make_job(user, photo, catalogue["top"])
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get(reverse(CHANGELIST)).status_code == 200
    for index in range(30):
        make_job(make_user(f"user-{index}"), photo, catalogue["top"])
    with django_assert_max_num_queries(len(few)) as many:
        assert len(listed(staff_client.get(reverse(CHANGELIST)))) == 31
    assert len(many) == len(few)


# --- detail ---------------------------------------------------------------------------------
def test_detail_page_shows_the_error_timings_and_images(staff_client, failed_job, catalogue):
    response = staff_client.get(reverse("admin:fitting_fittingresult_change", args=[failed_job.id]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "fake error 400: bad garment" in html and "ENGINE_REJECTED" in html
    assert "<td>812</td>" in html and "<td>15</td>" in html  # latency and total tokens of top
    top_url = failed_job.images.get(step="top").image.url
    # Small renditions, linking to the full images.
    top = failed_job.images.get(step="top").image
    assert f'<a href="{top_url}" target="_blank"><img src="/thumbs/{top.name}"' in html
    for item in catalogue.values():
        assert f'<img src="/thumbs/{item.image.name}"' in html
    assert f'<img src="/thumbs/{failed_job.user_image.image.name}"' in html
    assert f'src="{top_url}"' not in html
    # read-only: no form inputs for the job's fields, no save button, but the reprocess buttons
    assert 'name="error_message"' not in html and 'name="_save"' not in html
    assert reverse("admin:fitting_fittingresult_reprocess", args=[failed_job.id]) in html


def test_detail_page_of_a_completed_job_has_no_reprocess_buttons(staff_client, user, photo, catalogue):
    job = make_job(user, photo, catalogue["top"], status=Status.COMPLETED, done=["top", "final"])
    response = staff_client.get(reverse("admin:fitting_fittingresult_change", args=[job.id]))
    assert response.status_code == 200
    assert reverse("admin:fitting_fittingresult_reprocess", args=[job.id]) not in response.content.decode()


def test_jobs_cannot_be_added_nor_deleted_without_the_delete_permission(staff_client, failed_job):
    assert staff_client.get(reverse("admin:fitting_fittingresult_add")).status_code == 403
    editor = make_user("editor", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(codename__in=["view_fittingresult", "change_fittingresult"]))
    staff_client.force_login(editor)
    response = staff_client.post(reverse("admin:fitting_fittingresult_delete", args=[failed_job.id]), {"post": "yes"})
    assert response.status_code == 403
    assert FittingResult.objects.filter(id=failed_job.id).exists()


# --- reprocess actions ----------------------------------------------------------------------
def run_action(client, action, *jobs):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(j.id) for j in jobs], "index": 0},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_resume_action_reprocesses_from_the_failed_step(staff_client, failed_job, django_capture_on_commit_callbacks):
    top_row = failed_job.images.get(step="top")
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(staff_client, "reprocess_resume", failed_job)
    assert response.status_code == 200
    assert messages_of(response) == ["1 job reprocessed, resuming from the failed step."]
    failed_job.refresh_from_db()
    assert (failed_job.status, failed_job.attempt, failed_job.failed_step, failed_job.error_code) == (
        "processing",
        2,
        None,
        "",
    )
    assert list(failed_job.images.all()) == [top_row]
    assert [q.task["args"] for q in OrmQ.objects.all()] == [(str(failed_job.id), 2)]


def test_restart_action_drops_the_step_images(staff_client, failed_job, django_capture_on_commit_callbacks):
    top_file = failed_job.images.get(step="top").image
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(staff_client, "reprocess_restart", failed_job)
    assert messages_of(response) == ["1 job reprocessed, from scratch."]
    failed_job.refresh_from_db()
    assert (failed_job.status, failed_job.attempt, failed_job.step_metrics) == ("processing", 2, {})
    assert failed_job.images.count() == 0
    assert not top_file.storage.exists(top_file.name)


def test_actions_skip_jobs_that_are_not_failed_or_timed_out(staff_client, failed_job, user, photo, catalogue):
    timed_out = make_job(user, photo, catalogue["top"], status=Status.TIMEOUT, failed_step="top")
    running = make_job(user, photo, catalogue["top"], status=Status.PROCESSING)
    completed = make_job(user, photo, catalogue["top"], status=Status.COMPLETED)
    response = run_action(staff_client, "reprocess_resume", failed_job, timed_out, running, completed)
    found = messages_of(response)
    assert found[0] == "2 jobs reprocessed, resuming from the failed step."
    assert found[1].startswith("2 jobs skipped: only failed, timed-out or canceled jobs can be reprocessed")
    assert f"{str(running.id)[:8]} processing" in found[1] and f"{str(completed.id)[:8]} completed" in found[1]
    statuses = dict(FittingResult.objects.values_list("id", "status"))
    assert statuses == {
        failed_job.id: "processing",
        timed_out.id: "processing",
        running.id: "processing",
        completed.id: "completed",
    }
    running.refresh_from_db()
    assert running.attempt == 1


@pytest.mark.parametrize(("restart", "images_left"), [("0", ["top"]), ("1", [])])
def test_change_page_buttons_reprocess_the_job(staff_client, failed_job, restart, images_left):
    change = reverse("admin:fitting_fittingresult_change", args=[failed_job.id])
    url = reverse("admin:fitting_fittingresult_reprocess", args=[failed_job.id])
    assert staff_client.get(url).status_code == 405
    response = staff_client.post(url, {"restart": restart})
    assert response.status_code == 302 and response["Location"] == change
    failed_job.refresh_from_db()
    assert (failed_job.status, failed_job.attempt) == ("processing", 2)
    assert list(failed_job.images.values_list("step", flat=True)) == images_left


# --- a job pinned to another engine than this server's ------------------------------------------
@pytest.fixture
def gemini_job(user, photo, catalogue, settings):
    settings.FITTING_ENGINE, settings.GEMINI_API_KEY = "gemini", "k"
    job = make_job(user, photo, catalogue["top"], catalogue["bottom"], failed_step="bottom", done=["top"])
    settings.FITTING_ENGINE = "local"  # this server runs the local engine
    return job


@pytest.mark.parametrize("action", ["reprocess_resume", "reprocess_restart"])
def test_reprocess_actions_skip_a_job_pinned_to_another_engine(staff_client, gemini_job, action):
    response = run_action(staff_client, action, gemini_job)
    (message,) = messages_of(response)
    assert message.startswith("1 job skipped: it was made by another engine than this server's local")
    assert str(gemini_job.id)[:8] in message
    gemini_job.refresh_from_db()
    assert (gemini_job.status, gemini_job.attempt, gemini_job.engine) == ("failed", 1, "gemini")
    assert OrmQ.objects.count() == 0


def test_switch_action_moves_the_job_to_this_servers_engine_from_scratch(
    staff_client, gemini_job, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(staff_client, "reprocess_switch", gemini_job)
    assert messages_of(response) == ["1 job reprocessed, from scratch with this server's engine."]
    gemini_job.refresh_from_db()
    assert (gemini_job.status, gemini_job.attempt, gemini_job.engine, gemini_job.model) == (
        "processing",
        2,
        "local",
        "local-preview-1",
    )
    assert not gemini_job.images.exists()
    assert [q.task["args"] for q in OrmQ.objects.all()] == [(str(gemini_job.id), 2)]


def test_change_page_of_a_job_pinned_to_another_engine_offers_only_the_switch(staff_client, gemini_job):
    html = staff_client.get(reverse("admin:fitting_fittingresult_change", args=[gemini_job.id])).content.decode()
    assert "Reprocess from scratch with this server's engine" in html
    assert 'name="switch" value="1"' in html and 'name="restart"' not in html
    url = reverse("admin:fitting_fittingresult_reprocess", args=[gemini_job.id])
    staff_client.post(url, {"restart": "0"})  # a stale page's resume button: refused
    gemini_job.refresh_from_db()
    assert (gemini_job.attempt, gemini_job.engine) == (1, "gemini")
    staff_client.post(url, {"switch": "1"})
    gemini_job.refresh_from_db()
    assert (gemini_job.attempt, gemini_job.engine, gemini_job.status) == (2, "local", "processing")


# --- catalogue and photos -------------------------------------------------------------------
def item_form(**upload):
    return {"name": "Linen shirt", "category": "top", "is_active": "on", **upload}


def test_item_admin_rejects_a_file_that_is_not_an_image(staff_client, db):
    upload = SimpleUploadedFile("shirt.png", b"this is not a PNG", content_type="image/png")
    response = staff_client.post(reverse("admin:fitting_item_add"), item_form(image=upload))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["image"]
    assert Item.objects.count() == 0


def test_item_admin_rejects_an_image_format_the_service_does_not_take(staff_client, db):
    upload = SimpleUploadedFile("shirt.gif", image_bytes(fmt="GIF"), content_type="image/gif")
    response = staff_client.post(reverse("admin:fitting_item_add"), item_form(image=upload))
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors.as_data()["image"]
    assert error.code == "IMAGE_INVALID"
    assert error.messages == ["The file is not a JPEG, PNG, WebP or HEIC image."]
    assert Item.objects.count() == 0


def test_item_admin_stores_the_content_hash_of_a_new_image(staff_client, db):
    data = image_bytes(fmt="PNG")
    upload = SimpleUploadedFile("shirt.png", data, content_type="image/png")
    response = staff_client.post(reverse("admin:fitting_item_add"), item_form(image=upload))
    assert response.status_code == 302
    item = Item.objects.get()
    stored = item.image.read()
    assert stored == item_image_clean(data)[0]  # stored as checked, without metadata
    assert item.content_hash == images.sha256_hex(stored)
    # changing the name keeps the image and its hash
    response = staff_client.post(
        reverse("admin:fitting_item_change", args=[item.id]), {**item_form(), "name": "Linen shirt 2"}
    )
    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.name, item.content_hash) == ("Linen shirt 2", images.sha256_hex(stored))


def test_item_admin_refuses_an_external_id_another_item_has(staff_client, db):
    make_item_with_external_id("sku-1")
    upload = SimpleUploadedFile("shirt.png", image_bytes(fmt="PNG"), content_type="image/png")
    response = staff_client.post(reverse("admin:fitting_item_add"), {**item_form(image=upload), "external_id": "sku-1"})
    assert response.status_code == 200
    assert "Another item has this external id." in response.content.decode()
    upload = SimpleUploadedFile("shirt.png", image_bytes(fmt="PNG"), content_type="image/png")
    response = staff_client.post(reverse("admin:fitting_item_add"), {**item_form(image=upload), "external_id": ""})
    assert response.status_code == 302  # any number of items without one
    assert sorted(Item.objects.values_list("external_id", flat=True)) == ["", "sku-1"]


def make_item_with_external_id(external_id: str) -> Item:
    from tests.factories import make_item

    item = make_item("top")
    item.external_id = external_id
    item.save()
    return item


def test_item_changelist_filters_and_toggles_active(staff_client, catalogue):
    url = reverse("admin:fitting_item_changelist")
    response = staff_client.get(url, {"category__exact": "bottom"})
    assert [i.id for i in response.context["cl"].result_list] == [catalogue["bottom"].id]
    assert f'<img src="/thumbs/{catalogue["bottom"].image.name}"' in response.content.decode()
    assert [i.id for i in staff_client.get(url, {"is_active__exact": "0"}).context["cl"].result_list] == []
    items = list(Item.objects.order_by("category", "id"))
    form = {"form-TOTAL_FORMS": len(items), "form-INITIAL_FORMS": len(items), "_save": "Save"}
    for index, item in enumerate(items):
        form[f"form-{index}-id"] = item.id
        if item.category != "outer":
            form[f"form-{index}-is_active"] = "on"
    assert staff_client.post(url, form).status_code == 302
    assert list(Item.objects.filter(is_active=False)) == [catalogue["outer"]]


def test_photo_admin_lists_thumbnails_and_searches_by_owner(staff_client, photo, other_user):
    from tests.factories import make_photo

    bobs = make_photo(other_user)
    url = reverse("admin:users_userimage_changelist")
    response = staff_client.get(url)
    html = response.content.decode()
    assert f'<img src="/thumbs/{photo.image.name}"' in html
    assert "64×96" in html
    assert [p.id for p in staff_client.get(url, {"q": "bob"}).context["cl"].result_list] == [bobs.id]
    assert staff_client.get(reverse("admin:users_userimage_add")).status_code == 403


# --- django-q2 --------------------------------------------------------------------------------
def test_admin_index_links_to_the_queue_and_the_sweep_schedule(staff_client):
    index = staff_client.get(reverse("admin:index")).content.decode()
    schedules = reverse("admin:django_q_schedule_changelist")
    assert f'href="{schedules}"' in index
    for name in ("success", "failure", "ormq"):
        assert reverse(f"admin:django_q_{name}_changelist") in index
    response = staff_client.get(schedules)
    assert response.status_code == 200
    assert "fitting-sweep" in response.content.decode()
