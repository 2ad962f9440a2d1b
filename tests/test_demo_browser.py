"""The demo page in a real browser: log in, upload a photo, pick garments, watch the job finish.

Headless Chromium (Debian's package, never a downloaded browser) driven by Playwright,
against the app's real processes: uvicorn and a qcluster on a database of their own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e import ROOT, Stack

# dbagnostic: what a browser shows; the rows behind the pages are tested on both databases.
pytestmark = [pytest.mark.browser, pytest.mark.dbagnostic]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install -r requirements-dev.txt)"
)

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The network is closed in CI: background networking makes Chromium hang.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHOTO = ROOT / "demo" / "samples" / "person_drawn.png"
# Screenshots: tests/artifacts, or SCREENSHOT_DIR.
ARTIFACTS = Path(os.environ.get("SCREENSHOT_DIR") or ROOT / "tests" / "artifacts")


# Reports every Content-Security-Policy violation of the page to the test (reportCspViolation).
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.reportCspViolation(
    `${e.effectiveDirective} refused ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber}) on ${e.documentURI}`
  );
});
"""


def _csp_console_message(message) -> bool:
    return "Content Security Policy" in message.text or "Content-Security-Policy" in message.text


def _page_without_csp(response) -> bool:
    return response.request.resource_type == "document" and "content-security-policy" not in response.headers


@contextlib.contextmanager
def korean_page(*, width: int, console_errors: bool = True):
    """A Chromium page (Korean locale) whose ``problems`` list collects page errors, failed
    requests (but a closed event stream), every Content-Security-Policy violation (the
    ``securitypolicyviolation`` event and the console's report of it), any page served without
    a policy and, with ``console_errors``, console errors."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": width, "height": 900}, locale="ko-KR")
        page = context.new_page()
        page.set_default_timeout(20_000)
        problems: list[str] = []
        context.expose_binding("reportCspViolation", lambda source, text: problems.append(f"CSP violation: {text}"))
        context.add_init_script(CSP_LISTENER)
        page.on(
            "console",
            lambda m: (
                ((console_errors and m.type == "error") or _csp_console_message(m))
                and problems.append(f"console: {m.text}")
            ),
        )
        page.on("response", lambda r: _page_without_csp(r) and problems.append(f"no CSP header: {r.url}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on(
            "requestfailed", lambda r: _is_closed_stream(r) or problems.append(f"request failed: {r.url} {r.failure}")
        )
        page.problems = problems
        try:
            yield page
        finally:
            context.close()
            browser.close()


@pytest.fixture
def page():
    with korean_page(width=1100) as page:
        yield page


@pytest.fixture
def web(tmp_path):
    """The web process alone (seeded), for pages that start no job."""
    stack = Stack(tmp_path).prepare()
    stack.start_web()
    yield stack
    stack.stop()


def image_loaded(locator) -> bool:
    return locator.evaluate("img => img.complete && img.naturalWidth > 0")


def test_demo_page_uploads_a_photo_and_shows_each_step_and_the_result(stack, page):
    expect = sync_api.expect

    # Not logged in: the page sends us to the login form, which brings us back.
    page.goto(stack.base + "/")
    assert "/login/" in page.url
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo-password")
    page.click("[data-testid=login-submit]")
    page.wait_for_url(stack.base + "/")
    expect(page.get_by_test_id("username")).to_have_text("demo")
    # Before any job, the final image's placeholder is not shown (it was, as a broken image).
    expect(page.get_by_test_id("result")).to_be_hidden()
    expect(page.get_by_test_id("result-image")).to_be_hidden()
    expect(page.locator("[data-testid=catalogue] img")).to_have_count(8)  # with a dress and a pair of shoes
    for img in page.locator("[data-testid=catalogue] img, label.choice img").all():
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-before-any-job.png"), full_page=True)

    # The seeded photo is listed; a new upload is added and selected.
    expect(page.get_by_test_id("photo-choice")).to_have_count(1)
    page.set_input_files("[data-testid=photo-input]", str(PHOTO))
    expect(page.get_by_test_id("photo-status")).to_contain_text("uploaded")
    expect(page.get_by_test_id("photo-choice")).to_have_count(2)
    checked_photo = page.locator("[data-testid=photo-choice]:checked")
    expect(checked_photo).to_have_count(1)
    assert "/media/" in checked_photo.input_value()

    # Nothing picked: the API's 400 is shown.
    for category in ("top", "dress", "bottom", "outer", "shoes"):
        expect(page.get_by_test_id(f"item-{category}-none")).to_be_checked()
    page.click("[data-testid=start]")
    expect(page.get_by_test_id("error")).to_contain_text("INSUFFICIENT_ITEMS")
    assert [p for p in page.problems if "400" not in p] == []  # the browser logs the 400 itself
    page.problems.clear()

    # A dress clears the top and the bottom, and a top clears the dress: never a CATEGORY_CONFLICT.
    page.get_by_test_id("category-top").locator("input[type=radio]").nth(1).check()
    page.get_by_test_id("category-dress").locator("input[type=radio]").nth(1).check()
    expect(page.get_by_test_id("item-top-none")).to_be_checked()
    page.get_by_test_id("category-top").locator("input[type=radio]").nth(1).check()
    expect(page.get_by_test_id("item-dress-none")).to_be_checked()

    # One garment per category, every thumbnail loaded.
    for category in ("top", "bottom", "outer"):
        group = page.get_by_test_id(f"category-{category}")
        expect(group.locator("img")).to_have_count(2)
        assert all(image_loaded(img) for img in group.locator("img").all())
        # Small renditions, not the product photos themselves.
        assert all(
            img.evaluate("i => Math.max(i.naturalWidth, i.naturalHeight)") <= 240 for img in group.locator("img").all()
        )
        group.locator("input[type=radio]").nth(1).check()
    page.click("[data-testid=start]")
    expect(page.get_by_test_id("error")).to_be_hidden()

    # Followed over the event stream until the end.
    expect(page.locator("[data-testid=job-status][data-status=completed]")).to_have_count(
        1, timeout=180_000
    )  # a bound, not a window: a loaded two-core CI is slow
    for category in ("top", "bottom", "outer"):
        row = page.get_by_test_id(f"step-{category}")
        expect(row).to_have_attribute("data-status", "completed")
        image = page.get_by_test_id(f"step-{category}-image")
        expect(image).to_have_attribute("src", re.compile(rf"^{re.escape(stack.base)}/thumbs/results/"))
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    result = page.get_by_test_id("result-image")
    expect(result).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=result.element_handle())
    assert result.evaluate("img => [img.naturalWidth, img.naturalHeight]") == list(_size(PHOTO))
    expect(page.get_by_test_id("llm-message")).not_to_be_empty()
    # The local engine composites: the result is labelled a preview, not AI-generated.
    expect(page.get_by_test_id("disclosure")).to_have_attribute("data-ai-generated", "false")
    expect(page.get_by_test_id("disclosure")).to_contain_text("local-preview-1")
    message = page.get_by_test_id("llm-message").inner_text()
    assert 0 < len(message) <= 50 and "no message" not in message

    # Stars under the result: rate it, with a reason and a comment; the API has the rating.
    rating = page.get_by_test_id("rating")
    expect(rating).to_be_visible()
    expect(page.get_by_test_id("rating-save")).to_be_disabled()
    page.get_by_test_id("star-4").click()
    expect(page.get_by_test_id("star-4")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("star-5")).to_have_attribute("aria-pressed", "false")
    rating.locator('input[value="colour"]').check()
    page.get_by_test_id("rating-comment").fill("색이 조금 달라요")
    page.get_by_test_id("rating-save").click()
    expect(rating).to_have_attribute("data-score", "4")
    expect(page.get_by_test_id("rating-status")).to_contain_text("4/5")
    job_id = page.get_by_test_id("job-status").get_attribute("data-job-id")
    saved = page.evaluate(
        "id => fetch(`/api/virtual-fitting/${id}`, {credentials: 'same-origin'}).then(r => r.json())", job_id
    )["rating"]
    assert (saved["score"], saved["reasons"], saved["comment"]) == (4, ["colour"], "색이 조금 달라요")

    page.screenshot(path=str(ARTIFACTS / "demo-finished.png"), full_page=True)
    assert page.problems == []


def test_demo_page_asks_for_candidates_and_shows_them_side_by_side(tmp_path, page):
    """numSamples (issue 23) with the Gemini engine against the fake server: three candidates, best first."""
    from tests.fakegemini import FakeGemini

    expect = sync_api.expect
    fake = FakeGemini().start()
    stack = Stack(
        tmp_path,
        FITTING_ENGINE="gemini",
        GEMINI_API_KEY="test-key",
        GEMINI_BASE_URL=fake.base_url,
        FITTING_QUALITY_GATE="off",
        FITTING_RESULT_CACHE="false",
        FITTING_STEP_CACHE="false",
    ).prepare()
    try:
        stack.start_web()
        stack.start_cluster()
        page.goto(stack.base + "/")
        page.fill("#id_username", "demo")
        page.fill("#id_password", "demo-password")
        page.click("[data-testid=login-submit]")
        page.wait_for_url(stack.base + "/")
        expect(page.get_by_test_id("samples")).to_have_value("1")
        page.get_by_test_id("category-top").locator("input[type=radio]").nth(1).check()
        page.get_by_test_id("samples").select_option("3")
        page.click("[data-testid=start]")
        expect(page.locator("[data-testid=job-status][data-status=completed]")).to_have_count(
            1, timeout=180_000
        )  # a bound, not a window: a loaded two-core CI is slow
        expect(page.get_by_test_id("candidates")).to_be_visible()
        expect(page.locator("[data-testid=candidates] figure")).to_have_count(3)
        for index in range(3):
            image = page.get_by_test_id(f"candidate-{index}-image")
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        expect(page.get_by_test_id("candidate-0")).to_have_class("best")
        # The first candidate is the result; side by side: one row, left to right.
        tops = [page.get_by_test_id(f"candidate-{i}").bounding_box()["y"] for i in range(3)]
        lefts = [page.get_by_test_id(f"candidate-{i}").bounding_box()["x"] for i in range(3)]
        assert max(tops) - min(tops) < 1 and lefts == sorted(lefts)
        assert len(fake.image_requests) == 3
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-candidates.png"), full_page=True)
        assert page.problems == []
    finally:
        stack.stop()
        fake.stop()


def test_the_api_docs_render_under_the_content_security_policy(web, page):
    """Swagger UI (drf-spectacular's sidecar): its inline script and style carry the nonce."""
    expect = sync_api.expect
    response = page.goto(web.base + "/api/docs/")
    policy = dict(d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    for directive in ("script-src", "style-src"):  # the nonce, not a blanket allowance
        assert "'nonce-" in policy[directive] and "unsafe" not in policy[directive], policy
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Virtual fitting API")
    operation = page.locator("#operations-api-api_auth_logout_all_create")
    expect(operation).to_be_visible()
    operation.locator(".opblock-summary").click()
    expect(operation.locator(".opblock-body")).to_contain_text("204")
    expect(page.locator(".swagger-ui .btn.authorize")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=False)
    assert page.problems == []


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _is_closed_stream(request) -> bool:
    """The page closes its EventSource after the terminal event; Chromium reports that as aborted."""
    return request.url.endswith("/events") and "ERR_ABORTED" in (request.failure or "")
