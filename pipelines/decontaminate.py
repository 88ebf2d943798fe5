"""Decontaminate stage: a document holding enough of an evaluation item is dropped as `contaminated`, or, in
`remove_span` mode, keeps its text without the matched spans. The eval sets' index is built once per content
(under DIR/cache/decontaminate/) and memory-mapped by every worker."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pyarrow as pa

from datafactory.factory.config import BuildConfig, DecontaminateConfig
from datafactory.filters.decontam import CONTAMINATED, ContaminationIndex, Decontaminator, index_address
from datafactory.filters.eval_sets import read_eval_sets
from datafactory.pipelines.common import (
    AnnotateBatch,
    DocumentStep,
    StageResult,
    StageRun,
    added_names,
    run_document_stage,
)
from datafactory.pipelines.inputs import named_files_digest

FIELDS = [
    pa.field("contaminated", pa.bool_()),
    pa.field("eval_set", pa.string()),  # the item the document overlaps most; null when it overlaps none
    pa.field("item_id", pa.string()),
    pa.field("score", pa.float64()),  # share of that item's field covered by matched n-grams
    pa.field("removed_chars", pa.int32()),  # remove_span mode: characters cut from the text
]
ADDS = added_names(FIELDS)


def own_inputs(config: BuildConfig, build_dir: Path) -> str:
    return named_files_digest(config, "decontaminate.")


def index_directory(config: BuildConfig, build_dir: Path) -> Path:
    """The eval sets' index for this config, built here unless an earlier run left it (same content address)."""
    settings = config.decontaminate
    directory = build_dir / "cache" / "decontaminate" / index_address(settings, own_inputs(config, build_dir))
    if not directory.is_dir():
        ContaminationIndex.build(read_eval_sets(settings, config.resolve_path), settings).save(directory)
    return directory


class Decontaminate(AnnotateBatch):
    def __init__(self, index: Path, config: DecontaminateConfig) -> None:
        self.index_path, self.config = index, config
        self.reads_text = bool(config.eval_sets)  # before setup: the pass decides whether it has the text at hand

    def setup(self) -> None:
        index = ContaminationIndex.load(self.index_path)
        self.items = index.items.to_pylist()
        self.decontaminator = Decontaminator(index, self.config)
        self.reads_text = self.decontaminator.needs_text

    def annotate(self, rows: list[dict]) -> list[dict]:
        verdicts = self.decontaminator.verdicts([row.get("text") for row in rows])
        for row, verdict in zip(rows, verdicts, strict=True):
            finding = verdict.finding
            item = self.items[finding.item] if finding.item is not None else {"eval_set": None, "item_id": None}
            row.update(contaminated=finding.contaminated, score=finding.score, removed_chars=verdict.removed_chars,
                       text=verdict.text, keep=verdict.keep, reason=None if verdict.keep else CONTAMINATED,
                       detail=None if verdict.keep else finding.score, **item)
        return rows


def run(job: StageRun) -> StageResult:
    config = job.config.decontaminate
    index = cache(lambda: index_directory(job.config, job.build_dir))  # built only when the stage runs, not skipped
    return run_document_stage(job, DocumentStep(
        FIELDS, lambda: Decontaminate(index(), config), writes_text=config.mode == "remove_span",
        facts=lambda: {"index": ContaminationIndex.load(index()).facts([spec.name for spec in config.eval_sets])}))
