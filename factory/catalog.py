"""The build's DuckDB catalog: views over the stage, ledger, shard-index and plan Parquet files."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from datafactory.factory.atomic import atomic_path
from datafactory.factory.markers import read_marker

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


SQL_CONTAMINATION = """SELECT eval_set, count(DISTINCT item_id) AS items_found, count(*) AS documents,
  string_agg(DISTINCT source, ', ' ORDER BY source) AS sources,
  string_agg(DISTINCT lang, ', ' ORDER BY lang) AS languages
FROM decontaminate WHERE contaminated GROUP BY eval_set"""
CONTAMINATION_COLUMNS = ["eval_set", "items", "items_found", "documents", "sources", "languages"]


def eval_set_items(build_dir: str | Path) -> dict[str, int]:
    """Items per eval set the decontaminate stage looked for (its marker); {} when it looked for none."""
    marker = read_marker(Path(build_dir) / "stages" / "decontaminate")
    if marker is None:
        raise FileNotFoundError(f"no finished decontaminate stage in {build_dir}: run `factory build` first")
    return marker["counts"].get("index", {}).get("items", {})


def contamination_table(items: dict[str, int], found: list[tuple]) -> list[tuple]:
    """CONTAMINATION_COLUMNS rows from the items per eval set and SQL_CONTAMINATION's rows; sets found nowhere too."""
    by_set = {row[0]: row[1:] for row in found}
    return [(name, count, *by_set.get(name, (0, 0, "", ""))) for name, count in sorted(items.items())]


def contamination_report(build_dir: str | Path) -> tuple[list[str], list[tuple]]:
    """The contamination table a lab publishes: per eval set, its items, how many the corpus holds, in how many
    documents, from which sources and languages."""
    items = eval_set_items(build_dir)
    _, found = query(build_dir, SQL_CONTAMINATION)
    return CONTAMINATION_COLUMNS, contamination_table(items, found)
