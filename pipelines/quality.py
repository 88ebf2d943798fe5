"""Quality stage: the configured scorers (else the built-in default model) score every surviving document;
per-language quantiles cut buckets."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from datafactory.factory.atomic import atomic_path
from datafactory.factory.config import (
    BuildConfig,
    ConfigError,
    HeuristicsConfig,
    QualityConfig,
    ReferenceConfig,
    ScorerSpec,
)
from datafactory.factory.shards import sha256_file
from datafactory.filters.quality import HQ, LQ, Scorer, bucket_for
from datafactory.filters.quality_blend import BlendedScorer
from datafactory.filters.quality_combine import CombinedScorer
from datafactory.filters.quality_default import DEFAULT_MODEL, DEFAULT_NAME
from datafactory.filters.quality_train import companion_paths, load_scorer, scorer_kind, train_quality_model
from datafactory.pipelines.common import (
    BATCH_ROWS,
    AnnotateBatch,
    MapParts,
    PassMember,
    StagePaths,
    StageResult,
    StageRun,
    added_names,
    decision_counts,
    fill_empty_partitions,
    iter_kept_batches,
    map_parts,
    output_schema,
    run_beam,
    run_stage,
    write_parquet_atomic,
)

log = logging.getLogger(__name__)

FIELDS = [
    pa.field("quality_score", pa.float32()),  # the weighted mean of every scorer's P(hq)
    pa.field("quality_scores", pa.map_(pa.string(), pa.float32())),  # each scorer's own, by name
    pa.field("bucket", pa.string()),
]
ADDS = added_names(FIELDS)
CUTS_FILE = "buckets.parquet"
CUTS_SCHEMA = pa.schema([("lang", pa.string()), ("low_cut", pa.float64()), ("high_cut", pa.float64())])
BINS = 1 << 16  # score histogram resolution: cut points are multiples of 1/65536


def base_language(lang: str | None) -> str:
    return (lang or "und").split("-")[0] or "und"


def configured_specs(config: BuildConfig) -> list[ScorerSpec]:
    """`quality.model` (a fastText file) then `quality.scorers`, paths resolved; empty when neither is set."""
    quality = config.quality
    specs = [ScorerSpec(model=quality.model, kind="fasttext")] if quality.model else []
    specs += quality.scorers
    # Relative to the config file, like every path in it; the label stays the file stem either way.
    return [spec.model_copy(update={"model": config.resolve_path(spec.model)}) for spec in specs]


def reference_model_path(build_dir: Path) -> Path:
    return build_dir / "models" / "quality-reference.bin"


def scorer_specs(config: BuildConfig, build_dir: Path) -> list[ScorerSpec]:
    """The configured scorers and the build's reference classifier (trained by the stage itself, not here), else the
    built-in default model."""
    if config.quality.uses_default_model:
        return [ScorerSpec(model=str(DEFAULT_MODEL), name=DEFAULT_NAME, kind="combiner")]
    reference = config.quality.reference
    own = [] if reference is None else [ScorerSpec(model=str(reference_model_path(build_dir)), name="reference",
                                                   kind=reference.kind, weight=reference.weight)]
    return configured_specs(config) + own


def reference_examples(previous: StagePaths, reference: ReferenceConfig, seed: int) -> list[tuple[str, str]]:
    """(text, label) examples for the build's reference classifier: the named sources' kept documents (hq) and a
    seeded sample of the others (lq), chosen by a hash of each doc_id, so the same build picks the same examples."""
    files = [str(path) for path in previous.parts()]
    counts = dict(duckdb.sql(
        "SELECT source IN (SELECT unnest($sources)), count(*) FROM read_parquet($files) WHERE keep GROUP BY ALL",
        params={"files": files, "sources": reference.sources},
    ).fetchall())
    positives, others = counts.get(True, 0), counts.get(False, 0)
    if not positives or not others:
        raise NoReferenceExamples(f"quality.reference: {positives:,} kept documents from {reference.sources} and "
                                  f"{others:,} from other sources reached the quality stage; both are needed to train")
    positive_rate = min(1.0, reference.max_positives / positives)
    negative_rate = min(1.0, reference.negatives_per_positive * positives * positive_rate / others)
    sources, examples = set(reference.sources), []
    for part in previous.parts():
        for rows in iter_kept_batches(part, 1024):
            for row in rows:
                positive = row["source"] in sources
                drawn = xxhash.xxh64_intdigest(row["doc_id"].encode(), seed=seed) / 2**64
                if drawn < (positive_rate if positive else negative_rate):
                    examples.append((row["text"], HQ if positive else LQ))
    return examples


class NoReferenceExamples(ConfigError):
    """The build cannot train its reference classifier: no positives or no negatives reached the stage."""


def train_reference_model(previous: StagePaths, config: BuildConfig, build_dir: Path) -> dict:
    """Trains DIR/models/quality-reference.bin (+ MODEL.json with held-out metrics); returns what the marker keeps."""
    reference = config.quality.reference
    examples = reference_examples(previous, reference, config.seed)
    sidecar = train_quality_model(examples, reference_model_path(build_dir), reference.kind,
                                  heldout_fraction=reference.heldout_fraction, seed=config.seed)
    return {"positives": sum(label == HQ for _, label in examples),
            "negatives": sum(label == LQ for _, label in examples), "heldout": sidecar["heldout"]}


def own_inputs(config: BuildConfig, build_dir: Path) -> str:
    """The quality stage's own inputs: the model files it scores with (the reference's examples are the upstream
    output, hashed already). Reads files, never trains: computing it has no side effects."""
    return models_digest(scorer_specs(config, build_dir) if config.quality.uses_default_model
                         else configured_specs(config))


def models_digest(specs: list[ScorerSpec]) -> str:
    """Changes when any scorer's files (model, its reference LM, its sidecar), kind or weight change."""
    digest = hashlib.sha256()
    for spec in specs:
        digest.update(f"{spec.label}\x00{spec.kind}\x00{spec.weight}\x00".encode())
        for path in (Path(spec.model), *companion_paths(spec.model)):
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
        weights = [spec.weight for spec in self.specs]
        total, columns, shown = sum(weights), [], {}
        for spec, scorer in zip(self.specs, self.scorers, strict=True):
            values, inputs = self.score(scorer, texts, rows)
            columns.append(values)
            shown |= {spec.label: values} | {f"{spec.label}.{kind}": column for kind, column in inputs.items()}
        for i, row in enumerate(rows):
            score = sum(w * column[i] for w, column in zip(weights, columns, strict=True)) / total
            score = float(np.float32(score))  # as stored: the cut points and buckets see the same value
            keep = score >= self.config.min_score
            row.update(quality_score=score, keep=keep, reason=None if keep else "quality_below_min_score",
                       detail=None if keep else score,
                       quality_scores=[(name, column[i]) for name, column in shown.items()])
        return rows

    @staticmethod
    def score(scorer: Scorer, texts: list[str], rows: list[dict]) -> tuple[list[float], dict[str, list[float]]]:
        """A scorer's values, and a combiner's or a blend's inputs beside them (they read the signals the signals stage
        stored; other scorers read the text alone)."""
        if isinstance(scorer, CombinedScorer | BlendedScorer):
            return scorer.score_with_signals(texts, [row["signals"] for row in rows])
        return scorer.score(texts), {}


def score_histograms(paths: StagePaths) -> dict[str, list[tuple[int, int]]]:
    """Per language (base code), counts of kept scores per 1/BINS-wide bin of [0, 1], read back from the written
    parts: exact counts, so the cut points cannot depend on how a runner split the work, and the memory is bounded
    by BINS per language, whatever the corpus."""
    files = [str(path) for path in paths.parts()]
    rows = duckdb.sql(
        f"""SELECT coalesce(nullif(split_part(lang, '-', 1), ''), 'und') AS base,
                   least(greatest(floor(quality_score * {BINS}), 0), {BINS - 1})::BIGINT AS bin, count(*)
            FROM read_parquet($files) WHERE quality_score IS NOT NULL GROUP BY ALL ORDER BY ALL""",
        params={"files": files},
    ).fetchall()
    histograms: dict[str, list[tuple[int, int]]] = {}
    for lang, key, count in rows:
        histograms.setdefault(lang, []).append((key, count))
    return histograms


def cut_points(histogram: list[tuple[int, int]], config: QualityConfig) -> tuple[float, float]:
    """(low_cut, high_cut): the lower edges of the bins holding the documents at the bottom_fraction and
    1 - top_fraction ranks, so about those shares score below the low cut and at or above the high cut."""
    total = sum(count for _, count in histogram)

    def at(fraction: float) -> float:
        rank, seen = min(int(fraction * total), total - 1), 0
        for key, count in histogram:
            seen += count
            if seen > rank:
                return key / BINS
        return 1.0

    low = at(config.bottom_fraction)
    return low, max(low, at(1 - config.top_fraction))


def assign_bucket(row: dict, cuts: dict[str, tuple[float, float]]) -> dict:
    low, high = cuts[base_language(row["lang"])]
    row["bucket"] = bucket_for(row["quality_score"], low, high)
    return row


def write_cuts(cuts: dict[str, tuple[float, float]], path: Path) -> None:
    rows = [{"lang": lang, "low_cut": low, "high_cut": high} for lang, (low, high) in sorted(cuts.items())]
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=CUTS_SCHEMA), path)


def read_cuts(path: Path) -> dict[str, tuple[float, float]]:
    return {row["lang"]: (row["low_cut"], row["high_cut"]) for row in pq.read_table(path).to_pylist()}


class BucketPart(beam.DoFn):
    """Fills the bucket column of one written part from the cut points, and replaces the part atomically.

    A second pipeline with the cuts as a constructor argument, not a side input: the DaskRunner computes a side
    input inside each task of its consumer, and with more than one partition that loses or mixes its data."""

    def __init__(self, cuts: dict[str, tuple[float, float]]) -> None:
        self.cuts = cuts

    def process(self, path: str) -> Iterable[None]:
        parquet = pq.ParquetFile(path)
        column = parquet.schema_arrow.get_field_index("bucket")
        with atomic_path(Path(path)) as tmp, pq.ParquetWriter(tmp, parquet.schema_arrow, compression="zstd") as out:
            for group in range(parquet.num_row_groups):  # a row group at a time: a part may hold the text
                table = parquet.read_row_group(group)
                rows = table.select(["lang", "quality_score"]).to_pylist()
                buckets = pa.array([assign_bucket(row, self.cuts)["bucket"] for row in rows], pa.string())
                out.write_table(table.set_column(column, "bucket", buckets))
        return []


def warn_if_signals_differ(config: BuildConfig, specs: list[ScorerSpec]) -> None:
    """A combiner (and a blend's default model) learnt its weights on signals measured with the default heuristics
    settings; a build that measures differently (other rule sets, word splitting, stop words, C4 line removal) feeds
    it other values, or none."""
    combiners = [spec.label for spec in specs if scorer_kind(spec.model, spec.kind) in ("combiner", "blend")]
    if combiners and config.heuristics.measuring_settings() != HeuristicsConfig().measuring_settings():
        log.warning("quality: %s read signals measured with non-default heuristics settings; its weights were "
                    "learnt on the defaults (missing signals count as average)", ", ".join(combiners))


def run(job: StageRun) -> StageResult:
    config, build_dir, paths, previous = job.config, job.build_dir, job.paths, job.previous
    specs = scorer_specs(config, build_dir)
    warn_if_signals_differ(config, specs)
    schema = output_schema(previous, FIELDS)
    total, quality = config.num_partitions, config.quality
    cuts_path = paths.stage_dir / CUTS_FILE

    def bucket(pipeline: beam.Pipeline) -> None:
        parts = [str(path) for path in paths.parts()]
        pipeline | "Parts" >> beam.Create(parts) | "Bucket" >> beam.ParDo(BucketPart(read_cuts(cuts_path)))

    def body() -> dict:
        trained = {}
        if config.quality.reference is not None:
            trained = {"reference": train_reference_model(previous, config, build_dir)}
        scoring = PassMember(paths, schema, ScoreQuality(specs, quality))
        map_parts(config, previous, MapParts([scoring], BATCH_ROWS))  # bucket still empty
        fill_empty_partitions(paths, schema, total)
        cuts = {lang: cut_points(histogram, quality) for lang, histogram in score_histograms(paths).items()}
        write_cuts(cuts, cuts_path)
        run_beam(config, bucket)
        return decision_counts(paths) | {"scored_by": [spec.label for spec in specs]} | trained

    def outputs() -> list[Path]:
        trained = [] if config.quality.reference is None else [reference_model_path(build_dir)]
        return [cuts_path, *trained, *(path for model in trained for path in companion_paths(model) if path.exists())]

    return run_stage(job, body, outputs)
