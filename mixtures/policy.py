"""Mixture policy: what a training run wants from a build (budget, phases, methods, caps), YAML validated on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from datafactory.factory.config import load_yaml_model

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


class TargetSet(Strict):
    """A validation set for the model sandbox: the shards of a source, a language, or both."""

    source: str | None = None
    lang: str | None = None

    @model_validator(mode="after")
    def _names_something(self) -> TargetSet:
        if self.source is None and self.lang is None:
            raise ValueError("a target set needs a source, a lang, or both, e.g. {source: news, lang: en}")
        return self


# Proxy sizes for the sandbox: ModelConfig fields over the trainer's "test" preset (vocab and seq_len come from
# the build). The first trains every candidate; all of them train the prior and the proposal for the scaling check.
DEFAULT_PROXY_MODELS: list[dict[str, Any]] = [
    {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2},
    {"dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2},
    {"dim": 256, "n_layers": 4, "n_heads": 8, "n_kv_heads": 4},
]


class SandboxRules(Strict):
    """`factory sandbox`: tiny proxy models trained on sampled mixtures choose the stable phase's mixture."""

    targets: dict[str, TargetSet] = Field(
        default_factory=dict, description="validation sets by name: shards held out of every proxy run")
    objective: dict[str, float] = Field(
        default_factory=dict, description="weight of each target set's loss in the objective; default: equal")
    heldout_fraction: float = Field(0.1, gt=0, le=1, description="share of a target set's shards held out (>= 1)")
    runs: int = Field(16, ge=4, description="candidate mixtures, one proxy run each (the prior is the first)")
    concentration: float = Field(1.0, gt=0, description="Dirichlet concentration per component around the prior")
    proxy_tokens: int = Field(5_000_000, gt=0, description="training tokens of each proxy run")
    batch_size: int = Field(16, gt=0, description="sequences per proxy training step")
    eval_tokens: int = Field(1_000_000, gt=0, description="most validation tokens read per target set")
    models: list[str | dict[str, Any]] = Field(
        default_factory=lambda: [dict(model) for model in DEFAULT_PROXY_MODELS], min_length=1,
        description="proxy sizes, smallest first: a preset name, a config file, or ModelConfig fields")
    samples: int = Field(20_000, ge=100, description="mixtures scored by the fitted model when proposing")
    top_k: int = Field(100, ge=1, description="the proposal is the mean of the best top_k scored mixtures (RegMix)")

    @model_validator(mode="after")
    def _objective_names_targets(self) -> SandboxRules:
        if "objective" in self.targets:
            raise ValueError("'objective' names the weighted sum of the target losses: call the target set otherwise")
        if unknown := sorted(set(self.objective) - set(self.targets)):
            raise ValueError(f"objective names {unknown}, which are not target sets ({sorted(self.targets)})")
        if bad := {name: weight for name, weight in self.objective.items() if weight <= 0}:
            raise ValueError(f"objective weights must be positive; fix {bad} (leave a target out to ignore it)")
        if self.top_k > self.samples:
            raise ValueError(f"top_k {self.top_k} is more than samples {self.samples}: lower it")
        return self


class WindTunnelTarget(Strict):
    """The run the wind tunnel predicts settings for."""

    model: str | dict[str, Any] = Field(
        "125m", description="a preset name, a config file, or ModelConfig fields (`preset:` + overrides)")
    tokens: int = Field(2_500_000_000, gt=0, description="its training tokens")


class WindTunnelRules(Strict):
    """`factory windtunnel`: μP proxies at growing widths sweep learning rate x batch size; WSD decay branches off
    one stable run per setting give several token budgets; fitted laws predict the target run's settings."""

    targets: dict[str, TargetSet] = Field(
        default_factory=dict, description="validation sets held out of every proxy; default: one per source")
    heldout_fraction: float = Field(0.1, gt=0, le=1, description="share of a target set's shards held out (>= 1)")
    widths: list[int] = Field([64, 96, 128, 192], min_length=4, description=(
        "proxy widths (model dim), smallest first; the first is the μP base width, the last is held out: "
        "predicted from the others, then run to validate the prediction"))
    model: dict[str, Any] = Field(
        default_factory=lambda: {"n_layers": 2, "n_heads": 4, "n_kv_heads": 2},
        description="ModelConfig fields every proxy shares (not dim or mup_base_dim: the wind tunnel sets them)")
    learning_rates: list[float] = Field([0.0025, 0.005, 0.01, 0.02, 0.04], min_length=3,
                                        description="peak learning rates at the base width (μP scales the rest)")
    batch_sizes: list[int] = Field([8, 16, 32], min_length=2, description="sequences per step")
    token_budgets: list[int] = Field([2_500_000, 5_000_000, 10_000_000], min_length=3, description=(
        "training tokens of the decay branches: one stable run per setting, a decay off it for each budget"))
    eval_tokens: int = Field(1_000_000, gt=0, description="most validation tokens read per target set")
    decay_fractions: list[float] = Field(
        [0.05, 0.1, 0.15, 0.2, 0.25, 0.3], min_length=1,
        description="decay lengths (shares of the tokens) the fitted loss-curve law chooses among")
    target: WindTunnelTarget = WindTunnelTarget()

    @model_validator(mode="after")
    def _grid_is_sound(self) -> WindTunnelRules:
        for name in ("widths", "learning_rates", "batch_sizes", "token_budgets"):
            values = getattr(self, name)
            if list(values) != sorted(set(values)) or min(values) <= 0:
                raise ValueError(f"{name} must be positive and strictly increasing, not {values}")
        if set(self.model) & {"dim", "mup_base_dim"}:
            raise ValueError("model must not set dim or mup_base_dim: `widths` sets dim, and the first width is the "
                             "μP base")
        if not all(0 < fraction < 1 for fraction in self.decay_fractions):
            raise ValueError(f"decay_fractions must lie strictly between 0 and 1, not {self.decay_fractions}")
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
    sandbox: SandboxRules = SandboxRules()
    windtunnel: WindTunnelRules = WindTunnelRules()

    @model_validator(mode="after")
    def _phases_fit(self) -> Policy:
        if self.warmup_fraction + self.anneal_fraction >= 1:
            raise ValueError("warmup_fraction + anneal_fraction must leave room for the stable phase: lower one")
        return self


def load_policy(path: str | Path | None) -> Policy:
    """The default policy for None, else the YAML file's; unknown keys and bad values are ConfigErrors."""
    return Policy() if path is None else load_yaml_model(path, Policy, "policy")
