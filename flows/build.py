"""Prefect flow `build-corpus`: one task per stage of the registry, each skipped when its completion marker matches."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from rich.console import Console
from rich.text import Text

from datafactory.factory.catalog import build_catalog
from datafactory.factory.config import BuildConfig, load_config
from datafactory.factory.errors import UserError, environment_problem, full_disk
from datafactory.flows.artifacts import artifact_key, build_markdown, stage_markdown
from datafactory.flows.lock import run_lock
from datafactory.flows.retry import RETRIES, RETRY_DELAYS, RETRY_JITTER, retry_if_transient
from datafactory.pipelines import registry
from datafactory.pipelines.common import StageResult
from datafactory.pipelines.watchdog import deliver


@contextlib.contextmanager
def stderr_to(log_path: Path) -> Iterator[None]:
    """Send file descriptor 2 to log_path: Beam's worker processes inherit it and log every bundle there."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


# Resuming is the stage markers' job alone (pipelines.common.run_stage): Prefect caches nothing, so a build reads
# its inputs once to decide what to skip, and a stage whose outputs were deleted can never be served from a cache.
@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=RETRY_JITTER,
      retry_condition_fn=retry_if_transient, cache_policy=NO_CACHE)
def run_stage_task(stage: registry.Stage, config: BuildConfig, build_dir: str) -> StageResult:
    return stage.execute(config, Path(build_dir))


def submit_stage(stage: registry.Stage, config: BuildConfig, build_dir: Path,
                 ran_in_pass: dict[str, StageResult]) -> StageResult:
    """Run one stage as a Prefect task (skipped inside when its marker matches), and record its summary. A stage that
    an earlier stage's pass ran (``ran_in_pass``, updated here) finds itself done: its result is that pass's."""
    result = run_stage_task.with_options(name=stage.name)(stage, config, str(build_dir))
    if result.skipped and stage.name in ran_in_pass:
        result = ran_in_pass.pop(stage.name)
    ran_in_pass |= {fused.stage: fused for fused in result.fused}
    create_markdown_artifact(
        key=artifact_key(stage.name, "summary"), markdown=stage_markdown(result, build_dir),
        description=f"{stage.name} stage of {build_dir.resolve()}",
    )
    return result


def progress_line(result: StageResult) -> str:
    counts = result.counts
    if result.skipped:
        return f"[dim]✓ {result.stage}: already done, skipped[/dim]"
    if "documents" in counts:
        dropped = sum(counts["dropped"].values())
        return (f"✓ {result.stage}: {counts['documents']:,} in, {counts['kept']:,} kept, {dropped:,} out "
                f"({result.timing()})")
    details = ", ".join(f"{key.replace('_', ' ')} {value:,}" if isinstance(value, int) and not isinstance(value, bool)
                        else f"{key.replace('_', ' ')} {value}" for key, value in counts.items())
    return f"✓ {result.stage}: {details} ({result.timing()})"


@contextlib.contextmanager
def termination_remembered() -> Iterator[Callable[[], None]]:
    """Yields a check that ends the build if SIGTERM arrived. The handler in place (Prefect's, during a flow run) raises
    where the main thread happens to be; inside a garbage-collection callback the exception is only printed
    ("Exception ignored") and the build went on to its end. The check, run between stages, delivers it again where it
    propagates."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    arrived = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)

    def remember(signum: int, frame: object) -> None:
        arrived.set()
        deliver(previous, signum, frame)

    def check() -> None:
        if arrived.is_set():
            remember(signal.SIGTERM, None)

    signal.signal(signal.SIGTERM, remember)
    try:
        yield check
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_stages(config: BuildConfig, build_dir: Path) -> list[StageResult]:
    """Run every registered stage in order, showing progress on the terminal and in the flow run's log (the Prefect
    UI's Logs tab) while worker logs go to DIR/logs/."""
    results = []
    ran_in_pass: dict[str, StageResult] = {}
    stages = registry.STAGES
    run_log = get_run_logger()
    with os.fdopen(os.dup(2), "w", buffering=1) as terminal, termination_remembered() as stop_if_terminated:
        console = Console(file=terminal)
        for number, stage in enumerate(stages, start=1):
            stop_if_terminated()
            log_path = build_dir / "logs" / f"{stage.name}.log"
            step = f"({number}/{len(stages)})"
            run_log.info("%s %s running (worker log: %s)", step, stage.name, log_path)
            with console.status(f"{step} {stage.name} running… (worker log: {log_path})"):
                try:
                    with stderr_to(log_path):
                        result = submit_stage(stage, config, build_dir, ran_in_pass)
                except Exception as err:
                    console.print(f"[red]✗ {stage.name} failed[/red]; worker log: {log_path}")
                    run_log.error("%s %s failed (%s); worker log: %s", step, stage.name, type(err).__name__, log_path)
                    if (problem := environment_problem(err) or full_disk(build_dir)) is not None:
                        raise StageEnvironmentError(f"stage {stage.name}: {problem} (fix it and build again: "
                                                    "finished stages are kept)") from err
                    raise
            line = f"{step} " + progress_line(result)
            console.print(line)
            run_log.info(Text.from_markup(line).plain)
            results.append(result)
        stop_if_terminated()
    return results


class StageEnvironmentError(UserError):
    """A stage met a full, read-only or forbidden disk: the user's to fix, and no retry would."""


@flow(name="build-corpus")
def build_corpus(config_path: str, out_dir: str) -> list[StageResult]:
    """Build a corpus from a YAML config into out_dir: stages, then the DuckDB catalog (the HTML report is the
    app layer's: `factory build` writes it after this flow)."""
    config = load_config(config_path)
    registry.preflight(config, config_path)  # a missing input or unknown rule fails here, before any work
    build_dir = Path(out_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(build_dir):  # a second build into the same directory is refused while this one runs
        start = time.perf_counter()
        results = run_stages(config, build_dir)
        build_catalog(build_dir)
        create_markdown_artifact(
            key="build-summary", markdown=build_markdown(build_dir, results, time.perf_counter() - start),
            description=f"build of {build_dir.resolve()}",
        )
    return results
