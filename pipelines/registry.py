"""The one list of build stages: each declares its name, upstream stages, the columns it adds, its own inputs and
its run function. The flow, the resume decision, the catalog, the report and `factory stages` all read it here."""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from datafactory.factory.config import BuildConfig, ConfigError
from datafactory.factory.markers import outputs_digest
from datafactory.filters.eval_sets import EvalSetError, read_eval_sets
from datafactory.filters.ftmodel import not_a_fasttext_model
from datafactory.filters.heuristics import HeuristicFilter
from datafactory.filters.quality_train import missing_inner_model, scorer_kind, stale_blend
from datafactory.pipelines.inputs import input_bytes, named_files_digest, resolve_inputs

if TYPE_CHECKING:  # the stage modules (Beam, numba, fastText) load when a stage runs, not when the list is read
    from datafactory.pipelines.common import StageResult, StageRun

Run = Callable[["StageRun"], "StageResult"]
OwnInputs = Callable[[BuildConfig, Path], str]
Settings = Callable[[BuildConfig], object]
Light = Callable[[BuildConfig], bool]


def in_background(compute: Callable[[], str]) -> Future[str]:
    """``compute()`` in a daemon thread (hashlib releases the GIL; a build stopped meanwhile does not wait for it)."""
    result: Future[str] = Future()

    def work() -> None:
        try:
            result.set_result(compute())
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits for the digest
            result.set_exception(err)

    threading.Thread(target=work, name="input-digest", daemon=True).start()
    return result


def always(config: BuildConfig) -> bool:
    """A Light predicate: the stage is light under every config."""
    return True


def section_named_after(name: str) -> Settings:
    """The settings a stage reads by default: the config section named after it (none: only seed and partitions)."""
    return lambda config: section.model_dump() if (section := getattr(config, name, None)) is not None else None


def no_own_inputs(config: BuildConfig, build_dir: Path) -> str:
    return ""


def files_named_under(prefix: str) -> OwnInputs:
    """A stage's own inputs: the files its config section names (a langid or tokenizer model)."""
    return lambda config, build_dir: named_files_digest(config, prefix)


@dataclass(frozen=True)
class Stage:
    """One stage: it runs once every upstream stage is done, and is skipped while its marker records the same
    config hash and input digest (upstream outputs plus its own inputs: raw files, scorer models, ...).

    Its module (default `datafactory.pipelines.<name>`) holds `run(job)`, `ADDS` (the columns it adds) and, where it
    reads files of its own, `own_inputs(config, build_dir)`; the fields below override them. The module is imported
    only when the stage runs or is described, so reading the list (the report, `factory --help`) stays light."""

    name: str
    upstream: tuple[str, ...]
    adds: tuple[str, ...] | None = None
    run: Run | None = None
    own_inputs: OwnInputs | None = None
    summary: str = ""
    judges: bool = True  # decides keep / drop per document (a step of the report's funnel)
    settings: Settings | None = None  # what of the config its output depends on; default: its own section
    module: str | None = None
    # whether, under a config, it does little work per document: then running mode "auto" keeps it in process,
    # whatever its size (worker start-up would cost more than a second core saves)
    light: Light | None = None
    # a per-document stage (its module has `step(config)`) that runs in the same pass as its upstream, which it
    # follows in the list, when that one runs: one read of the documents and one set of workers for both; its parts,
    # ledger and marker stay its own, so a resume or a threshold change still runs it alone
    fuses: bool = False

    def implementation(self) -> ModuleType:
        return importlib.import_module(self.module or f"datafactory.pipelines.{self.name}")

    def added(self) -> tuple[str, ...]:
        """The columns the stage adds."""
        return self.adds if self.adds is not None else self.implementation().ADDS

    def config_hash(self, config: BuildConfig) -> str:
        """Everything in the config that this stage's output depends on (its marker records it)."""
        settings = (self.settings or section_named_after(self.name))(config)
        parts = {"stage": self.name, "seed": config.seed, "num_partitions": config.num_partitions,
                 self.name: settings}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def input_digest(self, config: BuildConfig, build_dir: Path) -> str:
        """Computed once per run of the build, after the upstream stages finished: the sha256 of every output they
        wrote, and the digest of the stage's own input files (each read once)."""
        from datafactory.pipelines.common import StagePaths

        own = self.own_inputs or getattr(self.implementation(), "own_inputs", no_own_inputs)
        upstream = [outputs_digest(StagePaths(build_dir, name).stage_dir) for name in self.upstream]
        blob = "\x00".join([*upstream, own(config, build_dir)])
        return hashlib.sha256(blob.encode()).hexdigest()

    def text_bytes(self, config: BuildConfig, build_dir: Path) -> int:
        """About how much text this stage reads, as its running mode counts it: the input files' size for the first
        stage, else what its first upstream stage kept (estimated from Parquet metadata, nothing read); none for a
        light stage."""
        from datafactory.pipelines.common import StagePaths, kept_text

        if self.light is not None and self.light(config):
            return 0
        if not self.upstream:
            return input_bytes(resolve_inputs(config))
        return kept_text(StagePaths(build_dir, self.upstream[0])).text_bytes

    def job(self, config: BuildConfig, build_dir: Path) -> StageRun:
        """The stage's run under ``config``, its input digest computed once (its upstream must be done), in a thread:
        a stage whose marker cannot match runs while it hashes (ingest hashes every input file: 1 s a GB on one core);
        StageRun.done waits for it only when the marker could match."""
        from datafactory.pipelines.common import StageRun

        reads = self.upstream[0] if self.upstream else None
        digest = in_background(partial(self.input_digest, config, build_dir))
        return StageRun(config, build_dir, self.name, reads, self.config_hash(config), digest)

    def execute(self, config: BuildConfig, build_dir: Path) -> StageResult:
        """Run the stage (or skip it when done). It reads the kept documents of its first upstream stage. Running mode
        "auto" is settled here, per stage, by the text the stage reads: the rules see a fifth of the input and dedup
        a tenth, and worker processes cost more than they save on small inputs (BENCHMARKS.md, "Running mode"). The
        stages that fuse behind it (`fuses`) run in its pass, and its module's `run` takes them as a FollowingPass."""
        from datafactory.pipelines.common import Follower, FollowingPass

        if config.runner.direct_running_mode == "auto":
            config = settle_runner(config, self.text_bytes(config, build_dir))
        job = self.job(config, build_dir)
        followers = self.fused_followers()
        if not followers:
            return (self.run or self.implementation().run)(job)
        following = FollowingPass(tuple(Follower(stage.name, stage.implementation().step(config),
                                                 partial(stage.job, config, build_dir)) for stage in followers))
        return self.implementation().run(job, following)

    def fused_followers(self) -> tuple[Stage, ...]:
        """The stages registered right after this one that run in its pass: each `fuses` and reads the one before it.
        A follower left to run on its own (a resume, a changed setting) heads a pass of those after it."""
        followers: list[Stage] = []
        for stage in STAGES[STAGES.index(self) + 1:] if self in STAGES else ():
            if not stage.fuses or stage.upstream != ((followers[-1] if followers else self).name,):
                break
            followers.append(stage)
        return tuple(followers)


STAGES: tuple[Stage, ...] = (
    Stage("ingest", (), summary="read every input file into documents with stable ids; unreadable records become "
          "`invalid`",
          settings=lambda config: {"inputs": [spec.model_dump() for spec in config.inputs],
                                   "ingest": config.ingest.model_dump()}),
    Stage("langid", ("ingest",), own_inputs=files_named_under("langid."),
          summary="language and score per document; drops languages the config does not keep", fuses=True),
    Stage("signals", ("langid",),
          summary="measures every heuristic rule's signal once per document (keeps all)", judges=False,
          settings=lambda config: config.heuristics.measuring_settings(), fuses=True),
    Stage("heuristics", ("signals",),
          summary="keep or drop on the measured signals against the configured thresholds (cheap to re-run); "
          "with heuristics.c4_remove_lines a kept document's text becomes C4's cleaned text",
          settings=lambda config: config.heuristics.threshold_settings(), light=always, fuses=True),
    Stage("dedup", ("heuristics",),
          summary="exact and MinHash near-duplicate clusters; all but one document per cluster are `duplicate`; "
          "with substrings.enabled, spans repeated across survivors keep only their first copy",
          settings=lambda config: {"dedup": config.dedup.model_dump(), "substrings": config.substrings.model_dump()}),
    Stage("decontaminate", ("dedup",),
          summary="documents holding an evaluation item (decontaminate.eval_sets) are `contaminated`: dropped, or "
          "cut out in remove_span mode", light=lambda config: not config.decontaminate.eval_sets),
    Stage("quality", ("decontaminate",),
          summary="quality score per document and a per-language bucket (low / mid / high)"),
    Stage("tokenizer", ("quality",), own_inputs=files_named_under("tokenize.tokenizer."),
          summary="trains (or copies) the build's sentencepiece tokenizer", judges=False,
          settings=lambda config: config.tokenize.tokenizer.model_dump()),
    Stage("tokenize", ("quality", "tokenizer"),
          summary="tokenizes and packs the kept documents into Arrow shards with an index"),
)


def stage_names(judging_only: bool = False) -> list[str]:
    """Registered stage names in run order (``judging_only``: the stages that decide keep / drop)."""
    return [stage.name for stage in STAGES if stage.judges or not judging_only]


def settle_runner(config: BuildConfig, text_bytes: int) -> BuildConfig:
    """The config with runner mode "auto" settled by how much text a stage reads."""
    return config.model_copy(update={"runner": config.runner.for_input(text_bytes)})


def preflight(config: BuildConfig, origin: str = "config") -> None:
    """What a build checks before any stage runs, so a user's mistake is one located line, not a failed worker: the
    inputs, every file the config names, heuristics rule names, the eval sets, fastText models by their header, a
    combiner's inner models."""
    resolve_inputs(config)
    try:
        HeuristicFilter(config.heuristics)
    except ValueError as err:
        raise ConfigError(f"invalid config {origin}:\n  {err}") from None
    try:
        read_eval_sets(config.decontaminate, config.resolve_path)
    except EvalSetError as err:
        raise ConfigError(f"invalid config {origin}:\n  decontaminate.eval_sets: {err}") from None
    for key, path in fasttext_models(config).items():
        if problem := not_a_fasttext_model(path):
            raise ConfigError(f"invalid config {origin}:\n  {key}: {path} {problem}")
    for spec in config.quality.scorers:
        if stale_blend(config.resolve_path(spec.model), spec.kind):
            raise ConfigError(f"invalid config {origin}:\n  quality.scorers ({spec.label}): the blend {spec.model} was "
                              "trained beside another built-in default model; retrain it with `factory quality train`")
        if missing := missing_inner_model(config.resolve_path(spec.model), spec.kind):
            raise ConfigError(f"invalid config {origin}:\n  quality.scorers ({spec.label}): the combiner "
                              f"{spec.model} lacks its inner model {missing}")


def fasttext_models(config: BuildConfig) -> dict[str, str]:
    """The config's models that fastText must load, by key: the langid model, and the quality models of that kind."""
    named = config.named_files()
    kinds = {"langid.model": "fasttext", "quality.model": None}
    kinds |= {f"quality.scorers[{index}].model": spec.kind for index, spec in enumerate(config.quality.scorers)}
    return {key: named[key] for key, kind in kinds.items()
            if key in named and scorer_kind(named[key], kind) in ("fasttext", "blend")}  # a blend's file is fastText


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
