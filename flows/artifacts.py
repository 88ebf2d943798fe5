"""Markdown for the Prefect artifacts the flows publish: per-stage tables, build, plan and training summaries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from datafactory.factory.catalog import CATALOG_NAME, query
from datafactory.factory.shards import read_index

if TYPE_CHECKING:  # only the result types: Beam and torch stay out of the plan and train flows' imports
    from datafactory.pipelines.common import StageResult
    from datafactory.trainer.train import TrainResult


def artifact_key(*parts: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    raw = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() and ch.isascii() else "-" for ch in raw).strip("-")[:100]


def file_link(path: Path) -> str:
    """A file:// link that also shows the path, since browsers may refuse to follow file links from the UI."""
    resolved = Path(path).resolve()
    return f"[`{resolved}`]({resolved.as_uri()})"


def cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def table(rows: list[tuple[str, object]], header: tuple[str, str] = ("measure", "value")) -> list[str]:
    return [f"| {header[0]} | {header[1]} |", "| --- | --- |", *(f"| {name} | {cell(value)} |" for name, value in rows)]


def shard_totals(build_dir: Path) -> tuple[int, int]:
    """(tokens, shards) in the build's shard index; zeros before tokenize has run."""
    if not (Path(build_dir) / "shards" / "index.parquet").exists():
        return 0, 0
    entries = read_index(build_dir)
    return sum(entry["tokens"] for entry in entries), len(entries)


def stage_rows(result: StageResult, build_dir: Path) -> list[tuple[str, object]]:
    counts = result.counts
    rows: list[tuple[str, object]] = []
    if "documents" in counts:
        dropped = counts.get("dropped", {})
        rows += [("documents in", counts["documents"]), ("documents out", counts["kept"]),
                 ("dropped", sum(dropped.values()))]
        rows += [(f"dropped: {reason}", count) for reason, count in sorted(dropped.items(), key=lambda kv: -kv[1])]
    else:  # stages that do not judge documents (the tokenizer) report their own measures, nested ones flattened
        for key, value in counts.items():
            items = value.items() if isinstance(value, dict) else [(None, value)]
            rows += [(key.replace("_", " ") + (f": {sub}" if sub else ""), v) for sub, v in items]
    if result.stage == "tokenize":
        tokens, shards = shard_totals(build_dir)
        rows += [("tokens", tokens), ("shards", shards)]
    rows.append(("seconds", result.timing()))
    rows.append(("worker log", file_link(Path(build_dir) / "logs" / f"{result.stage}.log")))
    return rows


def stage_markdown(result: StageResult, build_dir: Path) -> str:
    return "\n".join([f"## {result.stage}", "", *table(stage_rows(result, build_dir))])


def status_counts(build_dir: Path) -> dict[str, int]:
    _, rows = query(build_dir, "SELECT status, count(*) FROM ledger GROUP BY ALL ORDER BY ALL")
    return dict(rows)


def output_links(build_dir: Path) -> list[str]:
    build_dir = Path(build_dir)
    links = [f"- catalog: {file_link(build_dir / CATALOG_NAME)} (`factory stats --build {build_dir} \"SQL\"`)"]
    manifests = [build_dir / "manifests" / f"{phase}.json" for phase in ("stable", "anneal")]
    if all(path.exists() for path in manifests):
        links += [f"- {path.stem} manifest: {file_link(path)}" for path in manifests]
    else:
        links.append("- manifests: not planned yet; run the `plan-mixture` deployment for this build directory")
    if (build_dir / "report.html").exists():
        links.append(f"- report: {file_link(build_dir / 'report.html')}")
    return links


def build_markdown(build_dir: Path, results: list[StageResult], seconds: float) -> str:
    """The build's summary: final status of every input document, tokens, stages run or skipped, links."""
    statuses = status_counts(build_dir)
    tokens, shards = shard_totals(build_dir)
    ran = [result.stage for result in results if not result.skipped]
    rows: list[tuple[str, object]] = [("input documents", sum(statuses.values()))]
    rows += [(f"final status: {status}", count) for status, count in statuses.items()]
    rows += [("tokens", tokens), ("shards", shards), ("stages run", ", ".join(ran) or "none (all done before)"),
             ("seconds", f"{seconds:.1f}")]
    return "\n".join([f"# Build `{Path(build_dir).resolve()}`", "", *table(rows), "", *output_links(build_dir)])


def plan_markdown(build_dir: Path, rows: list[dict], written: dict[str, Path]) -> str:
    """The planner's plan table (one row per phase and source: weight, planned tokens, epochs, ...) and links."""
    lines = [f"# Mixture plan for `{Path(build_dir).resolve()}`", ""]
    if rows:
        columns = list(rows[0])
        lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(cell(row[column]) for column in columns) + " |" for row in rows]
    lines += ["", *[f"- {name}: {file_link(path)}" for name, path in written.items()]]
    return "\n".join(lines)


def train_markdown(manifest: Path, result: TrainResult) -> str:
    """Loss, throughput and where the metrics and checkpoints are, for one training call."""
    mfu = result.mfu
    rows: list[tuple[str, object]] = [
        ("manifest", f"`{Path(manifest).resolve()}`"), ("steps", result.steps), ("resumed at step", result.start_step),
        ("tokens", result.tokens), ("phase at end", result.phase),
        ("first loss", "-" if result.first_loss is None else f"{result.first_loss:.4f}"),
        ("last loss", "-" if result.last_loss is None else f"{result.last_loss:.4f}"),
        ("tokens/s", f"{result.tokens_per_s:,.0f}"), ("MFU", "-" if mfu is None else f"{mfu:.2%}"),
    ]
    links = [f"- metrics: {file_link(result.metrics_path)}"]
    if result.checkpoint_path:
        links.append(f"- latest checkpoint: {file_link(result.checkpoint_path)}")
    if result.stable_checkpoint_path:
        links.append(f"- stable-phase checkpoint (branch decays from here): {file_link(result.stable_checkpoint_path)}")
    return "\n".join(["# Training run", "", *table(rows), "", *links])
