"""`factory plan --check`: a manifest against the build it names (schema, files and hashes, tokenizer, shard index,
budgets, LR schedule and, through next_phase, the repetition cap over both phases)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from datafactory.factory.manifest import check_manifest_files, load_manifest
from datafactory.factory.shards import INDEX_NAME, read_index
from datafactory.mixtures.planner import TOKENIZER_INFO, TOKENIZER_KEYS

EPOCHS_TOLERANCE = 1e-6  # manifests round epochs to 6 decimals


def tokenizer_problems(manifest: dict, root: Path) -> list[str]:
    info_path = root / TOKENIZER_INFO
    if not info_path.exists():
        return [f"{TOKENIZER_INFO}: missing under {root}, so the tokenizer cannot be compared with the build's"]
    info = json.loads(info_path.read_text(encoding="utf-8"))
    named = manifest["tokenizer"]
    return [f"tokenizer.{key}: manifest has {named[key]!r}, the build {info.get(key)!r}"
            for key in TOKENIZER_KEYS if named[key] != info.get(key)]


def index_problems(manifest: dict, root: Path) -> list[str]:
    """Every shard the manifest names is in the build's index with the same hash, rows, tokens and seq_len."""
    if not (root / "shards" / INDEX_NAME).exists():
        return [f"shards/{INDEX_NAME}: missing under {root}; is root the build directory?"]
    index = {entry["path"]: entry for entry in read_index(root)}
    problems = []
    for source in manifest["sources"]:
        for shard in source["shards"]:
            entry = index.get(shard["path"])
            if entry is None:
                problems.append(f"{shard['path']}: not in the build's shard index")
                continue
            problems += [f"{shard['path']}: {key} is {shard[key]} in the manifest, {entry[key]} in the index"
                         for key in ("sha256", "rows", "tokens") if shard[key] != entry[key]]
            if entry["seq_len"] != manifest["seq_len"]:
                problems.append(f"{shard['path']}: seq_len {entry['seq_len']}, the manifest says {manifest['seq_len']}")
    return problems


def budget_problems(manifest: dict) -> list[str]:
    """Planned tokens add up to the budget; weights, available tokens and epochs agree with them; the cap holds."""
    budget, cap = manifest["token_budget"], manifest.get("max_epochs", math.inf)
    planned = sum(source["planned_tokens"] for source in manifest["sources"])
    problems = [] if planned == budget else [f"planned tokens sum to {planned:,}, token_budget is {budget:,}"]
    for source in manifest["sources"]:
        name, tokens = source["name"], source["planned_tokens"]
        available = sum(shard["tokens"] for shard in source["shards"])
        if source["available_tokens"] != available:
            problems.append(f"{name}: available_tokens {source['available_tokens']:,}, its shards hold {available:,}")
        if not math.isclose(source["weight"], tokens / budget, abs_tol=1e-9):
            problems.append(f"{name}: weight {source['weight']} but {tokens:,} of {budget:,} tokens is "
                            f"{tokens / budget}")
        epochs = tokens / available if available else math.inf
        if abs(source["epochs"] - epochs) > EPOCHS_TOLERANCE:
            problems.append(f"{name}: epochs {source['epochs']} but {tokens:,} of {available:,} tokens is {epochs:.6f}")
        if epochs > cap + EPOCHS_TOLERANCE:
            problems.append(f"{name}: {epochs:.3f} epochs, past max_epochs {cap:g}")
    return problems


def schedule_problems(manifest: dict) -> list[str]:
    """The LR schedule's decay starts where the stable budget ends and lasts as long as the anneal budget."""
    lr, budget = manifest["lr_schedule"], manifest["token_budget"]
    problems = []
    if lr["decay_start_tokens"] + lr["decay_tokens"] != lr["total_tokens"]:
        problems.append(f"lr_schedule: decay_start_tokens + decay_tokens is not total_tokens ({lr['total_tokens']:,})")
    if lr["warmup_tokens"] > lr["decay_start_tokens"]:
        problems.append("lr_schedule: warmup ends after the decay starts")
    phase_key = "decay_start_tokens" if manifest["phase"] == "stable" else "decay_tokens"
    if lr[phase_key] != budget:
        problems.append(f"lr_schedule.{phase_key} is {lr[phase_key]:,} but the {manifest['phase']} phase's "
                        f"token_budget is {budget:,}")
    return problems


def pair_problems(stable: dict, path: Path) -> list[str]:
    """The next phase agrees on tokenizer, seq_len, seed and schedule, and no shard passes max_epochs over both."""
    next_path = path.parent / stable["next_phase"]
    anneal, _ = load_manifest(next_path)
    problems = [f"next_phase {next_path}: {key} differs from this manifest's"
                for key in ("tokenizer", "seq_len", "seed", "lr_schedule", "max_epochs")
                if anneal.get(key) != stable.get(key)]
    if anneal["phase"] != "anneal":
        problems.append(f"next_phase {next_path} is phase {anneal['phase']!r}, not 'anneal'")
    passes: dict[str, float] = {}
    for manifest in (stable, anneal):
        for source in manifest["sources"]:
            for shard in source["shards"]:
                passes[shard["path"]] = passes.get(shard["path"], 0.0) + source["epochs"]
    cap = stable.get("max_epochs", math.inf)
    problems += [f"{rel}: {count:.3f} passes over both phases, past max_epochs {cap:g}"
                 for rel, count in sorted(passes.items()) if count > cap + 2 * EPOCHS_TOLERANCE]
    return problems


def check_manifest(path: str | Path) -> list[str]:
    """Problems found checking a manifest against the build under its root (empty when it is sound).
    Raises ManifestError when it is not a manifest at all (unreadable, or not matching the schema)."""
    path = Path(path)
    manifest, root = load_manifest(path)
    problems = check_manifest_files(manifest, root) + tokenizer_problems(manifest, root)
    problems += index_problems(manifest, root) + budget_problems(manifest) + schedule_problems(manifest)
    if manifest.get("next_phase"):
        problems += pair_problems(manifest, path)
    return problems
