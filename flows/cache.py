"""Prefect cache keys for build stages: the config and input hashes a stage's completion marker records.

A stage task is served from Prefect's cache only when its marker on disk matches the current config and inputs;
otherwise it runs and refreshes the cache entry, so the cache can never hand back outputs that are gone or stale.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from factory.config import BuildConfig
from factory.markers import is_done, marker_digest
from pipelines.common import StagePaths
from pipelines.quality import models_digest, scorer_specs
from pipelines.readers import inputs_digest, resolve_inputs

# The stage whose marker feeds each stage's input hash, as each pipelines/<stage>.run passes it to run_stage.
UPSTREAM: dict[str, str | None] = {
    "ingest": None, "langid": "ingest", "heuristics": "langid", "dedup": "heuristics", "quality": "dedup",
    "tokenizer": "quality", "tokenize": "quality",
}


def extra_input_hash(stage: str, config: BuildConfig, build_dir: Path) -> str | None:
    """The input hash a stage adds beside its upstream marker (raw inputs, scorer models, the tokenizer)."""
    if stage == "ingest":
        return inputs_digest(resolve_inputs(config))
    if stage == "quality":
        return models_digest(scorer_specs(config, build_dir))
    if stage == "tokenize":
        return marker_digest(StagePaths(build_dir, "tokenizer").stage_dir)
    return None


def stage_input_hash(stage: str, config: BuildConfig, build_dir: Path) -> str:
    """The input hash pipelines.common.run_stage records in the stage's marker; a mismatch only costs a rerun."""
    upstream = UPSTREAM[stage]
    upstream_hash = "" if upstream is None else marker_digest(StagePaths(build_dir, upstream).stage_dir)
    return hashlib.sha256(f"{upstream_hash}:{extra_input_hash(stage, config, build_dir) or ''}".encode()).hexdigest()


@dataclass(frozen=True)
class StageCacheState:
    key: str
    done: bool


def stage_cache_state(stage: str, config: BuildConfig, build_dir: Path) -> StageCacheState:
    """The cache key (build dir, stage, config hash, input hash) and whether the stage's marker matches it."""
    config_hash = config.stage_hash(stage)
    input_hash = stage_input_hash(stage, config, build_dir)
    blob = f"{Path(build_dir).resolve()}\x00{stage}\x00{config_hash}\x00{input_hash}".encode()
    key = f"stage-{stage}-{hashlib.sha256(blob).hexdigest()[:32]}"
    return StageCacheState(key, is_done(StagePaths(build_dir, stage).stage_dir, config_hash, input_hash))


@dataclass
class FixedKey(CachePolicy):
    """A cache key computed by the flow before submitting the task (it needs the upstream stage's marker)."""

    key: str = ""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        return self.key or None
