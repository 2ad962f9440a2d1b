"""Log lines a job writes carry its job_id, attempt, step and user_id (plain and JSON)."""

import json
import logging
import logging.config

import pytest

from core.logcontext import ContextFilter, JsonFormatter, log_context
from fitting.services.lifecycle import fitting_reprocess
from tests.factories import run_now, start_job
from tests.fakegemini import fail


@pytest.fixture
def records(caplog):
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(ContextFilter())
    return caplog


def test_every_line_of_a_job_carries_it(fake_gemini, records, user, photo, catalogue):
    fake_gemini.script_image(fail(400, "bad garment"))
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"])
    job = run_now(job)
    assert job.status == "failed"
    job = run_now(fitting_reprocess(job=job, enqueue=False))
    assert job.status == "completed"
    lines = [r for r in records.records if r.name.startswith("fitting")]
    assert len(lines) >= 6  # accepted, claimed, failed, reprocessed, claimed, a step made …
    for record in lines:
        assert (record.job_id, record.user_id) == (str(job.id), user.pk), record.getMessage()
        assert record.attempt in (1, 2)
    failed = next(r for r in lines if "failed at" in r.getMessage())
    assert (failed.step, failed.attempt) == ("top", 1)
    made = [r for r in lines if "made in" in r.getMessage()]
    assert [(r.step, r.attempt) for r in made] == [("top", 2), ("bottom", 2)]
    assert all(r.step is None for r in lines if "claimed" in r.getMessage())


def test_lines_outside_a_job_carry_nothing(records):
    logging.getLogger("fitting.test").info("no job here")
    (record,) = records.records
    assert (record.job_id, record.attempt, record.step, record.user_id) == (None, None, None, None)
    assert record.context == ""


def test_json_lines():
    logger = logging.getLogger("fitting.json-test")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "job %s: %s", ("abc", "slow"), None)
    with log_context(job_id="abc", attempt=2, step="outer", user_id=7):
        ContextFilter().filter(record)
    assert record.context == " job_id=abc attempt=2 step=outer user_id=7"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "job abc: slow"
    assert (line["level"], line["logger"]) == ("WARNING", "fitting.json-test")
    assert (line["job_id"], line["attempt"], line["step"], line["user_id"]) == ("abc", 2, "outer", 7)
    assert line["time"].endswith("+00:00")


def test_the_settings_use_the_filter_and_the_chosen_format(monkeypatch):
    import importlib

    import config.settings.base as base

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setenv("LOG_FORMAT", "json")
    try:
        reloaded = importlib.reload(base)
        handler = reloaded.LOGGING["handlers"]["console"]
        assert handler["formatter"] == "json" and handler["filters"] == ["context"]
        logging.config.dictConfig(reloaded.LOGGING)  # the configuration is valid
        console = next(h for h in root.handlers if h not in handlers)
        assert isinstance(console.formatter, JsonFormatter)
        assert any(isinstance(f, ContextFilter) for f in console.filters)
    finally:
        monkeypatch.delenv("LOG_FORMAT")
        importlib.reload(base)
        root.handlers[:] = handlers
        root.setLevel(level)
