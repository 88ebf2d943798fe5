"""Heuristic-rules stage: every rule's measured value is stored; the first failing rule names the drop.

With ``heuristics.c4_remove_lines`` a kept document's text becomes C4's cleaned text for every later stage.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from factory.config import BuildConfig, HeuristicsConfig
from filters.heuristics import HeuristicFilter
from pipelines.common import AnnotateBatch, StageResult, run_document_stage

STAGE = "heuristics"
FIELDS = [pa.field("signals", pa.map_(pa.string(), pa.float64()))]


class ApplyRules(AnnotateBatch):
    def __init__(self, config: HeuristicsConfig) -> None:
        self.config = config
        self.rules: HeuristicFilter | None = None

    def setup(self) -> None:
        self.rules = HeuristicFilter(self.config)

    def annotate(self, rows: list[dict]) -> list[dict]:
        for row in rows:
            verdict = self.rules.evaluate(row["text"], row["lang"])
            row.update(signals=sorted(verdict.signals.items()), keep=verdict.keep, reason=verdict.reason,
                       detail=verdict.value)
            if verdict.text is not None:
                row["text"] = verdict.text
        return rows


def run(config: BuildConfig, build_dir: Path) -> StageResult:
    return run_document_stage(config, build_dir, STAGE, "langid", FIELDS, lambda: ApplyRules(config.heuristics))
