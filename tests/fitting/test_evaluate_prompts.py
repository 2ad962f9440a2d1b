"""manage.py evaluate_prompts against the fake Gemini: the report's figures, the call bound, no jobs."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from fitting.evaluation import EvaluationError, load_cases
from fitting.models import FittingResult, StepAttempt
from fitting.prompts import step_prompt
from tests.fakegemini import answer_mode, fail, text

ROOT = Path(__file__).resolve().parents[2]
VERDICT = {
    "same_person": True,
    "garment_applied": True,
    "garment_faithful": True,
    "other_clothes_kept": True,
    "artifacts": [],
}


@pytest.fixture
def evaluation(settings, fake_gemini, tmp_path):
    settings.FITTING_QUALITY_JUDGE = "off"
    settings.FITTING_QUALITY_THRESHOLDS = {}
    settings.FITTING_QUALITY_RETRIES = 0  # one attempt a step unless a test says otherwise
    settings.FITTING_QUALITY_POLICY = "fail"
    settings.FITTING_PRICES = {settings.GEMINI_IMAGE_MODEL: {"input": 1, "output": 30}}
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(ROOT / "tests/data/photos/grace_hopper.jpg", cases / "person.jpg")
    shutil.copy(ROOT / "demo/samples/top_navy_tshirt.png", cases / "top.png")
    (cases / "cases.json").write_text(
        json.dumps(
            {
                "cases": [
                    {"name": "hopper", "photo": "person.jpg", "garments": [{"category": "top", "image": "top.png"}]}
                ]
            }
        )
    )
    return fake_gemini, cases, tmp_path / "out"


def run(cases: Path, out: Path, *args: str) -> str:
    stdout = io.StringIO()
    call_command(
        "evaluate_prompts", "--cases", str(cases), "--out", str(out), *args, stdout=stdout, stderr=io.StringIO()
    )
    return stdout.getvalue()


def test_every_case_runs_under_every_version_and_the_report_counts_them(evaluation, db):
    fake, cases, out = evaluation
    # Calls in order: v4 sample 1, v4 sample 2, v5 sample 1, v5 sample 2.
    fake.script_image(answer_mode("good"), answer_mode("unchanged"), answer_mode("good"), answer_mode("good"))
    run(cases, out, "--versions", "v4,v5", "--samples", "2")

    calls = fake.image_requests
    assert len(calls) == 4
    assert step_prompt("top", "v4") in calls[0].texts and step_prompt("top", "v5") in calls[2].texts
    assert step_prompt("top", "v4") != step_prompt("top", "v5")
    assert not FittingResult.objects.exists() and not StepAttempt.objects.exists()  # no jobs for anyone

    report = json.loads((out / "report.json").read_text())
    assert report["calls"] == 4 and report["stopped"] is None
    v4, v5 = report["versions_summary"]["v4"], report["versions_summary"]["v5"]
    assert v4["attempt_pass_rate"]["successes"] == 1 and v4["attempt_pass_rate"]["trials"] == 2
    assert v4["attempt_pass_rate"]["low"] == pytest.approx(0.0945, abs=1e-4)  # Wilson 95% of 1/2
    assert v4["attempt_pass_rate"]["high"] == pytest.approx(0.9055, abs=1e-4)
    assert (v5["attempt_pass_rate"]["successes"], v5["attempt_pass_rate"]["trials"]) == (2, 2)
    assert v5["sample_pass_rate"]["low"] == pytest.approx(0.3424, abs=1e-4)
    # Each call: 1290 input tokens at $1 and 1290 output tokens at $30 per million.
    assert v4["cost_usd"] == pytest.approx(2 * 1290 * 31 / 1e6)
    assert report["cost_usd"] == pytest.approx(4 * 1290 * 31 / 1e6)
    assert v4["mean_score"] < v5["mean_score"]

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["version"], r["sample"], r["passed"]) for r in rows] == [
        ("v4", "1", "True"),
        ("v4", "2", "False"),
        ("v5", "1", "True"),
        ("v5", "2", "True"),
    ]
    assert "changed" in rows[1]["failed_checks"].split()  # the unchanged answer: the garment region did not change
    page = (out / "report.html").read_text()
    for row in rows:  # each answer beside the others, from a file next to the report
        assert f"src='{row['image']}'" in page and (out / row["image"]).is_file()
    assert "50% (9–91%)" in page and "100% (34–100%)" in page


def test_max_calls_stops_before_exceeding_and_the_report_says_so(evaluation, db, settings):
    fake, cases, out = evaluation
    settings.FITTING_QUALITY_JUDGE = "gemini"  # a judge call per answer: two calls a step
    fake.script_text(*(text(json.dumps({**VERDICT, "score": score})) for score in (6, 8)))
    run(cases, out, "--versions", "v4,v5", "--samples", "2", "--max-calls", "5")
    assert len(fake.image_requests) == 2 and len(fake.text_requests) == 2  # a third step would make 6
    report = json.loads((out / "report.json").read_text())
    assert report["calls"] == 4 and report["judge_calls"] == 2
    assert "--max-calls 5" in report["stopped"]
    assert report["versions_summary"]["v4"]["mean_judge_score"] == 7.0  # both samples of v4 ran
    assert report["versions_summary"]["v4"]["calls"] == 4
    assert report["versions_summary"]["v5"]["attempts"] == 0  # v5 never ran: nothing to compare
    assert "Incomplete" in (out / "report.html").read_text()


def test_the_quality_gate_retries_as_in_a_job_and_the_report_counts_attempts_per_step(evaluation, db, settings):
    fake, cases, out = evaluation
    settings.FITTING_QUALITY_RETRIES = 2
    # Sample 1: failed, then passed. Sample 2: three failures, so the sample ends (policy fail).
    fake.script_image(answer_mode("unchanged"), answer_mode("good"), *[answer_mode("background")] * 3)
    run(cases, out, "--versions", "v4", "--samples", "2")
    assert len(fake.image_requests) == 5
    report = json.loads((out / "report.json").read_text())
    v4 = report["versions_summary"]["v4"]
    assert (v4["attempts"], v4["steps"], v4["mean_attempts_per_step"]) == (5, 2, 2.5)
    assert (v4["sample_pass_rate"]["successes"], v4["sample_pass_rate"]["trials"]) == (1, 2)
    assert (v4["attempt_pass_rate"]["successes"], v4["attempt_pass_rate"]["trials"]) == (1, 5)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["sample"], r["attempt"], r["passed"]) for r in rows] == [
        ("1", "1", "False"),
        ("1", "2", "True"),
        ("2", "1", "False"),
        ("2", "2", "False"),
        ("2", "3", "False"),
    ]
    assert len({r["image"] for r in rows}) == 5  # every attempt's answer is in the report
    assert "2.50" in (out / "report.html").read_text()


def test_the_engines_own_retries_count_against_max_calls(evaluation, db):
    fake, cases, out = evaluation
    fake.script_image(fail(503), answer_mode("good"))  # a transient error the engine would retry
    run(cases, out, "--versions", "v4", "--max-calls", "1")
    assert len(fake.image_requests) == 1  # the retry would have been a second request
    report = json.loads((out / "report.json").read_text())
    assert report["calls"] == 1 and "--max-calls 1" in report["stopped"]


def test_the_judges_own_retries_count_against_max_calls(evaluation, db, settings):
    fake, cases, out = evaluation
    settings.FITTING_QUALITY_JUDGE = "gemini"
    fake.script_image(answer_mode("good"))
    fake.script_text(fail(503), text(json.dumps({**VERDICT, "score": 7})))
    run(cases, out, "--versions", "v4", "--max-calls", "2")
    assert (len(fake.image_requests), len(fake.text_requests)) == (1, 1)  # the judge's retry would be a third
    report = json.loads((out / "report.json").read_text())
    assert report["calls"] == 2 and "--max-calls 2" in report["stopped"]


def test_an_engine_without_prompt_versions_or_an_unknown_version_is_refused(evaluation, settings, db):
    _fake, cases, out = evaluation
    with pytest.raises(CommandError, match="unknown prompt version"):
        run(cases, out, "--versions", "v4,v99")
    settings.FITTING_ENGINE = "local"
    with pytest.raises(CommandError, match="only the gemini engine has prompt versions"):
        run(cases, out, "--versions", "v4,v5")


def test_the_shipped_case_set_names_files_in_the_repository():
    cases = load_cases(ROOT / "bench/prompt_cases")
    assert len(cases) >= 3 and all(case.photo.is_file() for case in cases)


@pytest.mark.parametrize("content", ["[]", '"cases"', '{"cases": {"name": "x"}}', '{"cases": ["x"]}'])
def test_a_cases_file_of_another_shape_is_refused_with_a_message(tmp_path, content):
    (tmp_path / "cases.json").write_text(content)
    with pytest.raises(EvaluationError):
        load_cases(tmp_path)


def test_a_judge_answer_that_is_no_verdict_counts_its_tokens_and_no_score(evaluation, db, settings):
    fake, cases, out = evaluation
    settings.FITTING_QUALITY_JUDGE = "gemini"
    fake.script_text(
        text("not json at all", usage={"promptTokenCount": 2000, "candidatesTokenCount": 50, "totalTokenCount": 2050})
    )
    run(cases, out, "--versions", "v4", "--samples", "1")
    report = json.loads((out / "report.json").read_text())
    v4 = report["versions_summary"]["v4"]
    assert report["judge_calls"] == 1 and (v4["judged"], v4["mean_judge_score"]) == (0, None)
    assert (v4["input_tokens"], v4["output_tokens"]) == (1290 + 2000, 1290 + 50)  # the judge's call was paid for
