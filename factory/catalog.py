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
    if any((root / "stages" / "dedup" / "_substrings").glob("part-*.parquet")):
        # One row per span the dedup stage cut (substrings.enabled): where, how long, and which document kept it.
        views["substrings"] = f"SELECT * FROM read_parquet('{root}/stages/dedup/_substrings/part-*.parquet')"
    if (root / "stages" / "quality" / "buckets.parquet").exists():
        views["quality_buckets"] = f"SELECT * FROM read_parquet('{root}/stages/quality/buckets.parquet')"
    if (root / "manifests" / "plan.parquet").exists():
        views["plan"] = f"SELECT * FROM read_parquet('{root}/manifests/plan.parquet')"
    views |= _trace_views(root, views)
    return views


TRACE_PERIOD_STEPS = 25  # a segment's loss is judged against its source, language and bucket within such a span
MIN_SEGMENT_TOKENS = 8  # shorter segments (a document's last tokens at a row's start) say little about it


def _trace_views(root: Path, views: dict[str, str]) -> dict[str, str]:
    """What training saw (runs/<run>/trace/, written by the trainer), joined to the documents: `train_steps`, and,
    with the tokenize view and the shard index, `segment_loss` (each traced segment with its document and its
    loss's excess over the median of its source / language / bucket at that point of training, among segments that
    likewise open a document or continue one: a document's first tokens are the hardest) and `document_loss` (one row
    per run and document)."""
    found: dict[str, str] = {}
    run = "regexp_extract(filename, '/runs/([^/]+)/trace/', 1) AS run"
    if any(root.glob("runs/*/trace/steps-*.parquet")):
        found["train_steps"] = (f"SELECT {run}, * EXCLUDE (filename) "
                                f"FROM read_parquet('{root}/runs/*/trace/steps-*.parquet', filename = true)")
    if not (any(root.glob("runs/*/trace/segments-*.parquet")) and "tokenize" in views and "shards" in views):
        return found
    found["segment_loss"] = f"""WITH segments AS (
    SELECT {run}, * EXCLUDE (filename)
    FROM read_parquet('{root}/runs/*/trace/segments-*.parquet', filename = true)
    WHERE tokens >= {MIN_SEGMENT_TOKENS}),
  starts AS (
    SELECT t.doc_id, t.shard, t.first_row * (s.seq_len + 1) + t."offset" AS position, t.source, t.lang, t.bucket
    FROM read_parquet('{root}/stages/tokenize/part-*.parquet') t JOIN read_parquet('{root}/shards/index.parquet') s
      ON s.path = t.shard
    WHERE t.keep),
  placed AS (
    SELECT g.run, g.step, g.shard, g.row, g.tokens, g.loss, d.doc_id, d.source, d.lang, d.bucket,
      g.position = d.position AS opens_document
    FROM segments g ASOF JOIN starts d ON g.shard = d.shard AND g.position >= d.position)
SELECT *, loss - median(loss) OVER (PARTITION BY run, source, lang, bucket, opens_document,
                                    step // {TRACE_PERIOD_STEPS}) AS excess
FROM placed"""
    found["document_loss"] = """SELECT run, doc_id, any_value(source) AS source, any_value(lang) AS lang,
  any_value(bucket) AS bucket, sum(tokens) AS tokens, sum(loss * tokens) / sum(tokens) AS mean_loss,
  sum(excess * tokens) / sum(tokens) AS excess,
  CASE WHEN sum(excess * tokens) >= 0 THEN 'high' ELSE 'low' END AS direction,
  list_sort(list(DISTINCT step)) AS steps
FROM segment_loss GROUP BY run, doc_id"""
    return found


def build_catalog(build_dir: str | Path) -> Path:
    """(Re)write catalog.duckdb atomically; views use absolute paths, so rebuild it after moving a build."""
    build_dir = Path(build_dir)
    target = build_dir / CATALOG_NAME
    with atomic_path(target) as tmp, duckdb.connect(str(tmp)) as con:
        for name, select in _views(build_dir).items():
            con.execute(f'CREATE VIEW "{name}" AS {select}')
    return target


def confine(con: duckdb.DuckDBPyConnection, build_dir: Path) -> None:
    """The connection may open files under the build directory only (the views read nothing else): no read_csv of
    /etc/passwd, no COPY TO elsewhere, no extension installs or network; the configuration is locked so SQL cannot
    undo it. COPY TO a path inside the build directory stays possible."""
    con.execute("SET allowed_directories = $directories", {"directories": [f"{build_dir.resolve()}/"]})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def query(build_dir: str | Path, sql: str, params: dict | None = None, unrestricted: bool = False
          ) -> tuple[list[str], list[tuple]]:
    """Run SQL (with `$name` parameters) against a build's catalog read-only and confined to the build directory
    (``unrestricted``: with every file and extension DuckDB can reach); returns column names and rows."""
    path = Path(build_dir) / CATALOG_NAME
    if not path.exists():
        raise FileNotFoundError(f"no catalog at {path}: run `factory build` first")
    settings = {} if unrestricted else {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    with duckdb.connect(str(path), read_only=True, config=settings) as con:
        if not unrestricted:
            confine(con, Path(build_dir))
        result = con.execute(sql, params) if params else con.execute(sql)
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


SUSPECT_COLUMNS = ["doc_id", "excess", "mean_loss", "tokens", "source", "lang", "bucket", "quality", "cluster_size",
                   "seen_at_steps"]


def sql_suspects(direction: str) -> str:
    """The documents whose training loss stood out most in one direction, with what the factory knows of them."""
    order = "DESC" if direction == "high" else "ASC"
    return f"""SELECT d.doc_id, round(d.excess, 3) AS excess, round(d.mean_loss, 3) AS mean_loss, d.tokens, d.source,
  d.lang, d.bucket, round(q.quality_score::DOUBLE, 3) AS quality, c.cluster_size, d.steps AS seen_at_steps
FROM document_loss d LEFT JOIN quality q USING (doc_id) LEFT JOIN dedup c USING (doc_id)
WHERE d.run = $run AND d.direction = '{direction}'
ORDER BY d.excess {order}, d.doc_id LIMIT $top"""


def training_suspects(build_dir: str | Path, run: str, top: int) -> dict[str, list[tuple]]:
    """Per direction (high: noise, wrong language, garbage; low: memorised boilerplate, escaped duplicates), the
    `top` documents of a run by their loss's excess over their source / language / bucket."""
    _, found = query(build_dir, "SELECT view_name FROM duckdb_views() WHERE view_name = 'document_loss'")
    if not found:
        raise FileNotFoundError(f"no traced run in {build_dir}/runs/*/trace with shards to map it to documents")
    _, runs = query(build_dir, "SELECT DISTINCT run FROM document_loss ORDER BY 1")
    if (run,) not in runs:
        raise FileNotFoundError(f"no trace of run {run!r} in {build_dir}; traced runs: "
                                f"{', '.join(name for name, in runs)}")
    return {direction: query(build_dir, sql_suspects(direction), {"run": run, "top": top})[1]
            for direction in ("high", "low")}


SQL_SPIKES = """SELECT step, round(loss, 4) AS loss, round(grad_norm, 4) AS grad_norm
FROM train_steps WHERE run = $run AND spike ORDER BY step"""
