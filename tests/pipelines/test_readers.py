"""Readers turn every input record into a document row or a located invalid row, never an exception."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from datafactory.factory.config import IngestConfig, InputSpec
from datafactory.pipelines.inputs import detect_format
from datafactory.pipelines.readers import RecordReader


def read(path, **spec):
    spec = InputSpec(path=str(path), source="s", **spec)
    return list(RecordReader(spec, IngestConfig(max_doc_chars=50), str(path), path.name).rows())


def test_detect_format():
    assert detect_format("a/b.jsonl.gz") == ("jsonl", "gzip")
    assert detect_format("b.jsonl.zst") == ("jsonl", "zstd")
    assert detect_format("b.parquet") == ("parquet", None)
    assert detect_format("b.csv") == (None, None)


def test_jsonl_bad_records_are_located(tmp_path):
    lines = [
        b'\xef\xbb\xbf{"id": "a", "text": "hello"}\r',
        b'{"id": "b", "text": ',
        b'{"id": "c", "text": "bad \xff utf8"}',
        b'{"id": "d"}',
        b'{"id": "e", "text": 5}',
        b'{"id": "f", "text": "   "}',
        b'[1, 2]',
        b'{"id": "g", "text": "lone \\ud800 surrogate"}',
        b'{"text": "no id here"}',
        b'{"id": "h", "text": "' + b"x" * 80 + b'"}',
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows = read(path)
    assert len(rows) == len(lines)
    by_location = {row["location"]: row for row in rows}
    assert by_location["line 1"]["keep"] and by_location["line 1"]["text"] == "hello"
    assert "malformed JSON" in by_location["line 2"]["reason"]
    assert "invalid UTF-8" in by_location["line 3"]["reason"]
    assert "field 'text' is missing" in by_location["line 4"]["reason"]
    assert "is int" in by_location["line 5"]["reason"]
    assert by_location["line 6"]["reason"] == "invalid: empty text"
    assert "not an object" in by_location["line 7"]["reason"]
    assert by_location["line 8"]["keep"] and "\ufffd" in by_location["line 8"]["text"]
    assert by_location["line 9"]["doc_id"].startswith("s-")
    assert len(by_location["line 10"]["text"]) == 50
    assert json.loads(by_location["line 10"]["meta"])["truncated_from_chars"] == 80


def test_truncated_gzip_keeps_what_was_readable(tmp_path):
    body = b"".join(json.dumps({"id": str(i), "text": f"doc {i} " * 20}).encode() + b"\n" for i in range(200))
    blob = gzip.compress(body, mtime=0)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    rows = read(path)
    assert rows[-1]["keep"] is False and "unreadable after line" in rows[-1]["reason"]
    assert all(row["keep"] for row in rows[:-1]) and len(rows) > 1


def test_zstd_multiframe_and_parquet(tmp_path):
    frames = [zstandard.ZstdCompressor().compress(json.dumps({"id": i, "text": "t"}).encode() + b"\n")
              for i in range(3)]
    (tmp_path / "a.jsonl.zst").write_bytes(b"".join(frames))
    assert [row["doc_id"] for row in read(tmp_path / "a.jsonl.zst")] == ["0", "1", "2"]
    pq.write_table(pa.table({"id": ["x"], "content": ["body"]}), tmp_path / "b.parquet")
    assert read(tmp_path / "b.parquet", text_field="content")[0]["text"] == "body"
    missing = read(tmp_path / "b.parquet")
    assert len(missing) == 1 and "no column 'text'" in missing[0]["reason"]


def test_unknown_extension_is_one_invalid_row(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    rows = read(tmp_path / "x.csv")
    assert len(rows) == 1 and "unknown file extension" in rows[0]["reason"]


def test_zstd_skippable_frames_are_read_past_and_a_cut_frame_raises():
    import io
    import struct

    from datafactory.pipelines.read_jsonl import ZstdFrames

    first, second = (zstandard.ZstdCompressor().compress(text) for text in (b"hello\n", b"world\n"))
    skippable = struct.pack("<II", 0x184D2A50, 3) + b"abc"
    assert io.BufferedReader(ZstdFrames(io.BytesIO(first + skippable + second))).read() == b"hello\nworld\n"
    with pytest.raises(zstandard.ZstdError, match="ends inside"):
        io.BufferedReader(ZstdFrames(io.BytesIO(first + second[:-3]))).read()
