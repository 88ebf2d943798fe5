"""The dedup stage's repeated-span step: planted spans found whole, first copies and short spans kept, duplicates not
counted as copies, short leftovers dropped, every removal in the `substrings` view, the same with two workers."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.builds import run_dedup, write_stage_output
from support.planted_spans import MIN_TOKENS, Planted, planted_rows, score

from datafactory.factory.catalog import build_catalog, query
from datafactory.factory.markers import read_marker


@pytest.fixture(scope="module")
def planted_build(tmp_path_factory) -> tuple[Path, list[dict], list[Planted], dict[str, dict]]:
    rows, planted = planted_rows()
    build = tmp_path_factory.mktemp("substrings")
    write_stage_output("heuristics", build, rows)
    result = run_dedup(build, substrings={"enabled": True, "min_tokens": MIN_TOKENS})
    return build, rows, planted, result


def removed_spans(build: Path) -> list[dict]:
    return sorted(pq.read_table(build / "stages" / "dedup" / "_substrings").to_pylist(),
                  key=lambda span: (span["doc_id"], span["start"]))


def test_planted_spans_are_removed_whole_from_every_copy_but_the_first(planted_build):
    build, rows, planted, _ = planted_build
    found = score(rows, planted, removed_spans(build), MIN_TOKENS)
    assert found.recall == 1.0
    assert (found.short_removed, found.firsts_removed, found.unverified) == (0, 0, 0)


def test_spans_match_the_planted_offsets_and_name_the_kept_copy(planted_build):
    build, rows, planted, _ = planted_build
    firsts = {copy.span: copy for copy in planted if copy.first}
    expected = sorted((copy.doc_id, copy.start, copy.end, firsts[copy.span].doc_id, firsts[copy.span].start)
                      for copy in planted if not copy.first and copy.tokens >= MIN_TOKENS)
    found = [(span["doc_id"], span["start"], span["end"], span["kept_in"], span["kept_start"])
             for span in removed_spans(build)]
    assert found == expected


def test_the_text_loses_exactly_its_spans_and_short_leftovers_are_dropped(planted_build):
    build, rows, _, result = planted_build
    texts = {row["doc_id"]: row["text"] for row in rows}
    spans_of: dict[str, list[dict]] = {}
    for span in removed_spans(build):
        spans_of.setdefault(span["doc_id"], []).append(span)
    for doc_id, spans in spans_of.items():
        row = result[doc_id]
        if doc_id == "doc-short":
            assert (row["keep"], row["reason"]) == (False, "short_after_substring_dedup")
            continue
        pieces, cursor = [], 0
        for span in spans:
            pieces.append(texts[doc_id][cursor : span["start"]])
            cursor = span["end"]
        assert row["keep"] and row["text"] == "".join(pieces) + texts[doc_id][cursor:]
        assert row["substrings_removed"] == len(spans)
    assert result["doc-copy"]["reason"] == "exact_duplicate"
    ledger = pq.read_table(build / "ledger").to_pylist()
    assert {(row["doc_id"], row["reason"]) for row in ledger} == {("doc-short", "short_after_substring_dedup"),
                                                                   ("doc-copy", "exact_duplicate")}


def test_the_catalog_and_marker_account_for_every_span(planted_build):
    build, _, _, _ = planted_build
    spans = removed_spans(build)
    build_catalog(build)
    _, rows = query(build, "SELECT count(*), sum(bytes) FROM substrings")
    assert rows == [(len(spans), sum(span["bytes"] for span in spans))]
    counts = read_marker(build / "stages" / "dedup")["counts"]["substrings"]
    assert counts == {"spans": len(spans), "documents": len({span["doc_id"] for span in spans}),
                      "bytes_removed": sum(span["bytes"] for span in spans)}


@pytest.mark.slow
def test_two_workers_remove_the_same_spans(planted_build, tmp_path):
    build, rows, _, result = planted_build
    write_stage_output("heuristics", tmp_path, rows)
    again = run_dedup(tmp_path, workers=2, substrings={"enabled": True, "min_tokens": MIN_TOKENS})
    assert again == result
    assert removed_spans(tmp_path) == removed_spans(build)


def test_off_by_default_the_text_is_not_stored_again(tmp_path):
    rows, _ = planted_rows()
    write_stage_output("heuristics", tmp_path, rows)
    run_dedup(tmp_path)
    assert "text" not in pq.read_schema(next((tmp_path / "stages" / "dedup").glob("part-*.parquet"))).names
    assert not (tmp_path / "stages" / "dedup" / "_substrings").exists()
