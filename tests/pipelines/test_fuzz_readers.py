"""Structured random input for every reader (hypothesis): whatever the bytes, a reader yields rows and never raises;
each JSONL line with content and each Parquet row is exactly one row; ids and texts are storable UTF-8. Inputs that
once crashed a reader live in tests/pipelines/crashers/ and are read on every run."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datafactory.factory.config import IngestConfig, InputSpec
from datafactory.pipelines.readers import RecordReader

CRASHERS = Path(__file__).parent / "crashers"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text())
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20)
records = st.dictionaries(st.sampled_from(["id", "text", "url", "date", "meta", "x"]), json_values, max_size=6)


def raw_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["record", "text-record", "bytes", "cut", "escapes", "deep"]))
    if kind == "record":
        return json.dumps(draw(records)).encode()
    if kind == "text-record":
        return json.dumps({"id": draw(json_values), "text": draw(st.text(min_size=1))}, ensure_ascii=False).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200)).replace(b"\n", b" ")
    if kind == "cut":
        whole = json.dumps(draw(records)).encode()
        return whole[: draw(st.integers(0, len(whole)))]
    if kind == "escapes":  # lone surrogates and NULs through JSON escapes, in ids and text
        escape = draw(st.sampled_from(["\\ud800", "\\udfff", "\\u0000", "\\ud83d\\ude00", "\\uffff"]))
        return f'{{"id": "i{escape}d", "text": "t{escape}x", "url": "u{escape}"}}'.encode()
    depth = draw(st.integers(500, 3000))
    return b'{"id": "deep", "text": "t", "meta": ' + b"[" * depth + b"]" * depth + b"}"


def check_rows(rows: list[dict]) -> None:
    for row in rows:
        row["doc_id"].encode("utf-8")
        row["text"].encode("utf-8")
        assert row["keep"] or row["reason"].startswith("invalid: ") or row["reason"]
        assert json.loads(row["meta"]) is not None if row["meta"] else True


def read(path: Path) -> list[dict]:
    return list(RecordReader(InputSpec(path=str(path), source="fuzz"), IngestConfig(max_record_bytes=1 << 20),
                             str(path), path.name).rows())


@FUZZ
@given(lines=st.lists(st.composite(raw_line)(), max_size=12))
def test_jsonl_lines_each_become_one_row(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("jsonl") / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows = read(path)
    check_rows(rows)
    first_has_bom = bool(lines) and lines[0].startswith(b"\xef\xbb\xbf")
    expected = sum(1 for number, line in enumerate(lines)
                   if (line.removeprefix(b"\xef\xbb\xbf") if number == 0 and first_has_bom else line).strip())
    assert len(rows) == expected


@FUZZ
@given(texts=st.lists(st.one_of(st.none(), st.text()), min_size=1, max_size=20),
       ids=st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text(max_size=8)), min_size=20, max_size=20)))
def test_parquet_rows_each_become_one_row(tmp_path_factory, texts, ids):
    columns = {"text": pa.array(texts, pa.string())}
    if ids is not None:
        columns["id"] = pa.array(ids[: len(texts)], pa.string())
    path = tmp_path_factory.mktemp("parquet") / "in.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=7)
    rows = read(path)
    check_rows(rows)
    assert len(rows) == len(texts)


@FUZZ
@given(blob=st.binary(max_size=2000), prefix=st.sampled_from([b"", b"WARC/1.0\r\n", b"\x1f\x8b"]))
def test_warc_bytes_never_crash_the_reader(tmp_path_factory, blob, prefix):
    path = tmp_path_factory.mktemp("warc") / "in.warc"
    path.write_bytes(prefix + blob)
    check_rows(read(path))


@pytest.mark.parametrize("crasher", sorted(CRASHERS.iterdir()), ids=lambda path: path.name)
def test_every_input_that_once_crashed_a_reader_is_read(crasher):
    rows = read(crasher)
    check_rows(rows)
    assert rows and all(row["location"] for row in rows)
