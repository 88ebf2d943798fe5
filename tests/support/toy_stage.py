"""A toy stage for the registry tests: it counts characters and drops every document whose length is a multiple
of five. Registered between dedup and quality by ``with_toy_stage``, with no other change anywhere."""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from datafactory.pipelines.common import AnnotateBatch, DocumentStep, StageResult, StageRun, run_document_stage
from datafactory.pipelines.registry import Stage

NAME = "chars"
FIELDS = [pa.field("chars", pa.int64())]
ADDS = ("chars",)
REASON = "toy_length_multiple_of_5"


class CountChars(AnnotateBatch):
    def annotate(self, rows: list[dict]) -> list[dict]:
        for row in rows:
            chars = len(row["text"])
            keep = chars % 5 != 0
            row.update(chars=chars, keep=keep, reason=None if keep else REASON, detail=None if keep else chars)
        return rows


def run(job: StageRun) -> StageResult:
    return run_document_stage(job, DocumentStep(FIELDS, CountChars))


# Declared like a built-in stage: this module holds its run function and ADDS.
TOY = Stage(NAME, ("dedup",), summary="toy: drops documents whose length is a multiple of 5", module=__name__)


def with_toy_stage(stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
    """The registry with the toy stage after dedup, and quality reading the toy stage's survivors."""
    out: list[Stage] = []
    for stage in stages:
        if stage.name == "quality":
            stage = dataclasses.replace(stage, upstream=(NAME,))
        out.append(stage)
        if stage.name == "dedup":
            out.append(TOY)
    return tuple(out)
