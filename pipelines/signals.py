"""Signals stage: every configured heuristic rule is measured once per document; nothing is dropped here.

The `heuristics` stage judges these stored signals, so changing a threshold never measures a document again.
"""

from __future__ import annotations

import pyarrow as pa

from datafactory.factory.config import BuildConfig, HeuristicsConfig
from datafactory.filters.heuristics import HeuristicFilter
from datafactory.pipelines.common import (
    ALONE,
    AnnotateBatch,
    DocumentStep,
    FollowingPass,
    StageResult,
    StageRun,
    added_names,
    run_document_stage,
)

FIELDS = [
    pa.field("signals", pa.map_(pa.string(), pa.float64())),
    pa.field("rules_lang", pa.string()),  # the `heuristics.languages` entry whose thresholds apply (null: top level)
    pa.field("cleaned_text", pa.string()),  # C4's cleaned text, with heuristics.c4_remove_lines, where it differs
]
ADDS = added_names(FIELDS)


class RuleSetBatch(AnnotateBatch):
    """Base of the two heuristics DoFns: the configured rule sets, built once per worker."""

    def __init__(self, config: HeuristicsConfig) -> None:
        self.config = config
        self.rules: HeuristicFilter | None = None

    def setup(self) -> None:
        self.rules = HeuristicFilter(self.config)


class MeasureSignals(RuleSetBatch):
    def annotate(self, rows: list[dict]) -> list[dict]:
        for row in rows:
            measured = self.rules.measurement(row["text"], row["lang"])
            row.update(signals=sorted(measured.signals.items()), rules_lang=measured.settings_key,
                       cleaned_text=measured.cleaned_text, keep=True, reason=None, detail=None)
        return rows


def step(config: BuildConfig) -> DocumentStep:
    return DocumentStep(FIELDS, lambda: MeasureSignals(config.heuristics))


def run(job: StageRun, following: FollowingPass = ALONE) -> StageResult:
    return run_document_stage(job, step(job.config), following)
