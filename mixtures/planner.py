"""Mixture planner: a build's shard index and quality scores plus a policy -> stable and anneal WSD manifests,
and a plan table (catalog view `plan`) that explains them."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datafactory.factory.atomic import atomic_path
from datafactory.factory.catalog import build_catalog, query
from datafactory.factory.manifest import dump_manifest
from datafactory.factory.shards import INDEX_NAME, read_index
from datafactory.mixtures.methods import InfeasiblePlan, Supply, allocate, exact
from datafactory.mixtures.policy import PhaseRules, Policy

TOKENIZER_INFO = Path("tokenizer") / "tokenizer.json"
TOKENIZER_KEYS = ("path", "sha256", "vocab_size", "bos_id", "eos_id", "pad_id")
SHARD_KEYS = ("path", "sha256", "rows", "tokens")
PLAN_FILE = "plan.parquet"
PLAN_SCHEMA = pa.schema(
    [
        ("phase", pa.string()),
        ("source", pa.string()),
        ("available_tokens", pa.int64()),
        ("weight", pa.float64()),
        ("planned_tokens", pa.int64()),
        ("epochs", pa.float64()),
        ("mean_quality", pa.float64()),  # token-weighted quality_score; null without a quality stage
    ]
)
SHARD_QUALITY_SQL = """
SELECT t.shard, sum(CAST(q.quality_score AS DOUBLE) * t.n_tokens) / sum(t.n_tokens)
FROM tokenize t JOIN quality q USING (doc_id)
WHERE t.shard IS NOT NULL AND q.quality_score IS NOT NULL AND t.n_tokens > 0
GROUP BY t.shard ORDER BY t.shard
"""


@dataclass(frozen=True)
class Group:
    """Shards sampled together under one name in a phase; pool is 'stable', or 'top'/'rest' in the anneal."""

    name: str
    pool: str
    shards: tuple[dict, ...]

    @property
    def tokens(self) -> int:
        return sum(shard["tokens"] for shard in self.shards)


def group_key(entry: dict, group_by: str) -> str:
    if group_by == "source":
        return entry["source"]
    if group_by == "lang":
        return entry["lang"]
    return f"{entry['source']}/{entry['lang']}"


def make_groups(entries: list[dict], key: Callable[[dict], str], pool: str) -> list[Group]:
    grouped: dict[str, list[dict]] = {}
    for entry in entries:
        grouped.setdefault(key(entry), []).append(entry)
    return [Group(name, pool, tuple(sorted(shards, key=lambda shard: shard["path"])))
            for name, shards in sorted(grouped.items())]


def make_anneal_groups(index: list[dict], policy: Policy) -> list[Group]:
    """Top pool: whole sources listed in anneal.sources, plus `group:bucket` for anneal.buckets; rest pool:
    `group:bucket` for anneal.rest_buckets. A shard belongs to one pool at most."""
    rules = policy.anneal
    missing = sorted(set(rules.sources) - {entry["source"] for entry in index})
    if missing:
        present = ", ".join(sorted({entry["source"] for entry in index}))
        raise InfeasiblePlan(f"anneal.sources names {missing}, which this build does not have (its sources: "
                             f"{present}): fix the names or remove them")
    by_source = [entry for entry in index if entry["source"] in rules.sources]
    by_bucket = [entry for entry in index if entry["source"] not in rules.sources and entry["bucket"] in rules.buckets]
    rest = [entry for entry in index if entry["source"] not in rules.sources and entry["bucket"] in rules.rest_buckets]

    def bucketed(entry: dict) -> str:
        return f"{group_key(entry, policy.group_by)}:{entry['bucket']}"

    return (make_groups(by_source, lambda entry: entry["source"], "top") + make_groups(by_bucket, bucketed, "top")
            + make_groups(rest, bucketed, "rest"))


def check_targets(rules: PhaseRules, groups: list[Group], phase: str, group_by: str) -> None:
    names = {group.name for group in groups}
    if unknown := sorted(set(rules.targets) - names):
        raise InfeasiblePlan(f"{phase}.targets names {unknown}, which are not {phase} groups of this build "
                             f"(group_by: {group_by}; groups: {', '.join(sorted(names))}): fix the names")


def supplies(groups: list[Group], max_epochs: float, repeats: dict[str, Fraction]) -> list[Supply]:
    """Each group may take max_epochs passes, less the most any of its shards is already repeated elsewhere:
    the loader walks a group's shards evenly, so its busiest shard bounds it."""
    out = []
    for group in groups:
        used = max((repeats.get(shard["path"], Fraction(0)) for shard in group.shards), default=Fraction(0))
        out.append(Supply(group.name, group.tokens, max(0, math.floor((exact(max_epochs) - used) * group.tokens))))
    return out


def plan_anneal(index: list[dict], budget: int, policy: Policy) -> tuple[list[Group], dict[str, int]]:
    """The decay phase: top_share of its tokens from the top pool, the rest from the rest pool (if any)."""
    rules = policy.anneal
    groups = make_anneal_groups(index, policy)
    check_targets(rules, groups, "anneal", policy.group_by)
    top = [group for group in groups if group.pool == "top"]
    rest = [group for group in groups if group.pool == "rest"]
    if not top:
        raise InfeasiblePlan(f"the anneal's top pool is empty: no shards in anneal.buckets {rules.buckets} or "
                             f"anneal.sources {rules.sources}: widen them, or check the quality stage's buckets")
    top_budget = round(exact(rules.top_share) * budget) if rest else budget
    pools = [
        (top, top_budget, f"anneal phase (top pool, {top_budget / budget:.0%} of its tokens)",
         "lower anneal_fraction or anneal.top_share, raise max_epochs, or widen anneal.buckets / anneal.sources"),
        (rest, budget - top_budget, f"anneal phase (rest pool, {1 - top_budget / budget:.0%} of its tokens)",
         "lower anneal_fraction, raise anneal.top_share or max_epochs, or widen anneal.rest_buckets"),
    ]
    planned: dict[str, int] = {}
    for pool, pool_budget, where, advice in pools:
        if not pool:
            continue
        fixed = {g.name: exact(rules.targets[g.name]) * budget for g in pool if g.name in rules.targets}
        planned |= allocate(pool_budget, supplies(pool, policy.max_epochs, {}), rules.method, rules.temperature,
                            fixed, where, advice)
    return groups, planned


def plan_stable(index: list[dict], budget: int, policy: Policy,
                repeats: dict[str, Fraction]) -> tuple[list[Group], dict[str, int]]:
    """The stable phase over every shard, under the repetition cap left after the anneal's repeats."""
    rules = policy.stable
    groups = make_groups(index, lambda entry: group_key(entry, policy.group_by), "stable")
    check_targets(rules, groups, "stable", policy.group_by)
    fixed = {name: exact(share) * budget for name, share in rules.targets.items()}
    advice = (f"lower total_tokens or anneal.top_share, or raise max_epochs (now {policy.max_epochs:g}, "
              "counting the anneal's passes over the same shards)")
    planned = allocate(budget, supplies(groups, policy.max_epochs, repeats), rules.method, rules.temperature,
                       fixed, "stable phase", advice)
    return groups, planned


def shard_quality(build_dir: Path) -> dict[str, float]:
    """Token-weighted mean quality_score of each shard's documents, from the catalog; empty without the views."""
    _, rows = query(build_dir, "SELECT count(*) FROM duckdb_views() WHERE view_name IN ('quality', 'tokenize')")
    if rows[0][0] < 2:
        return {}
    return dict(query(build_dir, SHARD_QUALITY_SQL)[1])


def group_quality(group: Group, quality: dict[str, float]) -> float | None:
    scored = [(quality[shard["path"]], shard["tokens"]) for shard in group.shards if shard["path"] in quality]
    if not scored:
        return None
    # Rounded so the plan table does not depend on the order DuckDB summed the scores in.
    return round(math.fsum(q * t for q, t in scored) / sum(t for _, t in scored), 6)


def phase_manifest(phase: str, groups: list[Group], planned: dict[str, int], policy: Policy, context: dict) -> dict:
    budget = sum(planned.values())
    sources = [
        {
            "name": group.name,
            "weight": planned[group.name] / budget,
            "available_tokens": group.tokens,
            "planned_tokens": planned[group.name],
            "epochs": round(planned[group.name] / group.tokens, 6),
            "shards": [{key: shard[key] for key in SHARD_KEYS} for shard in group.shards],
        }
        for group in groups
        if planned[group.name] > 0
    ]
    return {
        "format_version": 1, "phase": phase, "root": "..", "policy": policy.name,
        "tokenizer": context["tokenizer"], "seq_len": context["seq_len"], "seed": policy.seed,
        "token_budget": budget, "max_epochs": policy.max_epochs, "lr_schedule": context["lr_schedule"],
        "sources": sources,
    }


def plan_rows(phase: str, groups: list[Group], planned: dict[str, int], quality: dict[str, float]) -> list[dict]:
    """One row per group, unused ones included, so the table shows what the plan left out too."""
    budget = sum(planned.values())
    return [
        {"phase": phase, "source": group.name, "available_tokens": group.tokens,
         "weight": planned[group.name] / budget, "planned_tokens": planned[group.name],
         "epochs": round(planned[group.name] / group.tokens, 6), "mean_quality": group_quality(group, quality)}
        for group in groups
    ]


def load_index(build_dir: Path) -> list[dict]:
    if not (build_dir / "shards" / INDEX_NAME).exists():
        raise InfeasiblePlan(f"no shard index at {build_dir / 'shards' / INDEX_NAME}: run `factory build` first")
    index = [entry for entry in read_index(build_dir) if entry["tokens"] > 0]
    if not index:
        raise InfeasiblePlan(f"{build_dir} has no shards with tokens: build the corpus first")
    if len(seq_lens := {entry["seq_len"] for entry in index}) > 1:
        raise InfeasiblePlan(f"{build_dir} mixes shards of seq_len {sorted(seq_lens)}: rebuild with one seq_len")
    return index


def build_tokenizer(build_dir: Path) -> dict:
    """The build's tokenizer as a manifest names it (path relative to the build, sha256, vocabulary, ids)."""
    info = json.loads((build_dir / TOKENIZER_INFO).read_text(encoding="utf-8"))
    return {key: info[key] for key in TOKENIZER_KEYS}


@dataclass(frozen=True)
class PlannedPhases:
    """Both manifests of one plan and the groups and token counts behind them (what the plan table explains)."""

    stable: dict
    anneal: dict
    stable_groups: list[Group]
    stable_planned: dict[str, int]
    anneal_groups: list[Group]
    anneal_planned: dict[str, int]


def plan_phases(index: list[dict], policy: Policy, tokenizer: dict) -> PlannedPhases:
    """The stable and anneal manifests the policy plans on these shards (the stable one names anneal.json next).
    The anneal is planned first: its top-bucket data is the scarce part, and its repeats of a shard count against
    that shard's repetition cap in the stable phase."""
    total = policy.total_tokens or sum(entry["tokens"] for entry in index)
    anneal_budget = round(exact(policy.anneal_fraction) * total)
    stable_budget = total - anneal_budget
    if min(anneal_budget, stable_budget) < 1:
        raise InfeasiblePlan(f"total_tokens {total:,} leaves {stable_budget:,} stable and {anneal_budget:,} anneal "
                             "tokens: raise total_tokens so both phases get some")
    anneal_groups, anneal_planned = plan_anneal(index, anneal_budget, policy)
    repeats = {shard["path"]: Fraction(anneal_planned[group.name], group.tokens)
               for group in anneal_groups for shard in group.shards}
    stable_groups, stable_planned = plan_stable(index, stable_budget, policy, repeats)
    context = {
        "tokenizer": tokenizer,
        "seq_len": index[0]["seq_len"],
        "lr_schedule": {
            "total_tokens": total, "warmup_tokens": round(exact(policy.warmup_fraction) * total),
            "decay_start_tokens": stable_budget, "decay_tokens": anneal_budget, "decay_shape": policy.decay_shape,
        },
    }
    stable = phase_manifest("stable", stable_groups, stable_planned, policy, context) | {"next_phase": "anneal.json"}
    anneal = phase_manifest("anneal", anneal_groups, anneal_planned, policy, context)
    return PlannedPhases(stable, anneal, stable_groups, stable_planned, anneal_groups, anneal_planned)


def plan(build_dir: str | Path, policy: Policy) -> dict[str, Path]:
    """Write manifests/stable.json, manifests/anneal.json and manifests/plan.parquet (catalog view `plan`)."""
    build_dir = Path(build_dir)
    planned = plan_phases(load_index(build_dir), policy, build_tokenizer(build_dir))
    out = build_dir / "manifests"
    written = {phase: dump_manifest(manifest, out / f"{phase}.json")
               for phase, manifest in (("stable", planned.stable), ("anneal", planned.anneal))}
    build_catalog(build_dir)  # refreshed first, so the quality query sees this build's views
    quality = shard_quality(build_dir)
    rows = (plan_rows("stable", planned.stable_groups, planned.stable_planned, quality)
            + plan_rows("anneal", planned.anneal_groups, planned.anneal_planned, quality))
    with atomic_path(out / PLAN_FILE) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=PLAN_SCHEMA), tmp)
    written["plan"] = out / PLAN_FILE
    build_catalog(build_dir)  # now with the `plan` view
    return written


def read_plan(build_dir: str | Path) -> list[dict]:
    """The plan table the last `plan` wrote: one row per phase and group."""
    return pq.read_table(Path(build_dir) / "manifests" / PLAN_FILE).to_pylist()


def mean_quality(rows: list[dict]) -> float | None:
    """Planned-token-weighted mean quality of plan rows (one phase's), None where no group has scores."""
    scored = [(row["mean_quality"], row["planned_tokens"]) for row in rows if row["mean_quality"] is not None]
    tokens = sum(t for _, t in scored)
    return math.fsum(q * t for q, t in scored) / tokens if tokens else None
