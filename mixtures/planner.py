"""Mixture planner: turns the shard index and a policy into stable-phase and anneal-phase WSD manifests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.config import ConfigError
from factory.manifest import dump_manifest
from factory.shards import read_index

PLAN_SCHEMA = pa.schema(
    [
        ("phase", pa.string()),
        ("source", pa.string()),
        ("available_tokens", pa.int64()),
        ("weight", pa.float64()),
        ("planned_tokens", pa.int64()),
        ("epochs", pa.float64()),
    ]
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnnealRules(Strict):
    buckets: list[str] = Field(["high"], min_length=1, description="quality buckets the decay phase favours")
    top_share: float = Field(0.7, gt=0, le=1, description="share of anneal tokens drawn from those buckets")
    rest_buckets: list[str] = Field(["mid"], description="buckets that fill the remaining share")


class Policy(Strict):
    name: str = "default"
    total_tokens: int | None = Field(None, gt=0, description="training tokens; default: every available token once")
    anneal_fraction: float = Field(0.1, gt=0, lt=1, description="WSD decay length as a share of all tokens")
    warmup_fraction: float = Field(0.01, ge=0, lt=1)
    decay_shape: Literal["linear", "exponential", "sqrt"] = "linear"
    max_epochs: float = Field(4.0, gt=0, description="cap on how often any source is repeated in a phase")
    seed: int = 0
    anneal: AnnealRules = AnnealRules()

    @model_validator(mode="after")
    def _phases_fit(self) -> Policy:
        if self.warmup_fraction + self.anneal_fraction >= 1:
            raise ValueError("warmup_fraction + anneal_fraction must leave room for the stable phase")
        return self


def load_policy(path: str | Path | None) -> Policy:
    if path is None:
        return Policy()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return Policy.model_validate(data)
    except FileNotFoundError:
        raise ConfigError(f"policy file not found: {path}") from None
    except (yaml.YAMLError, ValidationError) as err:
        raise ConfigError(f"invalid policy {path}: {err}") from None


class InfeasiblePlan(ValueError):
    """A policy the available data cannot satisfy; the message says what to change."""


@dataclass(frozen=True)
class Group:
    """Shards that are sampled together under one name in a phase."""

    name: str
    shards: list[dict]

    @property
    def tokens(self) -> int:
        return sum(shard["tokens"] for shard in self.shards)


def allocate(budget: int, groups: list[Group], max_epochs: float, phase: str) -> dict[str, int]:
    """Natural proportions, water-filled: a group capped at max_epochs passes its excess to the others."""
    planned: dict[str, int] = {}
    active = {group.name: group.tokens for group in groups if group.tokens > 0}
    remaining = budget
    while active and remaining > 0:
        total = sum(active.values())
        capped = {n: t for n, t in active.items() if remaining * t / total > max_epochs * t}
        if not capped:
            planned |= {n: round(remaining * t / total) for n, t in active.items()}
            remaining = 0
            break
        for name, tokens in capped.items():
            planned[name] = int(max_epochs * tokens)
            remaining -= planned[name]
            del active[name]
    if remaining > 0:
        supply = sum(int(max_epochs * group.tokens) for group in groups)
        raise InfeasiblePlan(
            f"{phase} phase needs {budget:,} tokens but its sources supply at most {supply:,} at "
            f"max_epochs={max_epochs}: lower total_tokens or anneal_fraction, raise max_epochs, "
            f"or widen the eligible buckets"
        )
    return planned


def group_shards(index: list[dict], key) -> list[Group]:
    groups: dict[str, list[dict]] = {}
    for entry in index:
        if (name := key(entry)) is not None:
            groups.setdefault(name, []).append(entry)
    return [Group(name, sorted(shards, key=lambda s: s["path"])) for name, shards in sorted(groups.items())]


def anneal_plan(index: list[dict], budget: int, policy: Policy) -> tuple[list[Group], dict[str, int]]:
    rules = policy.anneal
    top = group_shards(index, lambda e: f"{e['source']}:{e['bucket']}" if e["bucket"] in rules.buckets else None)
    rest = group_shards(
        index, lambda e: f"{e['source']}:{e['bucket']}" if e["bucket"] in rules.rest_buckets else None
    )
    if not any(group.tokens for group in top):
        raise InfeasiblePlan(f"no tokens in the anneal buckets {rules.buckets}: check the quality stage's buckets")
    top_budget = budget if not rest else round(budget * rules.top_share)
    planned = allocate(top_budget, top, policy.max_epochs, "anneal (top buckets)")
    if rest and budget - top_budget > 0:
        planned |= allocate(budget - top_budget, rest, policy.max_epochs, "anneal (rest)")
    return top + rest, planned


def phase_manifest(
    phase: str, groups: list[Group], planned: dict[str, int], policy: Policy, context: dict
) -> dict:
    total = sum(planned.values())
    sources = []
    for group in groups:
        if not planned.get(group.name):
            continue
        sources.append({
            "name": group.name,
            "weight": planned[group.name] / total,
            "available_tokens": group.tokens,
            "planned_tokens": planned[group.name],
            "epochs": round(planned[group.name] / group.tokens, 6),
            "shards": [{k: s[k] for k in ("path", "sha256", "rows", "tokens")} for s in group.shards],
        })
    return {
        "format_version": 1, "phase": phase, "root": "..", "policy": policy.name,
        "tokenizer": context["tokenizer"], "seq_len": context["seq_len"], "seed": policy.seed,
        "token_budget": total, "max_epochs": policy.max_epochs, "lr_schedule": context["lr_schedule"],
        "sources": sources,
    }


def plan_rows(manifest: dict) -> list[dict]:
    return [
        {"phase": manifest["phase"], "source": s["name"], "available_tokens": s["available_tokens"],
         "weight": s["weight"], "planned_tokens": s["planned_tokens"], "epochs": s["epochs"]}
        for s in manifest["sources"]
    ]


def plan(build_dir: str | Path, policy: Policy) -> dict[str, Path]:
    """Write manifests/stable.json, manifests/anneal.json and manifests/plan.parquet for a build."""
    build_dir = Path(build_dir)
    index = [entry for entry in read_index(build_dir) if entry["tokens"] > 0]
    if not index:
        raise InfeasiblePlan(f"{build_dir} has no shards with tokens: build the corpus first")
    available = sum(entry["tokens"] for entry in index)
    total = policy.total_tokens or available
    anneal_tokens = max(1, round(total * policy.anneal_fraction))
    stable_tokens = total - anneal_tokens
    tokenizer = json.loads((build_dir / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    context = {
        "tokenizer": tokenizer,
        "seq_len": index[0]["seq_len"],
        "lr_schedule": {
            "total_tokens": total, "warmup_tokens": round(total * policy.warmup_fraction),
            "decay_start_tokens": stable_tokens, "decay_tokens": anneal_tokens,
            "decay_shape": policy.decay_shape,
        },
    }
    stable_groups = group_shards(index, lambda entry: entry["source"])
    stable = phase_manifest(
        "stable", stable_groups, allocate(stable_tokens, stable_groups, policy.max_epochs, "stable"),
        policy, context,
    )
    stable["next_phase"] = "anneal.json"
    anneal = phase_manifest("anneal", *anneal_plan(index, anneal_tokens, policy), policy, context)
    out = build_dir / "manifests"
    written = {
        "stable": dump_manifest(stable, out / "stable.json"),
        "anneal": dump_manifest(anneal, out / "anneal.json"),
    }
    table = pa.Table.from_pylist(plan_rows(stable) + plan_rows(anneal), schema=PLAN_SCHEMA)
    pq.write_table(table, out / "plan.parquet")
    written["plan"] = out / "plan.parquet"
    return written
