"""Prefect flow `build-corpus`: one task per stage, each skipped when its completion marker matches."""

from __future__ import annotations

import contextlib
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


def stage_markdown(result: StageResult) -> str:
    counts = result.counts
    lines = [f"## {result.stage}", "", "| measure | value |", "| --- | --- |"]
    for key in ("documents", "kept"):
        if key in counts:
            lines.append(f"| {key} | {counts[key]:,} |")
    for reason, count in sorted(counts.get("dropped", {}).items()):
        lines.append(f"| dropped: {reason} | {count:,} |")
    lines.append(f"| seconds | {result.seconds:.1f} |")
    return "\n".join(lines)


@task(retries=1, retry_delay_seconds=2)
def run_stage_task(stage: str, config: BuildConfig, build_dir: str) -> StageResult:
    runner = dict(STAGES)[stage]
    result = runner(config, Path(build_dir))
    create_markdown_artifact(
        key=f"{stage}-summary", markdown=stage_markdown(result), description=f"{stage} stage of {build_dir}"
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
                        result = run_stage_task.with_options(name=stage)(stage, config, str(build_dir))
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
    start = time.perf_counter()
    results = run_stages(config, build_dir)
    catalog = build_catalog(build_dir)
    create_markdown_artifact(
        key="build-summary",
        markdown=f"Build in `{build_dir.resolve()}` finished in {time.perf_counter() - start:.0f} s; "
        f"catalog: `{catalog.resolve()}`",
    )
    return results
