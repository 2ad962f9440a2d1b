"""Offline evaluation of prompt versions (issue 24, ``manage.py evaluate_prompts``).

Every case (a person photo and its garments, ``cases.json``) runs under every prompt version
``samples`` times, straight through the engine: no job, no row, no quota, nothing a user
sees. Each step's answer is fitted to the canvas, scored by the quality checks
(``fitting.quality``) and, when FITTING_QUALITY_JUDGE=gemini, by the judge. The quality gate
applies as in a job: a failed answer is asked again up to FITTING_QUALITY_RETRIES more times,
the first that passes is the next step's input, and when none passes the sample ends
(FITTING_QUALITY_POLICY=fail) or goes on from the best (accept_best). Every attempt is
recorded, so the report gives both the pass rate per attempt and the attempts per step.

Spend is bounded: before each call, and before each of the engine's own retries of a call,
the run stops when it would exceed ``max_calls`` provider requests (image and judge calls
both count), and the report says so.
"""

from __future__ import annotations

import csv
import html
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from PIL import Image

from core import images
from fitting import costs, quality
from fitting.engines import get_engine
from fitting.engines.base import CATEGORIES, StepAbandoned
from fitting.engines.identity import prompt_versions_of
from fitting.errors import JobError
from fitting.stats import Rate, wilson

REPORT_SIDE = 384  # the report's images: small JPEGs beside each other


class EvaluationError(Exception):
    """The cases or the options are unusable (the command shows the message)."""


@dataclass(frozen=True)
class Garment:
    category: str
    path: Path


@dataclass(frozen=True)
class Case:
    name: str
    photo: Path
    garments: tuple[Garment, ...]  # in step order


def load_cases(directory: Path) -> list[Case]:
    """``directory/cases.json``: ``{"cases": [{"name", "photo", "garments": [{"category", "image"}]}]}``.

    Paths are relative to ``directory``; the garments are put in step order.
    """
    path = directory / "cases.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise EvaluationError(f'{path} must be a JSON object: {{"cases": [...]}}')
    cases = []
    for number, raw in enumerate(data.get("cases") or [], start=1):
        try:
            name = str(raw.get("name") or f"case{number}")
            garments = [Garment(g["category"], directory / g["image"]) for g in raw["garments"]]
            photo = directory / raw["photo"]
        except (KeyError, TypeError, AttributeError) as exc:
            raise EvaluationError(f"case {number} of {path}: needs photo and garments [{{category, image}}]") from exc
        for garment in garments:
            if garment.category not in CATEGORIES:
                raise EvaluationError(f"case {name}: unknown category {garment.category!r}")
        for file in (photo, *(g.path for g in garments)):
            if not file.is_file():
                raise EvaluationError(f"case {name}: no file {file}")
        garments.sort(key=lambda g: CATEGORIES.index(g.category))
        cases.append(Case(name=name, photo=photo, garments=tuple(garments)))
    if not cases:
        raise EvaluationError(f"{path} has no cases")
    if len({case.name for case in cases}) != len(cases):
        raise EvaluationError(f"{path}: case names must differ")
    return cases


def check_versions(versions: list[str]) -> None:
    """Only the Gemini engine has prompt versions: with another engine every version is the same run."""
    if settings.FITTING_ENGINE != "gemini":
        raise EvaluationError(
            f"FITTING_ENGINE is {settings.FITTING_ENGINE!r}: only the gemini engine has prompt versions "
            "(set FITTING_ENGINE=gemini and GEMINI_API_KEY)"
        )
    known = prompt_versions_of("gemini")
    unknown = [v for v in versions if v not in known]
    if unknown or not versions:
        raise EvaluationError(f"unknown prompt version(s) {', '.join(unknown) or '(none)'}; known: {', '.join(known)}")


@dataclass
class StepRecord:
    """One engine call of one step of one sample: what the report lists."""

    case: str
    version: str
    sample: int
    step: str
    attempt: int = 1  # 1, 2, … within the step (the quality gate's retries)
    seed: int | None = None
    passed: bool | None = None  # None: no answer (an engine error)
    score: float | None = None
    failed_checks: list[str] = field(default_factory=list)
    judge_score: float | None = None
    error: str = ""
    latency_ms: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    judge_input_tokens: int = 0
    judge_output_tokens: int = 0
    image: str = ""  # relative to the report


@dataclass
class Evaluation:
    versions: list[str]
    samples: int
    max_calls: int | None
    cases: list[Case]
    records: list[StepRecord] = field(default_factory=list)
    calls: int = 0  # image and judge calls made
    judge_calls: int = 0
    stopped: str = ""  # why the run stopped early ("" when it ran everything)

    @property
    def judge_on(self) -> bool:
        return settings.FITTING_QUALITY_JUDGE == "gemini"


def evaluate(
    *,
    cases: list[Case],
    versions: list[str],
    samples: int,
    max_calls: int | None,
    out: Path,
    on_call: Callable[[int], None] = lambda n: None,
) -> Evaluation:
    """Run everything (or up to ``max_calls``) and write the report into ``out``."""
    check_versions(versions)
    run = Evaluation(versions=versions, samples=samples, max_calls=max_calls, cases=cases)
    (out / "images").mkdir(parents=True, exist_ok=True)
    thresholds = quality.Thresholds.from_dict(settings.FITTING_QUALITY_THRESHOLDS)
    per_call = 2 if run.judge_on else 1
    for index, case in enumerate(cases):
        photo = _read(case.photo)
        canvas = images.fit_size(photo.size, settings.PHOTO_MAX_SIDE)
        garments = [(g.category, _read(g.path)) for g in case.garments]
        _save(images.to_canvas(photo, canvas), out / f"images/{index}-photo.jpg")
        for category, garment in garments:
            _save(garment, out / f"images/{index}-garment-{category}.jpg")
        for version in versions:
            engine = get_engine("gemini", prompt_version=version)
            for sample in range(1, samples + 1):
                current = images.to_canvas(photo, canvas)
                for category, garment in garments:
                    kept, best = None, None
                    for attempt in range(1, settings.FITTING_QUALITY_RETRIES + 2):
                        if max_calls is not None and run.calls + per_call > max_calls:
                            run.stopped = _stopped(run)
                            return _finish(run, out)
                        record = StepRecord(
                            case=case.name, version=version, sample=sample, step=category, attempt=attempt
                        )
                        run.records.append(record)
                        answer = _call(run, engine, record, current, garment, category, canvas, thresholds)
                        on_call(run.calls)
                        if run.stopped:  # an engine's retry would have exceeded the bound
                            return _finish(run, out)
                        if answer is None:
                            break  # an engine error: as in a job, the step is not asked again
                        name = f"images/{index}-{version}-{sample}-{category}-{attempt}.jpg"
                        _save(answer, out / name)
                        record.image = name
                        if record.passed:
                            kept = answer
                            break
                        if best is None or record.score > best[0]:
                            best = (record.score, answer)
                    if kept is None and best is not None and settings.FITTING_QUALITY_POLICY == "accept_best":
                        kept = best[1]
                    if kept is None:
                        break  # the sample ends where a job would fail; the rest has no input
                    current = kept
    return _finish(run, out)


def _stopped(run: Evaluation) -> str:
    return f"stopped before exceeding --max-calls {run.max_calls} ({run.calls} calls made)"


def _within_bound(run: Evaluation) -> Callable[[], bool]:
    """The engine's ``keep_going``, asked before each of its own retries of a call: each retry
    is a provider request, counted against ``max_calls`` like the first."""

    def keep_going() -> bool:
        if run.max_calls is not None and run.calls + 1 > run.max_calls:
            run.stopped = _stopped(run)
            return False
        run.calls += 1
        return True

    return keep_going


def _call(run, engine, record, person, garment, category, canvas, thresholds) -> Image.Image | None:
    record.seed = secrets.randbelow(2**31)
    started = time.monotonic()
    run.calls += 1
    try:
        result = engine.apply_garment(
            person=person,
            garment=garment,
            category=category,
            canvas_size=canvas,
            timeout=settings.FITTING_JOB_TIMEOUT,
            keep_going=_within_bound(run),
            seed=record.seed,
        )
    except StepAbandoned:
        record.error = run.stopped
        return None
    except JobError as exc:
        record.error = f"{exc.code}: {exc.message}"
        return None
    finally:
        record.latency_ms = round((time.monotonic() - started) * 1000)
    record.input_tokens, record.output_tokens = costs.usage_tokens(result.usage)
    answer = images.to_canvas(result.image, canvas)
    assessment = quality.assess_answer(quality.prepare(person, garment, category), answer, thresholds)
    record.passed, record.score, record.failed_checks = assessment.passed, assessment.score, assessment.failed
    if run.judge_on:
        # Every answer, not only the passing ones as in a job: a mean over passing answers only would flatter.
        from fitting.quality.judge import judge

        run.calls += 1
        run.judge_calls += 1
        verdict = judge(
            person=person,
            garment=garment,
            answer=answer,
            category=category,
            timeout=settings.FITTING_MESSAGE_TIMEOUT,
            keep_going=_within_bound(run),  # its retries are provider requests too
        )
        if verdict is not None:  # answered: its tokens count, a verdict or not
            record.judge_input_tokens, record.judge_output_tokens = costs.usage_tokens(verdict.usage)
            if verdict.verdict is not None:
                record.judge_score = verdict.verdict["score"]
    return answer


def _read(path: Path) -> Image.Image:
    try:
        return images.decode(path.read_bytes(), max_side=settings.PHOTO_MAX_SIDE)
    except Exception as exc:
        raise EvaluationError(f"cannot read the image {path}: {exc}") from exc


def _save(image: Image.Image, path: Path) -> None:
    small = image.convert("RGB")
    small.thumbnail((REPORT_SIDE, REPORT_SIDE))
    small.save(path, "JPEG", quality=85)


# --- the report ---------------------------------------------------------------------------------
def _cost(record: StepRecord) -> Decimal | None:
    image = costs.tokens_cost(settings.GEMINI_IMAGE_MODEL, record.input_tokens, record.output_tokens)
    if not (record.judge_input_tokens or record.judge_output_tokens):
        return image
    judge = costs.tokens_cost(settings.GEMINI_TEXT_MODEL, record.judge_input_tokens, record.judge_output_tokens)
    return None if image is None or judge is None else image + judge


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summary(run: Evaluation) -> dict[str, dict]:
    """Per version: attempts' and samples' pass rates (Wilson, 95%), mean scores, calls, tokens, cost."""
    result = {}
    for version in run.versions:
        records = [r for r in run.records if r.version == version]
        checked = [r for r in records if r.passed is not None]
        # Per sample, each step's last attempt: what the step ended with.
        samples: dict[tuple[str, int], dict[str, StepRecord]] = {}
        for record in records:
            samples.setdefault((record.case, record.sample), {})[record.step] = record
        steps_of = {case.name: len(case.garments) for case in run.cases}
        # Finished samples: every step ran, or one ended it (an error, or no attempt passed).
        whole = [
            list(ended.values())
            for (case, _sample), ended in samples.items()
            if len(ended) == steps_of[case] or any(not r.passed for r in ended.values())
        ]
        steps = sum(len(ended) for ended in samples.values())
        prices = [_cost(r) for r in records]
        attempts = wilson(sum(r.passed is True for r in checked), len(checked))
        runs = wilson(sum(all(r.passed for r in rs) for rs in whole), len(whole))
        result[version] = {
            "calls": len(records) + (len(checked) if run.judge_on else 0),
            "attempts": len(records),
            "steps": steps,
            "mean_attempts_per_step": len(records) / steps if steps else None,
            "errors": sum(bool(r.error) for r in records),
            "attempt_pass_rate": attempts.as_json() if attempts else None,
            "sample_pass_rate": runs.as_json() if runs else None,
            "mean_score": _mean([r.score for r in checked]),
            "mean_judge_score": _mean([r.judge_score for r in records if r.judge_score is not None]),
            "judged": sum(r.judge_score is not None for r in records),
            "input_tokens": sum(r.input_tokens + r.judge_input_tokens for r in records),
            "output_tokens": sum(r.output_tokens + r.judge_output_tokens for r in records),
            "cost_usd": None if None in prices else float(sum(prices, Decimal(0))),
        }
    return result


def _finish(run: Evaluation, out: Path) -> Evaluation:
    figures = summary(run)
    costs_known = [v["cost_usd"] for v in figures.values()]
    report = {
        "created_at": timezone.now().isoformat(),
        "engine": "gemini",
        "image_model": settings.GEMINI_IMAGE_MODEL,
        "judge": settings.GEMINI_TEXT_MODEL if run.judge_on else None,
        "versions": run.versions,
        "samples": run.samples,
        "cases": [case.name for case in run.cases],
        "max_calls": run.max_calls,
        "calls": run.calls,
        "judge_calls": run.judge_calls,
        "stopped": run.stopped or None,
        "cost_usd": None if None in costs_known else sum(costs_known),
        "versions_summary": figures,
        "results": [asdict(record) for record in run.records],
    }
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        names = [f for f in StepRecord.__dataclass_fields__]
        writer.writerow([*names, "cost_usd"])
        for record in run.records:
            row = asdict(record)
            row["failed_checks"] = " ".join(record.failed_checks)
            cost = _cost(record)
            writer.writerow([*(row[n] for n in names), "" if cost is None else f"{cost:.6f}"])
    (out / "report.html").write_text(_html(run, report), encoding="utf-8")
    return run


def _rate(data: dict | None) -> str:
    if data is None:
        return "—"
    rate = Rate(data["successes"], data["trials"], data["low"], data["high"])
    return f"{rate.percent()} <small>({rate.successes}/{rate.trials})</small>"


def _money(value: float | None) -> str:
    return "unknown (a model without a price)" if value is None else f"${value:.4f}"


def _number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _html(run: Evaluation, report: dict) -> str:
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Prompt evaluation</title>",
        "<style>body{font-family:sans-serif;margin:20px}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
        "table{border-collapse:collapse;margin-bottom:20px}img{max-width:192px;display:block}"
        ".pass{color:#2e8540}.fail{color:#c0392b}.steps{display:flex;gap:6px}small{color:#666}</style>",
        f"<h1>Prompt evaluation: {e(', '.join(run.versions))}</h1>",
        f"<p>{e(report['created_at'])} · model {e(report['image_model'])} · judge {e(report['judge'] or 'off')} · "
        f"{run.samples} sample(s) per case and version · {run.calls} call(s)"
        f"{'' if run.max_calls is None else f' (at most {run.max_calls})'} · estimated cost "
        f"{_money(report['cost_usd'])}</p>",
    ]
    if run.stopped:
        parts.append(f"<p class='fail'><strong>Incomplete: {e(run.stopped)}.</strong></p>")
    parts.append(
        "<h2>Per version</h2><table><tr><th>version</th><th>attempts passed (95% interval)</th>"
        "<th>samples with every step passed</th><th>attempts per step</th><th>mean check score</th>"
        "<th>mean judge score</th><th>image calls</th><th>errors</th><th>estimated cost</th></tr>"
    )
    for version, figures in report["versions_summary"].items():
        cost = "—" if figures["cost_usd"] is None else f"${figures['cost_usd']:.4f}"
        parts.append(
            f"<tr><td>{e(version)}</td><td>{_rate(figures['attempt_pass_rate'])}</td>"
            f"<td>{_rate(figures['sample_pass_rate'])}</td><td>{_number(figures['mean_attempts_per_step'])}</td>"
            f"<td>{_number(figures['mean_score'])}</td>"
            f"<td>{_number(figures['mean_judge_score'], 1)}</td><td>{figures['attempts']}</td>"
            f"<td>{figures['errors']}</td><td>{cost}</td></tr>"
        )
    parts.append("</table><p><small>When two versions' intervals overlap, the difference may be noise.</small></p>")
    for index, case in enumerate(run.cases):
        parts.append(f"<h2>{e(case.name)}</h2><table><tr><th>input</th><td><div class='steps'>")
        parts.append(f"<img src='images/{index}-photo.jpg' alt='photo'>")
        parts.extend(
            f"<img src='images/{index}-garment-{g.category}.jpg' alt='{e(g.category)}'>" for g in case.garments
        )
        parts.append("</div></td></tr>")
        for version in run.versions:
            parts.append(f"<tr><th>{e(version)}</th><td>")
            for sample in range(1, run.samples + 1):
                records = [r for r in run.records if (r.case, r.version, r.sample) == (case.name, version, sample)]
                if not records:
                    continue
                parts.append(f"<div>sample {sample}</div><div class='steps'>")
                for r in records:
                    verdict = "error" if r.passed is None else ("passed" if r.passed else "failed")
                    attempt = f" (attempt {r.attempt})" if r.attempt > 1 else ""
                    label = f"{e(r.step)}{attempt}: <span class='{'pass' if r.passed else 'fail'}'>{verdict}</span>"
                    if r.score is not None:
                        label += f" {r.score:.2f}"
                    if r.judge_score is not None:
                        label += f" · judge {r.judge_score:.1f}/10"
                    if r.failed_checks:
                        label += f"<br><small>{e(', '.join(r.failed_checks))}</small>"
                    if r.error:
                        label += f"<br><small>{e(r.error)}</small>"
                    image = f"<img src='{e(r.image)}' alt='{e(r.step)}'>" if r.image else ""
                    parts.append(f"<figure>{image}<figcaption>{label}</figcaption></figure>")
                parts.append("</div>")
            parts.append("</td></tr>")
        parts.append("</table>")
    return "\n".join(parts)
