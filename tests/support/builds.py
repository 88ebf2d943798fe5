"""Small real builds for tests: a demo corpus through every registered stage in-process (no Prefect), planned
with a fixed policy, and the digest builds are compared by."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from datafactory.factory.catalog import build_catalog
from datafactory.factory.config import load_config, parse_config
from datafactory.factory.markers import write_marker
from datafactory.factory.records import stage_schema
from datafactory.pipelines.common import StagePaths, part_name, partition_of
from datafactory.pipelines.registry import run_stage_named

TINY_TOKENIZE = {"seq_len": 64, "rows_per_shard": 64, "tokenizer": {"vocab_size": 4000}}
IN_MEMORY = {"direct_running_mode": "in_memory"}
# What a build must reproduce byte for byte; the catalog (absolute paths), logs and lock are not build outputs.
COMPARED = ("stages", "ledger", "models", "tokenizer", "shards", "manifests")
POLICIES = Path(__file__).resolve().parents[2] / "mixtures" / "policies"


def write_config(corpus_dir: Path, name: str, runner: dict, **sections: dict) -> Path:
    """The demo corpus's config with other runner options (and any stage sections replaced), as NAME beside it."""
    config = yaml.safe_load((corpus_dir / "demo.yaml").read_text())
    config |= {"runner": runner, "tokenize": TINY_TOKENIZE, **sections}
    path = corpus_dir / name
    path.write_text(yaml.safe_dump(config))
    return path


def run_all_stages(config_path: Path, out: Path) -> list:
    """Every registered stage in order, then the catalog and both manifests: a build without Prefect."""
    from datafactory.pipelines.registry import STAGES

    config = load_config(config_path)
    results = [stage.execute(config, out) for stage in STAGES]
    plan_manifests(out)
    return results


def plan_manifests(out: Path) -> None:
    """The catalog, then stable.json and anneal.json from a fixed policy."""
    from datafactory.mixtures.planner import Policy, plan

    build_catalog(out)
    plan(out, Policy(total_tokens=30 * 4 * 64, anneal_fraction=0.2, warmup_fraction=0.05))


def build_digest(out: Path) -> dict[str, str]:
    """sha256 of every output file of a build, by path relative to it."""
    files = sorted(path for top in COMPARED for path in (out / top).rglob("*") if path.is_file())
    return {str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def copy_build(build: Path, out: Path) -> Path:
    """A private copy of a shared build for a test that writes into it; its catalog re-pointed at the copy."""
    shutil.copytree(build, out)
    build_catalog(out)
    return out


def write_stage_output(stage: str, build: Path, rows: list[dict], parts: int = 3, fields: tuple[pa.Field, ...] = ()
                       ) -> None:
    """Rows (document columns and `fields`, every one kept) as `stage`'s finished output, so the next stage can run
    alone: partitioned and sorted as every stage writes its parts, with a marker."""
    stage_dir = StagePaths(build, stage).stage_dir
    stage_dir.mkdir(parents=True)
    schema = stage_schema(None, list(fields))
    outputs = []
    for index in range(parts):
        path = stage_dir / part_name("", index, parts)
        members = sorted((row for row in rows if partition_of(row["doc_id"], parts) == index),
                         key=lambda row: row["doc_id"])
        pq.write_table(pa.Table.from_pylist(members, schema=schema), path)
        outputs.append(path)
    write_marker(build, stage_dir, stage, "test", "test", {"documents": len(rows), "kept": len(rows)}, outputs)


def run_dedup(build: Path, workers: int = 1, substrings: dict | None = None, **settings) -> dict[str, dict]:
    """Runs the dedup stage (`settings` its section, `substrings` that one) on build's upstream; returns the stage's
    rows by doc_id."""
    mode = ({"direct_running_mode": "in_memory"} if workers == 1
            else {"direct_running_mode": "multi_processing", "direct_num_workers": workers})
    config = parse_config({"inputs": [{"path": "unused", "source": "demo"}], "runner": mode, "dedup": settings,
                           "substrings": substrings or {}})
    run_stage_named("dedup", config, build)
    return {row["doc_id"]: row for row in pq.read_table(build / "stages" / "dedup").to_pylist()}
