"""Heuristics stage: keep or drop on the stored signals against the configured thresholds; the first failing
rule names the drop. Cheap: it measures nothing, so a threshold change re-runs only this and what follows.

With ``heuristics.c4_remove_lines`` a kept document's text becomes C4's cleaned text for every later stage.
"""

from __future__ import annotations

from datafactory.factory.config import BuildConfig
from datafactory.factory.records import DECISION_COLUMNS
from datafactory.filters.heuristics import Measurement
from datafactory.pipelines.common import ALONE, DocumentStep, FollowingPass, StageResult, StageRun, run_document_stage
from datafactory.pipelines.signals import RuleSetBatch

FIELDS: list = []  # the decision columns only; `signals` and `rules_lang` come from the signals stage
CONSUMED = ("cleaned_text",)  # folded into `text` here, not carried further
ADDS = DECISION_COLUMNS  # (and the text, with heuristics.c4_remove_lines)


class ApplyThresholds(RuleSetBatch):
    reads_text = False  # judges stored signals; the text is read only where this stage stores it

    def annotate(self, rows: list[dict]) -> list[dict]:
        for row in rows:
            measured = Measurement(dict(row["signals"]), row["rules_lang"], row.pop("cleaned_text"))
            verdict = self.rules.judge(measured)
            row.update(keep=verdict.keep, reason=verdict.reason, detail=verdict.value)
            if verdict.text is not None:
                row["text"] = verdict.text
        return rows


def step(config: BuildConfig) -> DocumentStep:
    return DocumentStep(FIELDS, lambda: ApplyThresholds(config.heuristics), consumed=CONSUMED,
                        writes_text=config.heuristics.c4_remove_lines)


def run(job: StageRun, following: FollowingPass = ALONE) -> StageResult:
    return run_document_stage(job, step(job.config), following)
