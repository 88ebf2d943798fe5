"""The build's DuckDB catalog: views over the stage, ledger, shard-index and plan Parquet files."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from datafactory.factory.atomic import atomic_path

CATALOG_NAME = "catalog.duckdb"
TEXT_COLUMNS = ("text", "cleaned_text")  # left out of the stage views: `SELECT *` stays a query about documents


def stage_view(parts_glob: str, first_part: Path) -> str:
    """A stage's view: every column of its parts but the text."""
    text = [name for name in pq.read_schema(first_part).names if name in TEXT_COLUMNS]
    exclude = f" EXCLUDE ({', '.join(text)})" if text else ""
    return f"SELECT *{exclude} FROM read_parquet('{parts_glob}')"


def _views(build_dir: Path) -> dict[str, str]:
    """View name -> SELECT, for every file set the build has produced so far."""
    root = build_dir.resolve()
    views: dict[str, str] = {}
    if any((root / "ledger").glob("*.parquet")):
        views["ledger"] = f"SELECT * FROM read_parquet('{root}/ledger/*.parquet')"
    if (root / "shards" / "index.parquet").exists():
        views["shards"] = f"SELECT * FROM read_parquet('{root}/shards/index.parquet')"
    # One view per stage that has written parts, named after it: the stage registry's stages, found on disk.
    for stage_dir in sorted(path for path in (root / "stages").glob("*") if path.is_dir()):
        parts = sorted(stage_dir.glob("part-*.parquet"))
        if parts:
            views[stage_dir.name] = stage_view(f"{stage_dir}/part-*.parquet", parts[0])
    if "dedup" in views:
        # Cluster-size histogram: documents without duplicates are clusters of one.
        views["dedup_clusters"] = (
            "SELECT cluster_size, count(*) AS clusters, sum(cluster_size) AS documents FROM ("
            "SELECT coalesce(minhash_cluster, doc_id) AS cluster, any_value(cluster_size) AS cluster_size "
            f"FROM read_parquet('{root}/stages/dedup/part-*.parquet') GROUP BY ALL) GROUP BY ALL ORDER BY ALL"
        )
    if (root / "stages" / "quality" / "buckets.parquet").exists():
        views["quality_buckets"] = f"SELECT * FROM read_parquet('{root}/stages/quality/buckets.parquet')"
    if (root / "manifests" / "plan.parquet").exists():
        views["plan"] = f"SELECT * FROM read_parquet('{root}/manifests/plan.parquet')"
    return views


def build_catalog(build_dir: str | Path) -> Path:
    """(Re)write catalog.duckdb atomically; views use absolute paths, so rebuild it after moving a build."""
    build_dir = Path(build_dir)
    target = build_dir / CATALOG_NAME
    with atomic_path(target) as tmp, duckdb.connect(str(tmp)) as con:
        for name, select in _views(build_dir).items():
            con.execute(f'CREATE VIEW "{name}" AS {select}')
    return target


def query(build_dir: str | Path, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL against a build's catalog read-only; returns column names and rows."""
    path = Path(build_dir) / CATALOG_NAME
    if not path.exists():
        raise FileNotFoundError(f"no catalog at {path}: run `factory build` first")
    with duckdb.connect(str(path), read_only=True) as con:
        result = con.execute(sql)
        return [column[0] for column in result.description], result.fetchall()
