"""Prompt variants: each new job gets a prompt version (FITTING_PROMPT_EXPERIMENT, by weight,
fixed by its id), is pinned to it, and the engine speaks that version's prompts to it."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.urls import reverse

from fitting import prompts
from fitting.engines import can_run, engine_identity
from fitting.errors import FailureCode
from fitting.models import FittingResult, Status
from fitting.prompts import assign_prompt_version, parse_experiment, step_prompt
from fitting.services.lifecycle import fitting_reprocess
from tests.factories import make_job, make_photo, run_now, start_job

ROOT = Path(__file__).resolve().parents[2]


def ids(count: int, seed: int = 24) -> list[uuid.UUID]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]


# --- the assignment -------------------------------------------------------------------------
def test_the_assignment_is_deterministic_and_follows_the_weights():
    experiment = {"v4": 80, "v5": 20}
    job_ids = ids(2000)
    assigned = [assign_prompt_version(job_id, experiment) for job_id in job_ids]
    assert assigned == [assign_prompt_version(job_id, dict(reversed(experiment.items()))) for job_id in job_ids]
    share = Counter(assigned)["v5"] / len(job_ids)
    assert 0.17 <= share <= 0.23, share  # 20 % ± 3 standard deviations (0.9 % each)
    assert set(assigned) == {"v4", "v5"}


def test_one_version_with_all_the_weight_gets_every_job():
    assert {assign_prompt_version(job_id, {"v5": 3}) for job_id in ids(200)} == {"v5"}


def test_without_an_experiment_every_job_gets_the_default_version():
    assert {assign_prompt_version(job_id, {}) for job_id in ids(200)} == {prompts.DEFAULT_PROMPT_VERSION}


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        ('{"v4": 80, "v9": 20}', "FITTING_PROMPT_EXPERIMENT names an unknown prompt version 'v9' (known: v4, v5)"),
        ('{"v4": 0}', "FITTING_PROMPT_EXPERIMENT: the weight of 'v4' must be a positive whole number, not 0"),
        (
            '{"v5": 1, "v4": -5}',
            "FITTING_PROMPT_EXPERIMENT: the weight of 'v4' must be a positive whole number, not -5",
        ),
        ('{"v4": 1.5}', "FITTING_PROMPT_EXPERIMENT: the weight of 'v4' must be a positive whole number, not 1.5"),
        ('["v4"]', 'FITTING_PROMPT_EXPERIMENT must be a JSON object of version: weight, e.g. {"v4": 80, "v5": 20}'),
    ],
)
def test_a_wrong_experiment_is_refused_with_one_line(raw, line):
    with pytest.raises(ValueError, match="^" + re.escape(line) + "$"):
        parse_experiment(raw)


def test_a_wrong_experiment_stops_the_start_with_one_configuration_error_line():
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    environment.update(DJANGO_SETTINGS_MODULE="config.settings.test", FITTING_PROMPT_EXPERIMENT='{"v4": 80, "v9": 20}')
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr == (
        "configuration error: FITTING_PROMPT_EXPERIMENT names an unknown prompt version 'v9' (known: v4, v5)\n"
    )


def test_the_versions_differ_in_their_words():
    for category in ("top", "bottom", "outer", "dress", "shoes"):
        assert step_prompt(category, "v4") == step_prompt(category)  # the default
        assert step_prompt(category, "v5") != step_prompt(category, "v4")
        assert "never that model's face" in step_prompt(category, "v5")
    assert prompts.message_prompt(("top", "outer"), "v4") == prompts.MESSAGE_PROMPT
    assert "상의, 아우터" in prompts.message_prompt(("top", "outer"), "v5")


# --- jobs -----------------------------------------------------------------------------------
def test_without_the_setting_jobs_get_and_speak_the_default_version(fake_gemini, user, photo, catalogue):
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert (job.status, job.prompt_version) == (Status.COMPLETED, "v4")
    assert [r.texts for r in fake_gemini.image_requests] == [[step_prompt("top", "v4")], [step_prompt("bottom", "v4")]]
    assert fake_gemini.text_requests[0].texts == [prompts.MESSAGE_PROMPT]


def test_the_engine_sends_the_assigned_versions_prompts(fake_gemini, user, photo, catalogue, settings):
    settings.FITTING_PROMPT_EXPERIMENT = {"v5": 1}
    job = start_job(user, photo, catalogue["top"], catalogue["outer"])
    assert job.prompt_version == "v5"
    settings.FITTING_PROMPT_EXPERIMENT = {}  # the worker's default is v4: it still speaks the job's v5
    job = run_now(job)
    assert job.status == Status.COMPLETED, job.error_message
    assert [r.texts for r in fake_gemini.image_requests] == [[step_prompt("top", "v5")], [step_prompt("outer", "v5")]]
    assert fake_gemini.text_requests[0].texts == [prompts.message_prompt(("top", "outer"), "v5")]
    assert "상의, 아우터" in fake_gemini.text_requests[0].texts[0]


def test_each_job_of_a_split_speaks_its_own_version(fake_gemini, user, photo, catalogue, settings):
    settings.FITTING_PROMPT_EXPERIMENT = {"v4": 1, "v5": 1}
    settings.FITTING_RESULT_CACHE = settings.FITTING_STEP_CACHE = False
    jobs = []
    # The ids are random: 8 jobs split both ways but 1 time in 128, so more are made until they do.
    while len(jobs) < 8 or len({job.prompt_version for job in jobs}) < 2:
        assert len(jobs) < 64, "64 random ids all assigned one version"
        jobs.append(run_now(start_job(user, photo, catalogue["top"])))
    versions = [job.prompt_version for job in jobs]
    assert versions == [assign_prompt_version(job.id, {"v4": 1, "v5": 1}) for job in jobs]
    assert set(versions) == {"v4", "v5"}
    sent = [r.texts[0] for r in fake_gemini.image_requests]
    assert sent == [step_prompt("top", version) for version in versions]


def test_step_reuse_and_the_result_cache_do_not_cross_versions(fake_gemini, user, photo, catalogue, settings):
    settings.FITTING_STEP_CACHE = settings.FITTING_RESULT_CACHE = True
    settings.FITTING_RESULT_CACHE_SCOPE = "owner"
    first = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))  # v4
    assert len(fake_gemini.image_requests) == 2

    settings.FITTING_PROMPT_EXPERIMENT = {"v5": 1}
    same = run_now(start_job(user, make_photo(user), catalogue["top"], catalogue["bottom"]))  # same request, v5
    assert (same.prompt_version, same.cached) == ("v5", False)
    assert len(fake_gemini.image_requests) == 4  # made again, not served from v4's result
    prefix = run_now(start_job(user, make_photo(user), catalogue["top"], catalogue["outer"]))  # v5
    assert len(fake_gemini.image_requests) == 5  # top reused from the v5 job only
    assert prefix.step_metrics["top"]["source_job"] == str(same.id)

    settings.FITTING_PROMPT_EXPERIMENT = {}
    back = run_now(start_job(user, make_photo(user), catalogue["top"], catalogue["outer"]))  # v4
    assert len(fake_gemini.image_requests) == 6  # only outer: top from the v4 job
    assert back.step_metrics["top"]["source_job"] == str(first.id)


def test_a_job_pinned_to_a_version_the_engine_lacks_fails_as_engine_mismatch(fake_gemini, user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"])
    FittingResult.objects.filter(id=job.id).update(prompt_version="v3")  # a retired version
    job = run_now(job)
    assert (job.status, job.error_code) == (Status.FAILED, FailureCode.ENGINE_MISMATCH)
    assert fake_gemini.requests == []


def test_a_failed_v5_job_is_reprocessed_as_v5_by_a_v4_process(fake_gemini, user, photo, catalogue, settings):
    job = make_job(user, photo, catalogue["top"], prompt_version="v5", failed_step="top")
    assert can_run(job.engine_identity)
    job = fitting_reprocess(job=job, enqueue=False)
    assert job.prompt_version == "v5"
    job = run_now(job)
    assert job.status == Status.COMPLETED, job.error_message
    assert fake_gemini.image_requests[0].texts == [step_prompt("top", "v5")]
    # Switching engines keeps the version the new engine has; the local one has its own.
    gemini = fitting_reprocess(job=make_job(user, photo, catalogue["top"], prompt_version="v5"), engine="gemini")
    assert gemini.prompt_version == "v5"
    local = fitting_reprocess(job=make_job(user, photo, catalogue["top"], prompt_version="v5"), engine="local")
    assert local.prompt_version == engine_identity("local").prompt_version


def test_other_engines_keep_their_own_version_under_an_experiment(user, photo, catalogue, settings):
    settings.FITTING_ENGINE = "local"
    settings.FITTING_PROMPT_EXPERIMENT = {"v5": 1}
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert (job.status, job.prompt_version) == (Status.COMPLETED, "local-2")


# --- the admin ------------------------------------------------------------------------------
def test_staff_see_and_filter_the_version(staff_client, user, photo, catalogue):
    v4 = make_job(user, photo, catalogue["top"], status=Status.COMPLETED, prompt_version="v4")
    v5 = make_job(user, photo, catalogue["top"], status=Status.COMPLETED, prompt_version="v5")
    url = reverse("admin:fitting_fittingresult_changelist")
    response = staff_client.get(url, {"prompt_version": "v5"})
    assert response.status_code == 200
    assert {job.id for job in response.context["cl"].result_list} == {v5.id}
    assert "prompt_version=v4" in response.content.decode()  # the filter offers every version in use
    assert "column-prompt_version" in response.content.decode()
    page = staff_client.get(reverse("admin:fitting_fittingresult_change", args=[v4.id])).content.decode()
    assert "field-prompt_version" in page and ">v4<" in page
