"""Quality stage: a fastText classifier scores every surviving document; per-language quantiles cut buckets."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.transforms.stats import ApproximateQuantiles

from factory.config import BuildConfig, QualityConfig, ScorerSpec
from factory.demo import quality_training_examples
from factory.records import DROPPED, stage_schema
from factory.shards import sha256_file
from filters.lm_quality import REFERENCE_SUFFIX
from filters.quality import bucket_for, train_classifier
from filters.quality_train import Scorer, load_scorer, sidecar_path
from pipelines.common import (
    AnnotateBatch,
    StagePaths,
    StageResult,
    WriteStage,
    decision_counts,
    fill_empty_partitions,
    read_kept,
    run_beam,
    run_stage,
    write_parquet_atomic,
)

STAGE = "quality"
FIELDS = [
    pa.field("quality_score", pa.float32()),  # the weighted mean of every scorer's P(hq)
    pa.field("quality_scores", pa.map_(pa.string(), pa.float32())),  # each scorer's own, by name
    pa.field("bucket", pa.string()),
]
CUTS_FILE = "buckets.parquet"
CUTS_SCHEMA = pa.schema([("lang", pa.string()), ("low_cut", pa.float64()), ("high_cut", pa.float64())])
QUANTILES = 101  # percentiles


def base_language(lang: str | None) -> str:
    return (lang or "und").split("-")[0]


def default_model(build_dir: Path, seed: int) -> Path:
    """The built-in classifier, trained from the packaged labelled examples the first time a build needs it."""
    path = build_dir / "models" / f"quality-default-{seed}.bin"
    if not path.exists():
        train_classifier(quality_training_examples(seed), path)
    return path


def scorer_specs(config: BuildConfig, build_dir: Path) -> list[ScorerSpec]:
    """`quality.model` (a fastText file) then `quality.scorers`; the built-in classifier when neither is set."""
    quality = config.quality
    specs = [ScorerSpec(model=quality.model, kind="fasttext")] if quality.model else []
    specs += quality.scorers
    return specs or [ScorerSpec(model=str(default_model(build_dir, config.seed)), kind="fasttext")]


def models_digest(specs: list[ScorerSpec]) -> str:
    """Changes when any scorer's files (model, its reference LM, its sidecar), kind or weight change."""
    digest = hashlib.sha256()
    for spec in specs:
        digest.update(f"{spec.label}\x00{spec.kind}\x00{spec.weight}\x00".encode())
        for path in (Path(spec.model), Path(f"{spec.model}{REFERENCE_SUFFIX}"), sidecar_path(spec.model)):
            digest.update(sha256_file(path).encode() if path.is_file() else b"-")
    return digest.hexdigest()


class ScoreQuality(AnnotateBatch):
    """Scores a batch with every scorer (each batched over the texts); keeps the weighted mean and each score."""

    def __init__(self, specs: list[ScorerSpec], config: QualityConfig) -> None:
        self.specs, self.config = specs, config
        self.scorers: list[Scorer] = []

    def setup(self) -> None:
        self.scorers = [load_scorer(spec.model, spec.kind) for spec in self.specs]

    def annotate(self, rows: list[dict]) -> list[dict]:
        texts = [row["text"] for row in rows]
        columns = [scorer.score(texts) for scorer in self.scorers]
        weights = [spec.weight for spec in self.specs]
        total = sum(weights)
        for i, row in enumerate(rows):
            each = [column[i] for column in columns]
            score = sum(w * value for w, value in zip(weights, each, strict=True)) / total
            keep = score >= self.config.min_score
            row.update(quality_score=score, keep=keep, reason=None if keep else "quality_below_min_score",
                       detail=None if keep else score,
                       quality_scores=[(spec.label, value) for spec, value in zip(self.specs, each, strict=True)])
        return rows


def cut_points(quantiles: list[float], config: QualityConfig) -> tuple[float, float]:
    step = len(quantiles) - 1
    low = quantiles[round(config.bottom_fraction * step)]
    high = quantiles[round((1 - config.top_fraction) * step)]
    return low, high


def assign_bucket(row: dict, cuts: dict[str, tuple[float, float]]) -> dict:
    low, high = cuts[base_language(row["lang"])]
    row["bucket"] = bucket_for(row["quality_score"], low, high)
    return row


class WriteCuts(beam.DoFn):
    def __init__(self, path: Path) -> None:
        self.path = path

    def process(self, cuts: list[tuple[str, tuple[float, float]]]) -> Iterable[None]:
        rows = [{"lang": lang, "low_cut": low, "high_cut": high} for lang, (low, high) in sorted(cuts)]
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=CUTS_SCHEMA), self.path)
        return []


def run(config: BuildConfig, build_dir: Path) -> StageResult:
    paths, previous = StagePaths(build_dir, STAGE), StagePaths(build_dir, "dedup")
    specs = scorer_specs(config, build_dir)
    schema = stage_schema(pq.read_schema(previous.parts()[0]), FIELDS)
    total, quality = config.num_partitions, config.quality

    def body() -> dict:
        def build(pipeline: beam.Pipeline) -> None:
            scored = (
                read_kept(pipeline, previous)
                | "Batch" >> beam.BatchElements(min_batch_size=256, max_batch_size=256)
                | "Score" >> beam.ParDo(ScoreQuality(specs, quality))
            )
            cuts = (
                scored
                | "ByLanguage" >> beam.Map(lambda row: (base_language(row["lang"]), row["quality_score"]))
                | "Quantiles" >> ApproximateQuantiles.PerKey(QUANTILES)
                | "CutPoints" >> beam.MapTuple(lambda lang, qs: (lang, cut_points(qs, quality)))
            )
            _ = cuts | "AllCuts" >> beam.combiners.ToList() | "WriteCuts" >> beam.ParDo(
                WriteCuts(paths.stage_dir / CUTS_FILE)
            )
            (
                scored
                | "Bucket" >> beam.Map(assign_bucket, cuts=beam.pvalue.AsDict(cuts))
                | "Write" >> WriteStage(paths, schema, total, DROPPED)
            )

        run_beam(config, build)
        fill_empty_partitions(paths, schema, total)
        return decision_counts(paths)

    extra = [paths.stage_dir / CUTS_FILE]
    return run_stage(config, paths, previous, models_digest(specs), body, lambda: [p for p in extra if p.exists()])
