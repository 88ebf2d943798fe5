"""Prefect flow `build-corpus`: one task per stage, each skipped when its completion marker matches."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from rich.console import Console

from factory.catalog import build_catalog
from factory.config import BuildConfig, load_config
from factory.report import write_report
from flows.artifacts import artifact_key, build_markdown, stage_markdown
from flows.cache import FixedKey, StageCacheState, stage_cache_state
from flows.lock import run_lock
from flows.retry import RETRIES, RETRY_DELAYS, RETRY_JITTER, retry_if_transient
from pipelines import dedup, heuristics, ingest, langid, quality, tokenize, tokenizer
from pipelines.common import StageResult
from pipelines.readers import resolve_inputs

STAGES: list[tuple[str, Callable[[BuildConfig, Path], StageResult]]] = [
    ("ingest", ingest.run),
    ("langid", langid.run),
    ("heuristics", heuristics.run),
    ("dedup", dedup.run),
    ("quality", quality.run),
    ("tokenizer", tokenizer.run),
    ("tokenize", tokenize.run),
]

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


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=RETRY_JITTER,
      retry_condition_fn=retry_if_transient)
def run_stage_task(stage: str, config: BuildConfig, build_dir: str) -> StageResult:
    runner = dict(STAGES)[stage]
    return runner(config, Path(build_dir))


def submit_stage(stage: str, config: BuildConfig, build_dir: Path) -> StageResult:
    """Run one stage task, served from Prefect's cache when the stage's marker matches its config and inputs."""
    try:
        cache = stage_cache_state(stage, config, build_dir)
    except OSError:  # unreadable inputs: no cache key; the task meets the error itself, under its retry policy
        cache = StageCacheState(key="", done=False)
    state = run_stage_task.with_options(name=stage, cache_policy=FixedKey(key=cache.key), refresh_cache=not cache.done)(
        stage, config, str(build_dir), return_state=True
    )
    result = state.result()  # raises the stage's error once retries are exhausted
    if state.name == "Cached":
        result = dataclasses.replace(result, skipped=True, seconds=0.0)
    create_markdown_artifact(
        key=artifact_key(stage, "summary"), markdown=stage_markdown(result, build_dir),
        description=f"{stage} stage of {build_dir.resolve()}",
    )
    return result


def progress_line(result: StageResult) -> str:
    counts = result.counts
    if result.skipped:
        return f"[dim]✓ {result.stage}: already done, skipped[/dim]"
    if "documents" in counts:
        dropped = sum(counts["dropped"].values())
        return (f"✓ {result.stage}: {counts['documents']:,} in, {counts['kept']:,} kept, {dropped:,} out "
                f"({result.seconds:.1f} s)")
    details = ", ".join(f"{key.replace('_', ' ')} {value:,}" if isinstance(value, int) and not isinstance(value, bool)
                        else f"{key.replace('_', ' ')} {value}" for key, value in counts.items())
    return f"✓ {result.stage}: {details} ({result.seconds:.1f} s)"


def run_stages(config: BuildConfig, build_dir: Path) -> list[StageResult]:
    """Run every stage in order, showing progress on the terminal while worker logs go to DIR/logs/."""
    results = []
    with os.fdopen(os.dup(2), "w", buffering=1) as terminal:
        console = Console(file=terminal)
        for number, (stage, _) in enumerate(STAGES, start=1):
            log_path = build_dir / "logs" / f"{stage}.log"
            with console.status(f"({number}/{len(STAGES)}) {stage} running… (worker log: {log_path})"):
                try:
                    with stderr_to(log_path):
                        result = submit_stage(stage, config, build_dir)
                except Exception:
                    console.print(f"[red]✗ {stage} failed[/red]; worker log: {log_path}")
                    raise
            console.print(f"({number}/{len(STAGES)}) " + progress_line(result))
            results.append(result)
    return results


@flow(name="build-corpus")
def build_corpus(config_path: str, out_dir: str) -> list[StageResult]:
    """Build a corpus from a YAML config into out_dir: stages, then the DuckDB catalog."""
    config = load_config(config_path)
    resolve_inputs(config)  # a missing input fails here, before any work
    build_dir = Path(out_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(build_dir):  # a second build into the same directory is refused while this one runs
        start = time.perf_counter()
        results = run_stages(config, build_dir)
        build_catalog(build_dir)
        write_report(build_dir)  # before the summary, which links it when present
        create_markdown_artifact(
            key="build-summary", markdown=build_markdown(build_dir, results, time.perf_counter() - start),
            description=f"build of {build_dir.resolve()}",
        )
    return results
