"""Bad input, record by record: oversized records in bounded memory, compression quirks, NUL bytes, repeated ids,
broken configs that fail before any work, and a stage that loses documents failing loudly."""

from __future__ import annotations

import gzip
import json
import re
import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from datafactory.factory.config import ConfigError, IngestConfig, InputSpec, load_config, parse_config
from datafactory.pipelines.common import LostDocuments, StagePaths, check_conservation
from datafactory.pipelines.inputs import resolve_inputs
from datafactory.pipelines.readers import RecordReader
from datafactory.pipelines.registry import run_stage_named

MIB = 1 << 20


def read(path: Path, **ingest_settings) -> list[dict]:
    spec = InputSpec(path=str(path), source="s")
    return list(RecordReader(spec, IngestConfig(**ingest_settings), str(path), path.name).rows())


def line(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"


def test_a_line_over_max_record_bytes_is_skipped_without_holding_it(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("wb") as handle:
        handle.write(b'{"id": "big", "text": "' + b"word " * (4 * MIB) + b'"}\n')  # 20 MiB on one line
        handle.write(line({"id": "after", "text": "still read"}))
    tracemalloc.start()
    try:
        rows = read(path, max_record_bytes=MIB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB, f"peak {peak:,} bytes while skipping a 20 MiB line"
    big, after = rows
    assert not big["keep"] and big["location"] == "line 1" and "exceeds ingest.max_record_bytes" in big["reason"]
    assert f"{path.stat().st_size - len(line({'id': 'after', 'text': 'still read'})) - 1:,} bytes" in big["reason"]
    assert after["keep"] and after["location"] == "line 2"


def test_a_line_of_exactly_max_record_bytes_is_read(tmp_path):
    record = line({"id": "a", "text": "x" * 100})
    (tmp_path / "edge.jsonl").write_bytes(record + record.rstrip(b"\n"))  # the last line has no newline
    rows = read(tmp_path / "edge.jsonl", max_record_bytes=len(record) - 1)
    assert [row["keep"] for row in rows] == [True, True]


def test_multi_member_gzip_empty_files_and_nul_bytes(tmp_path):
    members = [gzip.compress(line({"id": f"m{i}", "text": f"member {i}"}), mtime=0) for i in range(3)]
    (tmp_path / "multi.jsonl.gz").write_bytes(b"".join(members))
    assert [row["text"] for row in read(tmp_path / "multi.jsonl.gz")] == ["member 0", "member 1", "member 2"]
    for name in ("empty.jsonl", "empty.jsonl.gz", "empty.jsonl.zst"):
        (tmp_path / name).write_bytes(b"")
        assert read(tmp_path / name) == []
    (tmp_path / "empty.parquet").write_bytes(b"")
    (only,) = read(tmp_path / "empty.parquet")
    assert only["location"] == "file" and "unreadable Parquet" in only["reason"]
    (tmp_path / "nul.jsonl").write_bytes(
        line({"id": "escaped", "text": "a\u0000b"}) + b'{"id": "raw", "text": "a\x00b"}\n' + b"\x00" * 64 + b"\n"
    )
    escaped, raw, padding = read(tmp_path / "nul.jsonl")
    assert escaped["keep"] and escaped["text"] == "ab"
    assert "malformed JSON" in raw["reason"] and "malformed JSON" in padding["reason"]


def test_truncated_zstd_is_located(tmp_path):
    blob = zstandard.ZstdCompressor().compress(b"".join(line({"id": str(i), "text": "t " * 50}) for i in range(500)))
    (tmp_path / "cut.jsonl.zst").write_bytes(blob[: len(blob) // 2])
    rows = read(tmp_path / "cut.jsonl.zst")
    assert all(row["keep"] for row in rows[:-1])
    assert not rows[-1]["keep"] and "unreadable after line" in rows[-1]["reason"]


def warc_response(url: str, body: bytes, content_type: str) -> bytes:
    http = b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n" + body
    head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{abs(hash(url))}>\r\n"
            f"WARC-Target-URI: {url}\r\nContent-Type: application/http\r\nContent-Length: {len(http)}\r\n\r\n")
    return head.encode() + http + b"\r\n\r\n"


def test_oversized_warc_record_is_not_read_and_non_html_is_no_document(tmp_path):
    page = b"<html><body><p>" + b"The harbour office opened early on Monday. " * 20 + b"</p></body></html>"
    records = [warc_response("https://a.example/big", page * 100, "text/html"),
               warc_response("https://a.example/logo.png", b"\x89PNG" + b"\x00" * 100, "image/png"),
               warc_response("https://a.example/doc.pdf", b"%PDF-1.4", "application/pdf"),
               warc_response("https://a.example/ok", page, "text/html")]
    (tmp_path / "crawl.warc.gz").write_bytes(b"".join(gzip.compress(r, mtime=0) for r in records))
    big, ok = read(tmp_path / "crawl.warc.gz", max_record_bytes=64 << 10, html_extractor="resiliparse")
    assert not big["keep"] and big["url"] == "https://a.example/big" and "not read" in big["reason"]
    assert ok["keep"] and "harbour office" in ok["text"]


def test_a_corrupt_parquet_row_group_costs_only_its_own_rows(tmp_path):
    import pyarrow as pa

    table = pa.table({"id": [f"d{i}" for i in range(30)], "text": [f"text number {i} " * 20 for i in range(30)]})
    pq.write_table(table, tmp_path / "rg.parquet", row_group_size=10, compression="none")
    page = pq.ParquetFile(tmp_path / "rg.parquet").metadata.row_group(1).column(1).data_page_offset
    blob = bytearray((tmp_path / "rg.parquet").read_bytes())
    blob[page + 20 : page + 200] = b"\xab" * 180  # the second row group's text page header and data
    (tmp_path / "rg.parquet").write_bytes(bytes(blob))
    rows = read(tmp_path / "rg.parquet")
    assert [row["doc_id"] for row in rows if row["keep"]] == [f"d{i}" for i in (*range(10), *range(20, 30))]
    (bad,) = [row for row in rows if not row["keep"]]
    assert bad["location"] == "row group 1" and "rows 10-19 unreadable" in bad["reason"]


def ingest_files(tmp_path: Path, files: dict[str, bytes], **config) -> list[dict]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
    inputs = [{"path": name, "source": "web"} for name in files]
    build = tmp_path / "build"
    run_stage_named("ingest", parse_config({"inputs": inputs, "runner": {"direct_running_mode": "in_memory"}, **config},
                            base_dir=str(tmp_path)), build)
    return pq.read_table(build / "stages" / "ingest").to_pylist()


def test_repeated_ids_stay_documents_under_unique_ids(tmp_path):
    rows = ingest_files(tmp_path, {
        "a.jsonl": line({"id": "same", "text": "first"}) + line({"id": "same", "text": "again in a"}),
        "b.jsonl": line({"id": "same", "text": "in b"}) + line({"id": "other", "text": "other"}),
    })
    by_text = {row["text"]: row for row in rows}
    assert len({row["doc_id"] for row in rows}) == len(rows) == 4
    assert by_text["first"]["doc_id"] == "same"  # first in input order keeps the id
    for text in ("again in a", "in b"):
        assert by_text[text]["doc_id"].startswith("same~")
        assert json.loads(by_text[text]["meta"])["original_id"] == "same"


def test_an_input_id_equal_to_a_renamed_one_keeps_every_id_unique(tmp_path):
    """The rename of line 3's repeated "x" is probed first; then that very string comes as line 1's id."""
    probe = [("x", "one"), ("y", "filler"), ("x", "two")]
    rows = ingest_files(tmp_path / "probe", {"a.jsonl": b"".join(line({"id": i, "text": t}) for i, t in probe)})
    renamed = next(row["doc_id"] for row in rows if row["text"] == "two")
    clash = [(renamed, "literal"), ("x", "one"), ("x", "two")]
    rows = ingest_files(tmp_path / "clash", {"a.jsonl": b"".join(line({"id": i, "text": t}) for i, t in clash)})
    assert len({row["doc_id"] for row in rows}) == 3, rows
    assert {row["text"]: row["doc_id"] for row in rows}["literal"] == renamed


@pytest.mark.parametrize(("record", "reason"), [
    (b'{"id": "deep", "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "JSON nested too deeply"),
    (b'{"id": ' + b"7" * 5000 + b', "text": "a huge integer id"}', "unreadable JSON value"),
])
def test_records_that_break_a_json_parser_are_located_invalid_rows(tmp_path, record, reason):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(record + b"\n" + line({"id": "after", "text": "still read"}))
    bad, after = read(path, max_record_bytes=4 * MIB)
    assert (bad["keep"], bad["location"]) == (False, "line 1") and reason in bad["reason"]
    assert after["keep"] and after["doc_id"] == "after"


def test_a_lone_surrogate_in_an_id_is_stored_like_one_in_the_text(tmp_path):
    rows = ingest_files(tmp_path, {"a.jsonl": b'{"id": "lone \\ud800 surrogate", "text": "kept"}\n'})
    assert [(row["doc_id"], row["keep"]) for row in rows] == [("lone \ufffd surrogate", True)]


@pytest.mark.parametrize("source", ["../../escape", "..", "a/b", "", "web news"])
def test_a_source_name_cannot_leave_the_build_directory(tmp_path, source):
    with pytest.raises(ConfigError, match=r"inputs\.0\.source"):
        parse_config({"inputs": [{"path": "docs.jsonl", "source": source}]})


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "docs.jsonl").write_bytes(line({"id": "a", "text": "hello"}))
    path = tmp_path / "build.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "key"), [
    ("inputs: [{path: docs.jsonl, source: web}]\ningest: {max_doc_char: 10}\n", "ingest.max_doc_char"),
    ("inputs: [{path: docs.jsonl, source: web}]\nnum_partitions: four\n", "num_partitions"),
    ("inputs: [{path: docs.jsonl, source: web, text_feld: body}]\n", "inputs.0.text_feld"),
    ("inputs: [{path: docs.jsonl, source: web}]\ntokenize: {seq_len: -1}\n", "tokenize.seq_len"),
    ("{}\n", "inputs"),
])
def test_broken_config_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write_config(tmp_path, text))


@pytest.mark.parametrize(("text", "key"), [
    ("tokenize: {seq_len: '128'}\n", "tokenize.seq_len"),
    ("tokenize: {seq_len: true}\n", "tokenize.seq_len"),
    ("quality: {top_fraction: 0.6, bottom_fraction: 0.5}\n", "no 'mid' bucket"),
    ("schedule: {cron: '61 3 * * *'}\n", "minute field '61'"),
    ("schedule: {cron: '0 3 * * *', timezone: Mars/Olympus}\n", "unknown time zone 'Mars/Olympus'"),
    ("runner: {runner: SparkRuner}\n", "runner.runner"),
    ("tokenize: {seq_len: 128}\ntokenize: {seq_len: 256}\n", "duplicate key 'tokenize'"),
])
def test_lax_values_are_refused_by_name(tmp_path, text, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(write_config(tmp_path, "inputs: [{path: docs.jsonl, source: web}]\n" + text))


def test_a_compressed_file_named_plain_jsonl_is_read_as_what_it_is(tmp_path):
    body = line({"id": "a", "text": "gzip inside"}) + line({"id": "b", "text": "second"})
    (tmp_path / "gz.jsonl").write_bytes(gzip.compress(body))
    (tmp_path / "zst.jsonl").write_bytes(zstandard.ZstdCompressor().compress(body))
    for name in ("gz.jsonl", "zst.jsonl"):
        assert [(row["doc_id"], row["keep"]) for row in read(tmp_path / name)] == [("a", True), ("b", True)]


@pytest.mark.parametrize(("text", "message"), [
    ("inputs: [{path: missing/*.jsonl, source: web}]\n", r"inputs\[0\]\.path: no file matches"),
    ("inputs: [{path: docs.jsonl, source: web}]\nquality: {scorers: [{model: nope.bin}]}\n",
     r"quality\.scorers\[0\]\.model: file not found: .*nope\.bin"),
    ("inputs: [{path: docs.jsonl, source: web}]\nlangid: {model: lid.bin}\n", r"langid\.model: file not found"),
    ("inputs: [{path: '*.jsonl', source: web}, {path: docs.jsonl, source: news}]\n",
     r"inputs\[1\]\.path: .*docs\.jsonl is already matched by inputs\[0\]\.path"),
])
def test_missing_inputs_fail_before_any_work(tmp_path, text, message):
    config = load_config(write_config(tmp_path, text))
    with pytest.raises(ConfigError, match=message):
        resolve_inputs(config)  # what the build flow calls first
    assert not (tmp_path / "build").exists()


def test_a_combiner_without_its_inner_models_fails_before_any_work(tmp_path):
    from datafactory.pipelines.registry import preflight

    (tmp_path / "docs.jsonl").write_text('{"id": "a", "text": "some text"}\n')
    (tmp_path / "q.combiner").write_text("{}")
    config = load_config(write_config(tmp_path, "inputs: [{path: docs.jsonl, source: web}]\n"
                                                "quality: {scorers: [{model: q.combiner, kind: combiner}]}\n"))
    with pytest.raises(ConfigError, match=r"quality\.scorers \(q\): the combiner .* lacks its inner model .*fasttext"):
        preflight(config, "build.yaml")


@pytest.mark.parametrize(("section", "key"), [
    ("langid: {model: fake.bin}", "langid.model"),
    ("quality: {model: fake.bin}", "quality.model"),
    ("quality: {scorers: [{model: fake.bin}]}", r"quality.scorers[0].model"),
])
def test_a_file_that_is_no_fasttext_model_fails_before_any_work(tmp_path, section, key):
    from datafactory.pipelines.registry import preflight

    (tmp_path / "fake.bin").write_bytes(b"<html>not a model</html>")
    config = load_config(write_config(tmp_path, f"inputs: [{{path: docs.jsonl, source: web}}]\n{section}\n"))
    with pytest.raises(ConfigError, match=re.escape(key) + r": .*fake\.bin is not a fastText model"):
        preflight(config, "build.yaml")


def test_config_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "lid.bin").write_bytes(b"model")
    config = load_config(write_config(tmp_path, "inputs: [{path: docs.jsonl, source: web}]\n"
                                                "langid: {model: models/lid.bin}\n"))
    assert config.named_files() == {"langid.model": str((tmp_path / "models" / "lid.bin").resolve())}
    resolve_inputs(config)


def test_a_stage_that_loses_documents_fails(tmp_path):
    upstream = StagePaths(tmp_path, "langid")
    upstream.stage_dir.mkdir(parents=True)
    (upstream.stage_dir / "_SUCCESS.json").write_text(json.dumps({"counts": {"documents": 10, "kept": 8}}))
    check_conservation("heuristics", {"documents": 8, "kept": 5, "dropped": {"x": 3}}, upstream)
    with pytest.raises(LostDocuments, match="heuristics: wrote 7 documents but langid kept 8"):
        check_conservation("heuristics", {"documents": 7, "kept": 7, "dropped": {}}, upstream)
