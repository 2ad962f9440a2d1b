"""The Korean admin in a real browser at 1400 px: index, job list, a job's page, the dashboard.

Same stack and Chromium as the demo page's test; screenshots go to tests/artifacts (or
SCREENSHOT_DIR) for a person to look at.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e import Stack
from tests.test_demo_browser import ARTIFACTS, korean_page

# dbagnostic: what a browser shows; the rows behind the pages are tested on both databases.
pytestmark = [pytest.mark.browser, pytest.mark.dbagnostic]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install -r requirements-dev.txt)"
)

WIDTH = 1400
# English the admin showed before it was translated (issue 17), and Django's default header.
ENGLISH = [
    "Django administration",
    "Django 관리",
    "Fitting results",
    "Llm message",
    "Reprocess (resume from failed step)",
    "Step images",
    "latency ms",
    "Failed tasks",
    "Access attempts",
    "Jobs per hour",
    "Dashboard",
]

FAILED_JOB = """
from tests.factories import make_job
from fitting.models import Item
from users.models import UserImage
photo = UserImage.objects.filter(owner__username="demo").first()
items = [Item.objects.filter(category=c).first() for c in ("top", "bottom")]
job = make_job(
    photo.owner, photo, *items, failed_step="bottom", done=["top"], error_code="GARMENT_NOT_PLACED",
    error_message="하의를 배치하지 못했습니다: 사진에 그 부위가 보이지 않습니다.",
    step_metrics={"top": {"latency_ms": 840}},
)
print("JOB", job.id)
"""


@pytest.fixture
def stack_with_jobs(tmp_path):
    stack = Stack(tmp_path).prepare()
    stack.start_web()
    stack.start_cluster()
    try:
        client = stack.client()
        done = stack.wait_for_job(client, stack.start_job(client))
        assert done["status"] == "completed"
        failed = next(line.split()[1] for line in stack.python(FAILED_JOB).splitlines() if line.startswith("JOB "))
        stack.failed_job = failed
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def admin_page():
    with korean_page(width=WIDTH, console_errors=False) as page:
        yield page


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def assert_korean(page) -> None:
    text = page.inner_text("body")
    assert "가상 피팅 관리" in text
    english = [label for label in ENGLISH if label in text]
    assert english == []


def test_the_admin_in_korean_at_1400_px(stack_with_jobs, admin_page):
    stack, page = stack_with_jobs, admin_page
    expect = sync_api.expect

    page.goto(stack.base + "/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-password")
    page.click("input[type=submit]")
    page.wait_for_url(stack.base + "/admin/")
    assert_korean(page)
    expect(page.locator("#dashboard-link a")).to_have_text("대시보드")
    shot(page, "admin-index.png")

    # The job list: every column on screen, nothing wider than the window.
    page.goto(stack.base + "/admin/fitting/fittingresult/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    assert_korean(page)
    headers = page.locator("#result_list thead th").all_inner_texts()
    for label in ("작업", "상태", "단계", "오류 코드", "소요 시간", "메시지"):
        assert any(label == h.strip() for h in headers), (label, headers)
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    table = page.locator("#changelist .results")  # scrolls sideways when the columns do not fit
    assert table.evaluate("e => e.scrollWidth <= e.clientWidth"), table.evaluate("e => [e.scrollWidth, e.clientWidth]")
    failed_row = page.locator("#result_list tbody tr", has_text=stack.failed_job[:8])
    expect(failed_row.locator(".field-error span")).to_have_attribute("title", re.compile("하의를 배치하지"))
    expect(failed_row.locator(".field-status_badge")).to_have_text("실패")
    shot(page, "admin-jobs.png")

    # The completed job's page: small renditions, times to the second, no row captions.
    page.locator("#result_list tbody tr", has_text="완료").locator("th a").click()
    expect(page.locator("h1")).to_have_text(re.compile("피팅 작업"))
    assert_korean(page)
    images = page.locator(".inline-group img")
    images.first.scroll_into_view_if_needed()  # lazy, and below the job's own sections: loaded once on screen
    expect(images.first).to_be_visible()
    for image in images.all():
        image.scroll_into_view_if_needed()  # lazy: loaded once on screen
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        assert image.evaluate("img => Math.max(img.naturalWidth, img.naturalHeight)") <= 240
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page.inner_text(".field-created_at"))
    assert page.locator(".inline-group td.original p").count() == 0
    assert page.locator(".inline-group .inline-deletelink").count() == 0  # read-only rows
    shot(page, "admin-job.png")

    # The dashboard: four charts, Korean; the local engine costs nothing.
    page.goto(stack.base + "/admin/")
    page.click("#dashboard-link a")
    page.wait_for_url(stack.base + "/admin/dashboard/")
    expect(page.locator("svg.chart")).to_have_count(4)
    assert_korean(page)
    text = page.inner_text("#content")
    for label in ("시간별 작업", "일별 작업", "단계·오류 코드별 실패", "단계별 지연 시간", "GARMENT_NOT_PLACED"):
        assert label in text, label
    expect(page.get_by_test_id("completed").locator(".value")).to_have_text("1")
    expect(page.get_by_test_id("cost").locator(".value")).to_have_text("$0.00")
    shot(page, "admin-dashboard.png")

    # Under the Content-Security-Policy: the costs page, and the admin's own widgets (a user's
    # form: date and time shortcuts, the permission picker) and the popup they open.
    page.goto(stack.base + "/admin/fitting/fittingresult/costs/")
    assert_korean(page)
    page.goto(stack.base + "/admin/auth/user/")
    page.locator("#result_list tbody tr", has_text="demo").locator("th a").click()
    expect(page.locator("#id_user_permissions_add_all")).to_be_visible()  # SelectFilter2.js ran
    page.fill("#id_last_login_0", "")
    page.locator("#id_last_login_0 + .datetimeshortcuts a").first.click()  # "today", DateTimeShortcuts.js
    expect(page.locator("#id_last_login_0")).not_to_have_value("")
    assert page.problems == []  # no CSP violation on any page above, each served with a policy
