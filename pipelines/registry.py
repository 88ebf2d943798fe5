"""The one list of build stages: each declares its name, upstream stages, the columns it adds, its own inputs and
its run function. The flow, the resume decision, the catalog, the report and `factory stages` all read it here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from datafactory.factory.config import BuildConfig
from datafactory.factory.markers import marker_digest
from datafactory.factory.records import DECISION_COLUMNS
from datafactory.pipelines import dedup, heuristics, ingest, langid, quality, signals, tokenize, tokenizer
from datafactory.pipelines.common import StagePaths, StageResult, StageRun

Run = Callable[[StageRun], StageResult]
OwnInputs = Callable[[BuildConfig, Path], str]


def no_own_inputs(config: BuildConfig, build_dir: Path) -> str:
    return ""


@dataclass(frozen=True)
class Stage:
    """One stage: it runs once every upstream stage is done, and is skipped while its marker records the same
    config hash and input digest (upstream markers plus its own inputs: raw files, scorer models, ...)."""

    name: str
    upstream: tuple[str, ...]
    adds: tuple[str, ...]
    run: Run
    own_inputs: OwnInputs = no_own_inputs
    summary: str = ""
    judges: bool = True  # decides keep / drop per document (a step of the report's funnel)

    def input_digest(self, config: BuildConfig, build_dir: Path) -> str:
        """Computed once per run of the build, after the upstream stages finished: their markers' bytes (which
        list every output's sha256) and the digest of the stage's own inputs, which reads each input file once."""
        upstream = [marker_digest(StagePaths(build_dir, name).stage_dir) for name in self.upstream]
        blob = "\x00".join([*upstream, self.own_inputs(config, build_dir)])
        return hashlib.sha256(blob.encode()).hexdigest()

    def execute(self, config: BuildConfig, build_dir: Path) -> StageResult:
        """Run the stage (or skip it when done) with its input digest computed here, once. It reads the kept
        documents of its first upstream stage."""
        reads = self.upstream[0] if self.upstream else None
        return self.run(StageRun(config, build_dir, self.name, reads, self.input_digest(config, build_dir)))


def field_names(fields: Sequence) -> tuple[str, ...]:
    return tuple(f.name for f in fields)


STAGES: tuple[Stage, ...] = (
    Stage("ingest", (), ingest.ADDS, ingest.run, ingest.input_files_digest,
          "read every input file into documents with stable ids; unreadable records become `invalid`"),
    Stage("langid", ("ingest",), field_names(langid.FIELDS), langid.run,
          summary="language and score per document; drops languages the config does not keep"),
    Stage("signals", ("langid",), field_names(signals.FIELDS), signals.run,
          summary="measures every heuristic rule's signal once per document (keeps all)", judges=False),
    Stage("heuristics", ("signals",), DECISION_COLUMNS, heuristics.run,
          summary="keep or drop on the measured signals against the configured thresholds (cheap to re-run)"),
    Stage("dedup", ("heuristics",), field_names(dedup.FIELDS), dedup.run,
          summary="exact and MinHash near-duplicate clusters; all but one document per cluster are `duplicate`"),
    Stage("quality", ("dedup",), field_names(quality.FIELDS), quality.run, quality.scorers_digest,
          "quality score per document and a per-language bucket (low / mid / high)"),
    Stage("tokenizer", ("quality",), ("tokenizer.model",), tokenizer.run,
          summary="trains (or copies) the build's sentencepiece tokenizer", judges=False),
    Stage("tokenize", ("quality", "tokenizer"), field_names(tokenize.SCHEMA), tokenize.run,
          summary="tokenizes and packs the kept documents into Arrow shards with an index"),
)


def stage_names(judging_only: bool = False) -> list[str]:
    """Registered stage names in run order (``judging_only``: the stages that decide keep / drop)."""
    return [stage.name for stage in STAGES if stage.judges or not judging_only]


def stage(name: str) -> Stage:
    """The registered stage called ``name``."""
    for registered in STAGES:
        if registered.name == name:
            return registered
    raise KeyError(f"no stage {name!r}; the stages are {', '.join(stage_names())}")


def run_stage_named(name: str, config: BuildConfig, build_dir: Path) -> StageResult:
    """Run one stage outside the flow (tests, benchmarks, `factory tokenizer train`); its upstream must be done."""
    return stage(name).execute(config, build_dir)


def check_order(stages: Sequence[Stage]) -> None:
    """Every stage comes after each of its upstream stages (a list, not a graph, is what the flow runs)."""
    seen: set[str] = set()
    for stage in stages:
        missing = [name for name in stage.upstream if name not in seen]
        if missing:
            raise ValueError(f"stage {stage.name!r} is listed before its upstream stage(s) {missing}")
        seen.add(stage.name)


check_order(STAGES)
