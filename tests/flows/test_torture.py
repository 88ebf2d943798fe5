"""A torture set through `factory build`: the build finishes, every record ends in exactly one ledger row, each
unreadable one as a located `invalid` row, a 50 MB document is truncated, and the CLI summary shows the counts."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard
from typer.testing import CliRunner

from datafactory.app.demo import write_demo_corpus

BIG_CHARS = 50_000_000


def line(record: object) -> bytes:
    return json.dumps(record).encode() + b"\n"


def warc(kind: str, url: str, block: bytes, content_type: str = "application/http") -> bytes:
    head = (f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Record-ID: <urn:uuid:{kind}-{abs(hash(url)) % 10**8}>\r\n"
            f"WARC-Target-URI: {url}\r\nContent-Type: {content_type}\r\nContent-Length: {len(block)}\r\n\r\n")
    return gzip.compress(head.encode() + block + b"\r\n\r\n", mtime=0)


def http(body: bytes, content_type: str) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n" + body


def write_torture_set(data: Path) -> dict[str, int]:
    """The bad files, and how many ledger rows each must end up with."""
    data.mkdir(parents=True)
    good = "Ferries to the island run twice as often this summer, the harbour office said on Monday. " * 8
    malformed = [
        b'\xef\xbb\xbf{"id": "bom", "text": "' + good.encode() + b'"}\r',  # BOM and CRLF
        b'{"id": "cut", "text": ',  # malformed JSON
        b'{"id": "latin1", "text": "caf\xe9"}',  # invalid UTF-8
        b'{"id": "surrogate", "text": "lone \\ud800 surrogate ' + good.encode() + b'"}',
        b'{"id": "nul", "text": "a\x00b"}',  # raw NUL inside a string
        b"\x00" * 32,  # NUL padding
        b'{"id": "escaped-nul", "text": "a\\u0000b"}',
        b'{"id": "empty", "text": ""}',
        b'{"id": "blank", "text": " \\n\\t "}',
        b'{"id": "no-text"}',
        b'{"id": "number", "text": 42}',
        b'{"id": "null", "text": null}',
        b"[1, 2, 3]",
        b"",  # a blank line is no record
        b'{"id": "dup-1", "text": "' + good.encode() + b'"}',
    ]
    (data / "malformed.jsonl").write_bytes(b"\n".join(malformed) + b"\n")
    body = b"".join(line({"id": f"gz-{i}", "text": f"{i} {good}"}) for i in range(400))
    blob = gzip.compress(body, mtime=0)
    truncated = blob[: len(blob) // 2]
    (data / "truncated.jsonl.gz").write_bytes(truncated)
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(truncated).count(b"\n")
    members = [gzip.compress(line({"id": f"member-{i}", "text": good}), mtime=0) for i in range(3)]
    (data / "members.jsonl.gz").write_bytes(b"".join(members))
    frames = [zstandard.ZstdCompressor().compress(line({"id": i, "text": good})) for i in ("zst-1", "dup-1")]
    (data / "frames.jsonl.zst").write_bytes(b"".join(frames))
    (data / "empty.jsonl").write_bytes(b"")
    with (data / "huge.jsonl").open("wb") as handle:  # one 50 MB document, then one more record
        handle.write(b'{"id": "huge", "text": "' + b"All work and no play. " * (BIG_CHARS // 22) + b'"}\n')
        handle.write(line({"id": "after-huge", "text": good}))
    (data / "notes.csv").write_text("id,text\n1,hello\n")
    pq.write_table(pa.table({"id": ["p1", "p2"], "body": ["x", "y"]}), data / "wrong_schema.parquet")
    (data / "broken.parquet").write_bytes(b"PAR1 not really")
    page = b"<html><body><article><p>" + good.encode() + b"</p></article></body></html>"
    (data / "crawl.warc.gz").write_bytes(b"".join([
        warc("warcinfo", "", b"software: test\r\n", "application/warc-fields"),
        warc("request", "https://a.example/", b"GET / HTTP/1.1\r\n\r\n"),
        warc("response", "https://a.example/logo.png", http(b"\x89PNG\x00\x00", "image/png")),
        warc("response", "https://a.example/feed", http(b'{"items": []}', "application/json")),
        warc("response", "https://a.example/page", http(page, "text/html")),
    ]))
    rows = {
        "malformed.jsonl": len(malformed) - 1, "truncated.jsonl.gz": readable + 1, "members.jsonl.gz": 3,
        "frames.jsonl.zst": 2, "empty.jsonl": 0, "huge.jsonl": 2, "notes.csv": 1, "wrong_schema.parquet": 1,
        "broken.parquet": 1, "crawl.warc.gz": 1,  # only HTML responses are documents
    }
    return {f"{data.name}/{name}": count for name, count in rows.items()}


@pytest.fixture(scope="module")
def torture_build(tmp_path_factory) -> tuple[Path, dict[str, int], str, int]:
    """(build dir, ledger rows expected per torture file, CLI output, demo documents)."""
    from datafactory.app.cli import app

    root = tmp_path_factory.mktemp("torture")
    write_demo_corpus(root / "demo", n_docs=80, seed=5)  # documents that survive, to train a tokenizer on
    expected = write_torture_set(root / "data")
    config = {
        "inputs": [{"path": "data/*", "source": "torture"},
                   {"path": "demo/data/*.jsonl.*", "source": "demo"},
                   {"path": "demo/data/*.parquet", "source": "demo_zh", "text_field": "content"}],
        "num_partitions": 2,
        "runner": {"direct_running_mode": "in_memory"},
        "tokenize": {"seq_len": 64, "rows_per_shard": 64, "tokenizer": {"vocab_size": 4000}},
    }
    (root / "build.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["build", str(root / "build.yaml"), "--out", str(root / "out")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    demo_docs = sum(1 for _ in (root / "demo" / "ground_truth.jsonl").open())
    return root / "out", expected, result.output, demo_docs


def ledger(out: Path, sql: str) -> list[tuple]:
    with duckdb.connect() as con:
        return con.execute(sql.replace("LEDGER", f"read_parquet('{out}/ledger/*.parquet')")).fetchall()


def test_every_record_ends_in_exactly_one_ledger_row(torture_build):
    out, expected, _, demo_docs = torture_build
    per_file = dict(ledger(out, "SELECT input_file, count(*) FROM LEDGER GROUP BY ALL"))
    assert {name: per_file.get(name, 0) for name in expected} == expected
    assert sum(count for name, count in per_file.items() if name.startswith("demo/")) == demo_docs
    ((rows, ids),) = ledger(out, "SELECT count(*), count(DISTINCT doc_id) FROM LEDGER")
    assert rows == ids == sum(expected.values()) + demo_docs
    statuses = dict(ledger(out, "SELECT status, count(*) FROM LEDGER GROUP BY ALL"))
    assert set(statuses) <= {"kept", "dropped", "duplicate", "invalid"} and sum(statuses.values()) == rows
    assert statuses["kept"] > 0


def test_unreadable_records_are_located_invalid_rows(torture_build):
    out = torture_build[0]
    invalid = {(file, location): reason for file, location, reason in ledger(
        out, "SELECT input_file, location, reason FROM LEDGER WHERE status = 'invalid' AND stage = 'ingest'")}
    assert all(reason.startswith("invalid: ") for reason in invalid.values())
    expected = {
        ("malformed.jsonl", "line 2"): "malformed JSON", ("malformed.jsonl", "line 3"): "invalid UTF-8",
        ("malformed.jsonl", "line 5"): "malformed JSON", ("malformed.jsonl", "line 6"): "malformed JSON",
        ("malformed.jsonl", "line 8"): "empty text", ("malformed.jsonl", "line 9"): "empty text",
        ("malformed.jsonl", "line 10"): "field 'text' is missing", ("malformed.jsonl", "line 11"): "is int",
        ("malformed.jsonl", "line 12"): "field 'text' is null", ("malformed.jsonl", "line 13"): "not an object",
        ("notes.csv", "file"): "unknown file extension", ("broken.parquet", "file"): "unreadable Parquet",
        ("wrong_schema.parquet", "file"): "no column 'text'",
    }
    for (file, location), error in expected.items():
        assert error in invalid[(f"data/{file}", location)], (file, location)
    truncated = [key for key in invalid if key[0] == "data/truncated.jsonl.gz"]
    assert len(truncated) == 1 and "unreadable after line" in invalid[truncated[0]]
    assert ("data/malformed.jsonl", "line 1") not in invalid  # BOM + CRLF read fine
    assert ("data/malformed.jsonl", "line 7") not in invalid  # an escaped NUL is removed, not fatal


def test_oversized_document_is_truncated_and_ids_stay_unique(torture_build):
    out = torture_build[0]
    rows = pq.read_table(out / "stages" / "ingest", columns=["doc_id", "text", "meta", "input_file"]).to_pylist()
    huge = next(row for row in rows if row["doc_id"] == "huge")
    assert len(huge["text"]) == 1_000_000 and json.loads(huge["meta"])["truncated_from_chars"] >= BIG_CHARS - 22
    copies = sorted((row["input_file"], row["doc_id"]) for row in rows if row["doc_id"].startswith("dup-1"))
    assert [doc_id for _, doc_id in copies][0] == "dup-1" and copies[1][1].startswith("dup-1~")
    assert next(row for row in rows if row["doc_id"] == "escaped-nul")["text"] == "ab"


def test_cli_summary_shows_the_counts(torture_build):
    out, _, output, _ = torture_build
    statuses = dict(ledger(out, "SELECT status, count(*) FROM LEDGER GROUP BY ALL"))
    assert "documents by final" in output  # the table title (rich may wrap it)
    for status, count in statuses.items():
        assert any(status in row and f"{count:,}" in row for row in output.splitlines()), (status, count)


def test_a_broken_config_fails_before_any_work(tmp_path):
    from datafactory.app.cli import app

    (tmp_path / "docs.jsonl").write_bytes(line({"id": "a", "text": "hello"}))
    (tmp_path / "bad.yaml").write_text("inputs: [{path: docs.jsonl, source: web}]\ntokenize: {seq_lenght: 64}\n")
    result = CliRunner().invoke(app, ["build", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "tokenize.seq_lenght" in result.output
    assert not (tmp_path / "out" / "stages").exists()
