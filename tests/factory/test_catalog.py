"""The catalog's query connection reads the build's own files and nothing else unless asked."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datafactory.factory.catalog import build_catalog, query


@pytest.fixture
def build(tmp_path):
    root = tmp_path / "build"
    (root / "ledger").mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": ["a", "b"], "status": ["kept", "dropped"]}), root / "ledger" / "p.parquet")
    build_catalog(root)
    (tmp_path / "outside.csv").write_text("secret\n1\n")
    return root


def test_the_views_read_as_usual(build):
    assert query(build, "SELECT status, count(*) FROM ledger GROUP BY ALL ORDER BY 1")[1] == [("dropped", 1),
                                                                                              ("kept", 1)]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('{outside}/outside.csv')",
    "COPY (SELECT 1) TO '{outside}/written.csv'",
    "ATTACH '{outside}/other.duckdb'",
    "INSTALL httpfs",
    "SET enable_external_access = true",
])
def test_sql_cannot_reach_past_the_build_directory(build, sql):
    with pytest.raises(duckdb.Error):
        query(build, sql.format(outside=build.parent))
    assert not (build.parent / "written.csv").exists()


def test_unrestricted_is_the_explicit_way_out(build):
    sql = f"SELECT * FROM read_csv('{build.parent}/outside.csv')"
    assert query(build, sql, unrestricted=True)[1] == [(1,)]
