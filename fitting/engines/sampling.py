"""Several candidates of one step (numSamples, issue 23), whatever the engine.

- An engine with ``apply_garment_samples`` makes them itself (the try-on model: one call
  with ``number_of_images``).
- A deterministic engine (the local one) makes one: the same inputs give the same image,
  so asking again would give N identical candidates.
- Any other engine (Gemini, which answers one image per call) is called once per candidate,
  at the same time, from a small thread pool.

The threads make only the engine's HTTP calls: the cancel check (``keep_going``, a database
read) stays in the calling thread, which asks it while it waits and lets the threads know
through a flag their ``keep_going`` reads, so a canceled job makes no retry and stops waiting at once.
"""

from __future__ import annotations

import contextvars
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from PIL import Image

from fitting.engines.base import Engine, KeepGoing, StepAbandoned, StepResult
from fitting.errors import DeadlineExceeded

logger = logging.getLogger(__name__)

# Seconds between two cancel checks while the candidates are being made.
CANCEL_CHECK_EVERY = 1.0


@dataclass
class Sample:
    """One candidate an engine made: ``index`` is its place among the seeds asked for."""

    index: int
    result: StepResult


def calls_for(engine: Engine, count: int) -> int:
    """The engine calls ``count`` candidates take (what the usage ledger counts)."""
    if hasattr(engine, "apply_garment_samples") or getattr(engine, "deterministic", False):
        return 1
    return count


def sample_count(engine: Engine, count: int) -> int:
    """How many candidates the engine is asked for: one for a deterministic engine."""
    return 1 if getattr(engine, "deterministic", False) else count


def apply_garment_samples(
    engine: Engine,
    *,
    person: Image.Image,
    garment: Image.Image,
    category: str,
    canvas_size: tuple[int, int],
    timeout: float,
    seeds: list[int | None],
    keep_going: KeepGoing | None = None,
) -> list[Sample]:
    """``len(seeds)`` candidates of one step (candidate k made with ``seeds[k]``), in seed order.

    Candidates whose call failed are left out (and logged) when at least one came back;
    when none did, the first one's error is raised. Within ``timeout`` seconds.
    """
    arguments = {"person": person, "garment": garment, "category": category, "canvas_size": canvas_size}
    own = getattr(engine, "apply_garment_samples", None)
    if own is not None:
        results = own(**arguments, timeout=timeout, keep_going=keep_going, seeds=seeds)
        return [Sample(index, result) for index, result in enumerate(results)]
    if len(seeds) == 1:
        result = engine.apply_garment(**arguments, timeout=timeout, keep_going=keep_going, seed=seeds[0])
        return [Sample(0, result)]
    return _concurrently(engine, arguments, timeout=timeout, seeds=seeds, keep_going=keep_going)


def _concurrently(
    engine: Engine, arguments: dict, *, timeout: float, seeds: list[int | None], keep_going: KeepGoing | None
) -> list[Sample]:
    deadline = time.monotonic() + timeout
    abandoned = False

    def still_wanted() -> bool:  # read by the threads before a retry: no database access there
        return not abandoned

    pool = ThreadPoolExecutor(max_workers=len(seeds), thread_name_prefix="fitting-sample")
    try:
        futures: dict[Future, int] = {
            # In a copy of this thread's context each: the threads' log lines keep the job's fields (log_context).
            pool.submit(
                contextvars.copy_context().run,
                engine.apply_garment,
                **arguments,
                timeout=timeout,
                keep_going=still_wanted,
                seed=seed,
            ): index
            for index, seed in enumerate(seeds)
        }
        pending = set(futures)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _done, pending = wait(pending, timeout=min(CANCEL_CHECK_EVERY, left), return_when=FIRST_COMPLETED)
            if pending and keep_going is not None and not keep_going():
                abandoned = True
                raise StepAbandoned()
        samples: list[Sample] = []
        errors: list[tuple[int, BaseException]] = []
        for future, index in futures.items():
            if not future.done():
                errors.append((index, DeadlineExceeded()))
            elif future.exception() is not None:
                errors.append((index, future.exception()))
            else:
                samples.append(Sample(index, future.result()))
        samples.sort(key=lambda sample: sample.index)
        if samples:
            for index, exc in errors:
                logger.warning("candidate %s of %s failed: %s", index, arguments["category"], exc)
            return samples
        errors.sort(key=lambda pair: pair[0])
        abandoned_errors = [exc for _, exc in errors if isinstance(exc, StepAbandoned)]
        raise abandoned_errors[0] if abandoned_errors else errors[0][1]
    finally:
        # Calls still running finish in the background (each has the job's deadline as its
        # timeout); their answers are dropped. Nothing waits for them here.
        pool.shutdown(wait=False, cancel_futures=True)
