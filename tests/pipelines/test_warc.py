"""WARC and WET input: real crawl files read whole, every HTML response is a document, bad records are located."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType

from datafactory.factory.config import IngestConfig, InputSpec
from datafactory.pipelines.inputs import detect_format
from datafactory.pipelines.readers import RecordReader

# HTML responses per file, as counted in shared/data/README.md.
REAL_FILES = {
    "dolma-sample-0000.warc.gz": 22,
    "resiliparse-warcfile.warc.gz": 16,
    "resiliparse-clueweb-quirk.warc.gz": 29,
}
ARTICLE = (
    "<html><head><title>Harbour news</title></head><body><nav><a href='/'>Home</a></nav><article>"
    "<p>The ferry to the island will run twice as often this summer, the harbour office said on Monday.</p>"
    "<p>Tickets can be bought on board, and children under twelve travel free on every crossing.</p>"
    "</article></body></html>"
)


def read(path: Path, **ingest) -> list[dict]:
    spec = InputSpec(path=str(path), source="web")
    return list(RecordReader(spec, IngestConfig(**ingest), str(path), path.name).rows())


def warc_record(kind: str, block: bytes, headers: dict | None = None, record_id: str | None = "auto") -> bytes:
    fields = {"WARC-Type": kind, "WARC-Date": "2024-03-01T10:00:00Z"}
    if record_id:
        fields["WARC-Record-ID"] = f"<urn:uuid:{kind}-{len(block)}>" if record_id == "auto" else record_id
    fields |= (headers or {}) | {"Content-Length": str(len(block))}
    head = "WARC/1.0\r\n" + "".join(f"{key}: {value}\r\n" for key, value in fields.items())
    return head.encode() + b"\r\n" + block + b"\r\n\r\n"


def http(body: bytes, *headers: str, newline: bytes = b"\r\n") -> bytes:
    lines = [b"HTTP/1.1 200 OK", *(h.encode() for h in headers)]
    return newline.join(lines) + newline + newline + body


def response(url: str, block: bytes, **kwargs) -> bytes:
    return warc_record("response", block, {"WARC-Target-URI": url, "Content-Type": "application/http"}, **kwargs)


def test_detect_web_formats():
    assert detect_format("crawl/a.warc") == ("warc", None)
    assert detect_format("a.warc.gz") == ("warc", "gzip")
    assert detect_format("a.warc.zst") == ("warc", "zstd")
    assert detect_format("a.wet") == ("wet", None)
    assert detect_format("a.wet.gz") == ("wet", "gzip")
    assert detect_format("CC-MAIN-1.warc.wet.gz") == ("wet", "gzip")
    assert detect_format("a.jsonl.gz") == ("jsonl", "gzip")


@pytest.fixture(scope="module")
def warc_dir(shared_data: Path) -> Path:
    return shared_data / "warc"


@pytest.mark.parametrize(("name", "expected"), sorted(REAL_FILES.items()))
def test_real_warc_files_read_whole(warc_dir: Path, name: str, expected: int):
    rows = read(warc_dir / name)
    assert len(rows) == expected
    assert all(row["keep"] for row in rows), [row["reason"] for row in rows if not row["keep"]]
    ids = [row["doc_id"] for row in rows]
    assert len(set(ids)) == len(ids) and all(i.startswith("urn:uuid:") for i in ids)
    assert [row["doc_id"] for row in read(warc_dir / name)] == ids  # stable across reads
    for row in rows:
        meta = json.loads(row["meta"])
        assert row["location"] == f"offset {meta['offset']}"
        assert meta["content_type"] == "text/html" and meta["charset"] and meta["extractor"]
        assert row["url"].startswith("http") and row["date"]
    assert sum(bool(row["text"].strip()) for row in rows) >= expected - 1


def test_real_warc_charsets_and_quirks(warc_dir: Path):
    clueweb = read(warc_dir / "resiliparse-clueweb-quirk.warc.gz")
    assert {json.loads(row["meta"])["charset"] for row in clueweb} == {"euc_jp"}
    assert all("ヘッドポーター" in row["text"] for row in clueweb)  # decoded, not mojibake
    assert clueweb[0]["date"] == "2008-10-294T05:21:46-0700"  # malformed WARC-Date kept as written
    charsets = {json.loads(row["meta"])["charset"] for row in read(warc_dir / "resiliparse-warcfile.warc.gz")}
    assert {"gbk", "cp1251", "utf-8"} <= charsets


def test_truncated_warc_ends_with_a_located_invalid_row(warc_dir: Path, tmp_path: Path):
    source = (warc_dir / "resiliparse-warcfile.warc.gz").read_bytes()
    responses = [r.stream_pos for r in ArchiveIterator(str(warc_dir / "resiliparse-warcfile.warc.gz"),
                                                       record_types=WarcRecordType.response)]
    cut = responses[len(responses) // 2] + 400  # inside a response's gzip member
    for name, blob in (("cut.warc.gz", source[:cut]), ("cut.warc", gzip.decompress(source)[: cut * 4])):
        (tmp_path / name).write_bytes(blob)
        rows = read(tmp_path / name, html_extractor="resiliparse")
        assert all(row["keep"] for row in rows[:-1]) and len(rows) > 1
        last = rows[-1]
        assert not last["keep"] and "offset" in last["location"], last
        assert "truncated" in last["reason"] or "unreadable" in last["reason"]


def test_corrupt_gzip_member_gives_invalid_row_after_last_good_record(warc_dir: Path, tmp_path: Path):
    blob = bytearray((warc_dir / "dolma-sample-0000.warc.gz").read_bytes())
    blob[len(blob) // 2 : len(blob) // 2 + 64] = b"\x00" * 64
    (tmp_path / "bad.warc.gz").write_bytes(bytes(blob))
    rows = read(tmp_path / "bad.warc.gz", html_extractor="resiliparse")
    assert all(row["keep"] for row in rows[:-1])
    assert not rows[-1]["keep"] and rows[-1]["location"].startswith(("after offset", "offset"))


def test_not_a_warc_and_empty_file(tmp_path: Path):
    (tmp_path / "x.warc").write_bytes(b"this is not an archive\n" * 20)
    rows = read(tmp_path / "x.warc")
    assert len(rows) == 1 and rows[0]["location"] == "offset 0" and "no record" in rows[0]["reason"]
    (tmp_path / "empty.warc.gz").write_bytes(b"")
    assert read(tmp_path / "empty.warc.gz") == []


def test_handmade_warc_records(tmp_path: Path):
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(gzip.compress(ARTICLE.encode())), gzip.compress(ARTICLE.encode()))
    records = [
        warc_record("warcinfo", b"software: test\r\n"),
        warc_record("request", b"GET / HTTP/1.1\r\n\r\n"),
        response("https://a.example/", http(chunked, "Content-Type: text/html; charset=utf-8",
                                             "Transfer-Encoding: chunked", "Content-Encoding: gzip")),
        response("https://a.example/logo.png", http(b"\x89PNG....", "Content-Type: image/png")),
        response("<https://b.example/>", http(ARTICLE.encode("cp1252"), "Content-Type: text/html"), record_id=None),
        response("https://c.example/lf", http(ARTICLE.encode(), "Content-Type: text/html", newline=b"\n")),
        response("https://d.example/empty", http(b"<html><body></body></html>", "Content-Type: text/html")),
        response("https://e.example/bad", http(b"\x00\x01 not gzip", "Content-Type: text/html",
                                               "Content-Encoding: gzip")),
        warc_record("revisit", b"", {"WARC-Target-URI": "https://a.example/"}),
    ]
    path = tmp_path / "hand.warc.gz"
    path.write_bytes(b"".join(gzip.compress(record, mtime=0) for record in records))
    rows = read(path)
    assert [row["url"] for row in rows] == [
        "https://a.example/", "https://b.example/", "https://c.example/lf", "https://d.example/empty",
        "https://e.example/bad"
    ]
    chunked_gzip, no_id, lf_only, empty, bad = rows
    assert "ferry to the island" in chunked_gzip["text"] and "Home" not in chunked_gzip["text"]
    assert json.loads(chunked_gzip["meta"])["title"] == "Harbour news"
    assert no_id["doc_id"].startswith("web-") and no_id["doc_id"] == read(path)[1]["doc_id"]
    assert "ferry to the island" in lf_only["text"]
    assert empty["keep"] and empty["text"] == ""  # an empty page is a document; later stages drop it
    assert not bad["keep"] and bad["location"].startswith("offset ") and "gzip" in bad["reason"].lower()
    slow = read(path, html_extractor="trafilatura")[0]
    assert json.loads(slow["meta"])["extractor"] == "trafilatura" and "ferry" in slow["text"]


def test_small_wet_reads(tmp_path: Path):
    text = "Zwei Absätze Text.\nUnd noch eine Zeile mit Umlauten: äöü."
    records = [
        warc_record("warcinfo", b"software: test\r\n"),
        warc_record("conversion", text.encode(), {
            "WARC-Target-URI": "https://de.example/a", "Content-Type": "text/plain",
            "WARC-Identified-Content-Language": "deu", "WARC-Refers-To": "<urn:uuid:orig-1>",
        }, record_id="<urn:uuid:wet-1>"),
        warc_record("conversion", "第二个文档。".encode(), {"WARC-Target-URI": "https://zh.example/b"},
                    record_id="<urn:uuid:wet-2>"),
    ]
    for name, blob in (("s.wet", b"".join(records)),
                       ("s.warc.wet.gz", b"".join(gzip.compress(r, mtime=0) for r in records))):
        (tmp_path / name).write_bytes(blob)
        rows = read(tmp_path / name)
        assert [row["doc_id"] for row in rows] == ["urn:uuid:wet-1", "urn:uuid:wet-2"]
        assert rows[0]["text"] == text and rows[1]["text"] == "第二个文档。"
        assert rows[0]["url"] == "https://de.example/a" and rows[0]["date"] == "2024-03-01T10:00:00Z"
        meta = json.loads(rows[0]["meta"])
        assert meta["content_language"] == "deu" and meta["charset"] == "utf-8" and "offset" in meta
