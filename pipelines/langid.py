"""Language-ID stage: fastText lid.176 (or a configured model) over batches of documents."""

from __future__ import annotations

import pyarrow as pa

from datafactory.factory.config import BuildConfig, LangidConfig
from datafactory.filters.langid import LanguageIdentifier, keep_language
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
    pa.field("lang", pa.string()),
    pa.field("lang_score", pa.float32()),
    pa.field("lang2", pa.string()),
    pa.field("lang2_score", pa.float32()),
]
ADDS = added_names(FIELDS)


class IdentifyLanguage(AnnotateBatch):
    def __init__(self, config: LangidConfig) -> None:
        self.config = config
        self.identifier: LanguageIdentifier | None = None

    def setup(self) -> None:
        self.identifier = LanguageIdentifier(self.config)

    def annotate(self, rows: list[dict]) -> list[dict]:
        results = self.identifier.predict([row["text"] for row in rows])
        for row, result in zip(rows, results, strict=True):
            keep, reason = keep_language(result, self.config)
            row.update(
                lang=result.lang, lang_score=result.score, lang2=result.lang2, lang2_score=result.score2,
                keep=keep, reason=reason, detail=None if keep else result.score,
            )
        return rows


def step(config: BuildConfig) -> DocumentStep:
    langid = config.langid
    if langid.model:  # relative to the config file, like every path in it
        langid = langid.model_copy(update={"model": config.resolve_path(langid.model)})
    return DocumentStep(FIELDS, lambda: IdentifyLanguage(langid))


def run(job: StageRun, following: FollowingPass = ALONE) -> StageResult:
    return run_document_stage(job, step(job.config), following)
