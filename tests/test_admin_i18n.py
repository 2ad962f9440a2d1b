"""The admin in Korean by default, English on request; the Korean catalogue is complete."""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from fitting.models import FittingResult, Item, Status, WebhookAttempt, WebhookDelivery
from tests.factories import make_job, make_user

User = get_user_model()
PO = Path(__file__).resolve().parents[1] / "locale" / "ko" / "LC_MESSAGES" / "django.po"

# English the admin showed before it was translated (issue 17), and Django's default header.
KNOWN_ENGLISH = [
    "Fitting results",
    "Fitting result",
    "Llm message",
    "Reprocess (resume from failed step)",
    "Reprocess from scratch",
    "Django administration",
    "Django 관리",
    "Step images",
    "latency ms",
    "Failed tasks",
    "Access attempts",
    "Django Q",
    "Axes",
    "User images",
    "Items",
]
# Headings, column heads, labels, buttons, filter titles: what the admin itself says.
LABEL_TAGS = re.compile(r"(?s)<(th|label|h1|h2|h3|caption|button|summary)\b[^>]*>(.*?)</\1>")
ENGLISH_WORD = re.compile(r"\b[A-Za-z]{3,}\b")
ALLOWED_WORDS = {"URL", "ID", "HTTP", "GET", "POST", "IP", "English"}  # "English": the language switch
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)


def po_entries(path: Path) -> list[tuple[dict[str, str], str]]:
    """(msgid/msgstr fields, flag comment) of each entry except the header."""
    entries = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        current = None
        flags = " ".join(line for line in block.splitlines() if line.startswith("#,"))
        for line in block.splitlines():
            match = re.match(r'^(msgid|msgid_plural|msgstr(?:\[\d\])?) (".*")$', line)
            if match:
                current = match.group(1)
                fields[current] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and current:
                fields[current] += ast.literal_eval(line)
        if fields.get("msgid"):
            entries.append((fields, flags))
    return entries


def test_the_korean_catalogue_has_no_empty_or_fuzzy_entry():
    entries = po_entries(PO)
    assert len(entries) > 100
    untranslated = [
        fields["msgid"]
        for fields, flags in entries
        if "fuzzy" in flags or any(not v for k, v in fields.items() if k.startswith("msgstr"))
    ]
    assert untranslated == []


def test_the_compiled_catalogue_matches_the_po():
    """The .mo holds every translation of the .po (run compilemessages after editing it)."""
    with PO.with_suffix(".mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    stale = []
    for fields, _flags in po_entries(PO):
        if "msgid_plural" in fields:
            got = compiled.ngettext(fields["msgid"], fields["msgid_plural"], 1)
            want = fields["msgstr[0]"]
        else:
            got, want = compiled.gettext(fields["msgid"]), fields["msgstr"]
        if got != want:
            stale.append(fields["msgid"])
    assert stale == []


@pytest.fixture
def korean_staff(client, db, user, photo, catalogue):
    make_job(
        user,
        photo,
        catalogue["top"],
        catalogue["bottom"],
        failed_step="bottom",
        done=["top"],
        step_metrics={"top": {"latency_ms": 812, "prompt_tokens": 10, "candidates_tokens": 5, "total_tokens": 15}},
    )
    make_job(user, photo, catalogue["top"], status=Status.COMPLETED, done=["top"])
    client.force_login(make_user("support", is_staff=True, is_superuser=True))
    return client


def admin_pages() -> list[str]:
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
    return urls


def english_labels(html: str, data: list[str]) -> list[str]:
    """Labels with English words in them, after taking out the data (names, paths, functions)."""
    found = []
    for _, inner in LABEL_TAGS.findall(html):
        text = re.sub(r"(?s)<[^>]+>", " ", inner)
        for value in data:
            text = text.replace(value, " ")
        text = re.sub(r"\S*[./]\S*", " ", text)  # file names and dotted paths
        text = UUID.sub(" ", text)  # record ids: "6cb34db0-afac-…" is not the English word "afac"
        words = [w for w in ENGLISH_WORD.findall(text) if w not in ALLOWED_WORDS]
        if words:
            found.append(" ".join(text.split()))
    return found


def test_every_admin_page_is_in_korean_by_default(korean_staff):
    pages = admin_pages()
    data = [*User.objects.values_list("username", flat=True), *Item.objects.values_list("name", flat=True)]
    assert any("/fitting/fittingresult/" in url and url.endswith("/change/") for url in pages)
    problems = {}
    for url in pages:
        if url.startswith("/admin/auth/user/") and url.endswith("/change/"):
            continue  # permission names are stored in English by Django ("Can add …")
        response = korean_staff.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "가상 피팅 관리" in html, url
        english = [label for label in KNOWN_ENGLISH if label in html] + english_labels(html, data)
        if english:
            problems[url] = english
    assert problems == {}


def test_english_on_request(korean_staff):
    response = korean_staff.get(reverse("admin:fitting_fittingresult_changelist"), HTTP_ACCEPT_LANGUAGE="en")
    html = response.content.decode()
    assert "Virtual fitting administration" in html
    assert "fitting jobs" in html.lower()
    assert "가상 피팅 관리" not in html


def test_admin_times_are_shown_to_the_second(korean_staff):
    job = FittingResult.objects.order_by("created_at").first()
    stamp = timezone.localtime(job.created_at).strftime("%Y-%m-%d %H:%M:%S")
    for url in (
        reverse("admin:fitting_fittingresult_changelist"),
        reverse("admin:fitting_fittingresult_change", args=[job.id]),
    ):
        assert stamp in korean_staff.get(url).content.decode()


def test_a_staff_member_switches_the_admin_to_english_and_back(korean_staff):
    index = reverse("admin:index")
    assert 'data-testid="language-en"' in korean_staff.get(index).content.decode()
    response = korean_staff.post(reverse("set_language"), {"language": "en", "next": index})
    assert response.status_code == 302
    html = korean_staff.get(index).content.decode()
    assert "Virtual fitting administration" in html and 'data-testid="language-ko"' in html
    korean_staff.post(reverse("set_language"), {"language": "ko", "next": index})
    assert "가상 피팅 관리" in korean_staff.get(index).content.decode()


@pytest.mark.parametrize("language", ["ko", "en"])
def test_the_job_pages_webhook_columns_have_distinct_heads(korean_staff, language):
    """Issue 25, 12(f): the attempt count and the attempt log were both headed "시도"."""
    job = FittingResult.objects.order_by("created_at").first()
    delivery = WebhookDelivery.objects.create(
        job=job, event="fitting.completed", webhook_id="msg_1", url="https://hooks.example.com/in", payload="{}",
        retry_until=timezone.now(), attempt_count=1,
    )  # fmt: skip
    WebhookAttempt.objects.create(
        delivery=delivery, number=1, started_at=timezone.now(), duration_ms=12, status_code=500, outcome="retry"
    )
    page = korean_staff.get(
        reverse("admin:fitting_fittingresult_change", args=[job.id]), HTTP_ACCEPT_LANGUAGE=language
    ).content.decode()
    group = re.search(r'(?s)id="webhook_deliveries-group".*?</thead>', page).group(0)
    heads = [" ".join(re.sub(r"(?s)<[^>]+>", " ", h).split()) for h in re.findall(r"(?s)<th\b[^>]*>(.*?)</th>", group)]
    heads = [h for h in heads if h]
    assert len(heads) == 7
    assert len(set(heads)) == len(heads), heads


def test_a_record_id_is_not_read_as_english():
    html = "<h2>6cb34db0-afac-43e5-979a-7572a9f8ce4b</h2><th>피팅 결과 Fitting</th>"
    assert english_labels(html, []) == ["피팅 결과 Fitting"]
