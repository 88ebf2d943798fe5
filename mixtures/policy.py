"""Mixture policy: what a training run wants from a build (budget, phases, methods, caps), YAML validated on load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.config import ConfigError

Method = Literal["natural", "temperature", "unimax"]
Bucket = Literal["high", "mid", "low"]
GroupBy = Literal["source", "lang", "source_lang"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhaseRules(Strict):
    """How one phase spreads its tokens over the groups it may draw from."""

    method: Method = Field("natural", description="natural proportions, temperature sampling, or UniMax")
    temperature: float = Field(1.0, gt=0, description="method temperature: weight ~ tokens^(1/temperature)")
    targets: dict[str, float] = Field(
        default_factory=dict, description="fixed share of the phase's tokens per group; the method spreads the rest"
    )

    @model_validator(mode="after")
    def _consistent(self) -> PhaseRules:
        if "temperature" in self.model_fields_set and self.method != "temperature":
            raise ValueError(f"temperature is only used by method: temperature (method is {self.method}): "
                             "set method: temperature or remove temperature")
        outside = {name: share for name, share in self.targets.items() if not 0 < share <= 1}
        if outside:
            raise ValueError(f"targets are shares of the phase's tokens in (0, 1]; fix {outside}")
        total = sum(self.targets.values())
        if total > 1 + 1e-9:
            raise ValueError(f"targets sum to {total:g}, so the weights cannot sum to one: lower them to 1 or less")
        return self


class AnnealRules(PhaseRules):
    """Which data the decay phase may read: a top pool (best buckets, SFT-style sources) and a rest pool."""

    buckets: list[Bucket] = Field(["high"], min_length=1, description="quality buckets in the top pool")
    sources: list[str] = Field(
        default_factory=list, description="sources in the top pool whatever their bucket (instruction/SFT data)"
    )
    top_share: float = Field(0.7, gt=0, le=1, description="share of the anneal tokens the top pool takes")
    rest_buckets: list[Bucket] = Field(["mid"], description="buckets that fill the other 1 - top_share")

    @model_validator(mode="after")
    def _pools_disjoint(self) -> AnnealRules:
        if both := sorted(set(self.buckets) & set(self.rest_buckets)):
            raise ValueError(f"bucket(s) {both} are in both anneal.buckets and anneal.rest_buckets: list each once")
        return self


class Policy(Strict):
    """A training run's wishes; every key has a default, so an empty policy file is valid."""

    name: str = "default"
    total_tokens: int | None = Field(None, gt=0, description="training tokens; default: every available token once")
    seed: int = Field(0, description="the trainer's sampling seed, recorded in both manifests")
    max_epochs: float = Field(4.0, gt=0, description="cap on passes over any shard, both phases together")
    group_by: GroupBy = Field("source", description="what one mixture component is: a source, a language, or both")
    warmup_fraction: float = Field(0.01, ge=0, lt=1, description="LR warmup as a share of all tokens")
    anneal_fraction: float = Field(0.1, gt=0, lt=1, description="WSD decay length as a share of all tokens")
    decay_shape: Literal["linear", "exponential", "sqrt"] = "linear"
    stable: PhaseRules = PhaseRules()
    anneal: AnnealRules = AnnealRules()

    @model_validator(mode="after")
    def _phases_fit(self) -> Policy:
        if self.warmup_fraction + self.anneal_fraction >= 1:
            raise ValueError("warmup_fraction + anneal_fraction must leave room for the stable phase: lower one")
        return self


def describe(err: ValidationError, origin: str) -> str:
    lines = [f"invalid policy {origin}:"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def load_policy(path: str | Path | None) -> Policy:
    """The default policy for None, else the YAML file's; unknown keys and bad values are ConfigErrors."""
    if path is None:
        return Policy()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"policy file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML in policy {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid policy {path}: expected a mapping of policy keys")
    try:
        return Policy.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe(err, str(path))) from None
