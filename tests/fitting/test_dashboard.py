"""The staff dashboard: its numbers against known jobs, and the page (Korean, SVG, staff only)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from fitting import costs
from fitting.models import FittingRating, RatingReason, Status, StepAttempt, UsageDay
from fitting.selectors import fitting_dashboard, prompt_comparison
from tests.factories import make_job, make_user

NOW = timezone.now().replace(minute=30, second=0, microsecond=0)


def latency(*values: int) -> dict:
    steps = ("top", "bottom", "outer")
    return {step: {"latency_ms": value} for step, value in zip(steps, values, strict=False)}


@pytest.fixture
def known_jobs(user, photo, catalogue):
    top = catalogue["top"]

    def job(status, hours_ago, **fields):
        created = NOW - timedelta(hours=hours_ago)
        return make_job(user, photo, top, status=status, created_at=created, finished_at=created, **fields)

    return {
        "done_now": job(Status.COMPLETED, 0.1, llm_message="좋아요! ✨", step_metrics=latency(100)),
        "failed_3h": job(Status.FAILED, 3, failed_step="bottom", step_metrics=latency(200)),
        "timeout_2d": job(Status.TIMEOUT, 48, failed_step="top", error_code="TIMEOUT", step_metrics=latency(300)),
        "cached_1d": job(Status.COMPLETED, 24, cached=True, llm_message="좋아요! ✨", step_metrics=latency(9999)),
        "no_message": job(
            Status.COMPLETED, 30, llm_message=None, step_metrics={**latency(400), "message": {"latency_ms": 50}}
        ),
        "too_old": job(Status.FAILED, 40 * 24, failed_step="top", step_metrics=latency(5000)),
    }


def test_the_dashboard_counts_the_known_jobs(known_jobs):
    data = fitting_dashboard(now=NOW)
    assert len(data.hours) == 24 and len(data.days) == 30
    # Per hour: the last bucket is this hour, three hours ago is four from the end.
    assert data.per_hour["completed"][-1] == 1
    assert data.per_hour["failed"][-4] == 1
    assert sum(sum(v) for v in data.per_hour.values()) == 2  # the others are older than 24 h
    # Per day: the 40-day-old job is out of the window.
    assert data.per_day["timeout"][-3] == 1
    assert sum(sum(v) for v in data.per_day.values()) == 5
    assert data.failures == [("bottom", "ENGINE_REJECTED", 1), ("top", "TIMEOUT", 1)]
    assert (data.completed, data.cached, data.message_failures) == (3, 1, 1)
    # Latency of the top step over the non-cached jobs of the last 7 days: 100, 200, 300, 400.
    assert data.latency["top"] == (200, 400, 4)
    assert data.latency["message"] == (50, 50, 1)
    assert data.latency_jobs == 4


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)  # the default language: Korean
    return client


def test_the_dashboard_page_is_korean_svg_linked_from_the_index(staff, known_jobs):
    index = staff.get(reverse("admin:index")).content.decode()
    assert reverse("admin:dashboard") in index and "대시보드" in index
    response = staff.get(reverse("admin:dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="chart"') == 4
    for korean in ("시간별 작업", "일별 작업", "단계·오류 코드별 실패", "단계별 지연 시간", "완료", "실패"):
        assert korean in html, korean
    assert "ENGINE_REJECTED" in html and "하의" in html  # the failure row: step (in Korean) and code
    assert 'data-testid="cost"><div class="value">$0.00</div>' in html  # the local engine costs nothing
    assert "<script" not in html.split('id="content"')[1]  # no chart library


def test_the_dashboard_is_for_staff_who_may_see_jobs(client, db):
    url = reverse("admin:dashboard")
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(make_user("plain"))
    assert client.get(url).status_code == 302
    staff = make_user("staff", is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 403
    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_fittingresult"))
    client.force_login(viewer)
    assert client.get(url).status_code == 200


def test_the_dashboard_shows_the_estimated_cost_of_30_days(staff, settings, user):
    """Read from the usage ledger (fitting.costs), as the cost page does."""
    settings.FITTING_PRICES = {"priced-model": {"input": 1, "output": 30}}
    for days_ago in (0, 29, 31):
        UsageDay.objects.create(
            user=user,
            day=timezone.localdate() - timedelta(days=days_ago),
            jobs_started=1,
            input_tokens=1_000_000,
            output_tokens=100_000,
            cost=Decimal(4),
        )
    html = staff.get(reverse("admin:dashboard")).content.decode()
    assert 'data-testid="cost"><div class="value">$8.00</div>' in html  # (1 + 3) × 2 days; 31 days ago is out
    costs.usage_add(user_id=user.pk, model="unpriced", output_tokens=1)
    html = staff.get(reverse("admin:dashboard")).content.decode()
    assert 'data-testid="cost"><div class="value">—</div>' in html  # a model without a price: no figure


def test_the_prompt_comparison_counts_each_version_with_intervals(staff, settings, user, photo, catalogue):
    """Per engine, model and prompt version: jobs, completion, the gate, the judge, ratings, cost."""
    settings.FITTING_PRICES = {"img": {"input": 1, "output": 30}}
    top = catalogue["top"]

    def job(version, status, *, attempts=(), rating=None, days_ago=1, cached=False):
        made = make_job(
            user,
            photo,
            top,
            status=status,
            engine="gemini",
            model="img",
            prompt_version=version,
            created_at=timezone.now() - timedelta(days=days_ago),
            input_tokens=1_000_000,
            output_tokens=100_000,
            cached=cached,
        )
        for number, (passed, judge) in enumerate(attempts, start=1):
            scores = {"checks": {}} if judge is None else {"checks": {}, "judge": {"score": judge}}
            StepAttempt.objects.create(
                job=made, category="top", number=number, passed=passed, scores=scores, outcome="accepted"
            )
        if rating is not None:
            FittingRating.objects.create(job=made, score=rating[0], reasons=rating[1])
        return made

    # v4: 3 jobs (2 completed); top steps: [fail, pass(judge 6)], [pass(judge 8)], [fail]
    job("v4", Status.COMPLETED, attempts=[(False, None), (True, 6)], rating=(2, ["face_changed", "fit"]))
    job("v4", Status.COMPLETED, attempts=[(True, 8)], rating=(4, ["fit"]))
    job("v4", Status.FAILED, attempts=[(False, None)])
    job("v4", Status.COMPLETED, attempts=[(True, 1)], days_ago=31)  # out of the window
    job("v4", Status.COMPLETED, cached=True)  # a cache hit says nothing of its prompt
    # v5: one completed job, one unchecked attempt (the gate off), no rating
    job("v5", Status.COMPLETED, attempts=[(None, None)])

    v4, v5 = prompt_comparison()
    assert (v4.prompt_version, v5.prompt_version) == ("v4", "v5")
    assert (v4.jobs, v4.completed, v4.attempts, v4.steps, v4.checked, v4.passed) == (3, 2, 4, 3, 4, 2)
    assert v4.mean_attempts == pytest.approx(4 / 3)
    assert (v4.judged, v4.judge_mean) == (2, pytest.approx(7.0))
    assert (v4.ratings, v4.rating_mean) == (2, pytest.approx(3.0))
    assert v4.reasons == {**dict.fromkeys(RatingReason.values, 0), "face_changed": 1, "fit": 2}
    assert (v4.input_tokens, v4.output_tokens) == (3_000_000, 300_000)
    assert (v5.jobs, v5.completed, v5.checked, v5.judge_mean, v5.ratings, v5.rating_mean) == (1, 1, 0, None, 0, None)

    html = staff.get(reverse("admin:dashboard")).content.decode()
    section = html.split('data-testid="prompt-comparison"')[1]
    assert "프롬프트 비교" in html and "품질 검사 통과율" in section and "완료 작업당 비용" in section
    row = section.split('data-testid="comparison-v4"')[1].split("</tr>")[0]
    # 2 of 3 completed: 67% (21–94%); 2 of 4 attempts passed: 50% (15–85%) (Wilson, 95%)
    assert "67% (21–94%)" in row and "50% (15–85%)" in row
    assert "7.0/10" in row and "(n=2)" in row and "3.00" in row
    assert "얼굴" in row and "100% (34–100%)" in row  # "fit" in both ratings; 1 of 2 face_changed: 50% (9–91%)
    assert "50% (9–91%)" in row
    # Three jobs of $4 each (1M input at $1, 100k output at $30), two completed: $6 each.
    assert "$6.0000" in row
    v5_row = section.split('data-testid="comparison-v5"')[1].split("</tr>")[0]
    assert "100% (21–100%)" in v5_row and "—" in v5_row
