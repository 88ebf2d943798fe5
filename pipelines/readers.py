"""Input readers: JSONL (plain, gzip, zstd), Parquet, WARC (HTML responses, main content extracted) and WET into
document rows; unreadable records become invalid rows."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import zstandard
from fastwarc.stream_io import BrotliReader, ChunkedReader, GzipReader, ZstdReader
from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from datafactory.factory.config import BuildConfig, ConfigError, IngestConfig, InputSpec, check_named_files
from datafactory.factory.records import stable_doc_id
from datafactory.filters.html import extract_html

JSONL_SUFFIXES = {".jsonl": None, ".json": None, ".ndjson": None}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
WEB_SUFFIXES = {".warc": "warc", ".wet": "wet"}
FORMATS = ("jsonl", "parquet", "warc", "wet")
HTML_TYPES = {"text/html", "application/xhtml+xml"}
# HTTP Content-Encoding -> decoder; a payload that fails to decode but already looks like HTML was stored decoded
# (ClueWeb09 keeps "Content-Encoding: gzip" on plain payloads) and is used as it is.
CONTENT_DECODERS = {
    "gzip": GzipReader,
    "x-gzip": GzipReader,
    "deflate": lambda stream: GzipReader(stream, zlib=True),
    "br": BrotliReader,
    "zstd": ZstdReader,
}


def detect_format(path: str) -> tuple[str | None, str | None]:
    """(format, compression) from the file name; format None when the extension is unknown."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last == ".parquet":
        return "parquet", compression
    if last in JSONL_SUFFIXES:
        return "jsonl", compression
    if last in WEB_SUFFIXES:  # .warc.gz, .wet.gz, .warc.wet.gz (Common Crawl's name), plain or zstd
        return WEB_SUFFIXES[last], compression
    return None, compression


def resolve_inputs(config: BuildConfig) -> list[tuple[str, int]]:
    """Every input file with the index of its spec. Config errors, raised before any work: a spec that matches
    nothing, a file two specs match (its records would be read twice), a model or list file that is missing."""
    files: list[tuple[str, int]] = []
    owner: dict[str, int] = {}
    for index, spec in enumerate(config.inputs):
        pattern = spec.path if "://" in spec.path else str(Path(config.base_dir) / spec.path)
        fs = fsspec.core.url_to_fs(pattern)[0]
        matches = sorted(fs.unstrip_protocol(p) if "://" in pattern else p for p in fs.glob(pattern))
        if not matches:
            raise ConfigError(f"inputs[{index}].path: no file matches {spec.path!r} (base dir {config.base_dir})")
        for match in matches:
            if (first := owner.setdefault(match, index)) != index:
                raise ConfigError(f"inputs[{index}].path: {match} is already matched by inputs[{first}].path")
            files.append((match, index))
    check_named_files(config)
    return files


def display_path(path: str, base_dir: str) -> str:
    """Path as recorded in ids and the ledger: relative to the config's base dir when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(base_dir).resolve()))
    except ValueError:
        return path


def inputs_digest(files: list[tuple[str, int]]) -> str:
    digest = hashlib.sha256()
    for path, index in files:
        digest.update(f"{path}\x00{index}\x00".encode())
        with fsspec.open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def clean_text(text: str) -> str:
    """Lone surrogates (from JSON escapes) become U+FFFD so the text can be stored as UTF-8; NUL characters go
    (never meant as text, and C-string tools downstream would cut the document at them)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class RecordReader:
    """Reads one input file into document rows (keep=True) or invalid rows (keep=False, reason says why)."""

    def __init__(self, spec: InputSpec, ingest: IngestConfig, path: str, shown_path: str) -> None:
        self.spec, self.ingest, self.path, self.shown = spec, ingest, path, shown_path

    def rows(self) -> Iterator[dict]:
        fmt, compression = detect_format(self.path)
        fmt = self.spec.format or fmt
        if fmt == "parquet":
            yield from self._parquet_rows()
        elif fmt == "jsonl":
            yield from self._jsonl_rows(compression)
        elif fmt in ("warc", "wet"):
            yield from self._web_rows(fmt)
        else:
            yield self.invalid("file", f"unknown file extension (expected one of {', '.join(FORMATS)})")

    def invalid(self, location: str, error: str) -> dict:
        return self._row(stable_doc_id(self.spec.source, self.shown, location), location, "", {}, error)

    def _row(self, doc_id: str, location: str, text: str, record: dict, error: str | None) -> dict:
        known = {self.spec.text_field, self.spec.id_field, "url", "date"}
        meta = {k: v for k, v in record.items() if k not in known}
        return {
            "doc_id": doc_id,
            "source": self.spec.source,
            "input_file": self.shown,
            "location": location,
            "url": _as_optional_str(record.get("url")),
            "date": _as_optional_str(record.get("date")),
            "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str) if meta else None,
            "text": text,
            "keep": error is None,
            "reason": None if error is None else f"invalid: {error}",
        }

    def document(self, record: object, location: str) -> dict:
        if not isinstance(record, dict):
            return self.invalid(location, f"record is {type(record).__name__}, not an object")
        raw_id = record.get(self.spec.id_field)
        doc_id = str(raw_id) if isinstance(raw_id, str | int) and str(raw_id) else stable_doc_id(
            self.spec.source, self.shown, location
        )
        text = record.get(self.spec.text_field)
        if text is None:
            return self._row(doc_id, location, "", {}, f"missing field {self.spec.text_field!r}")
        if not isinstance(text, str):
            return self._row(doc_id, location, "", {}, f"field {self.spec.text_field!r} is {type(text).__name__}")
        text = clean_text(text)
        if len(text.strip()) < max(self.ingest.min_doc_chars, 1):
            return self._row(doc_id, location, "", {}, "empty text")
        return self._kept_row(doc_id, location, text, record)

    def _kept_row(self, doc_id: str, location: str, text: str, record: dict) -> dict:
        record = {k: clean_text(v) if isinstance(v, str) else v for k, v in record.items()}
        if len(text) > self.ingest.max_doc_chars:
            record["truncated_from_chars"] = len(text)
            text = text[: self.ingest.max_doc_chars]
        return self._row(doc_id, location, text, record, None)

    def _jsonl_rows(self, compression: str | None) -> Iterator[dict]:
        line_no = 0
        limit = self.ingest.max_record_bytes
        try:
            with fsspec.open(self.path, "rb") as raw:
                for line_no, line in enumerate(_bounded_lines(_decompressed(raw, compression), limit), start=1):
                    if isinstance(line, int):
                        yield self.invalid(f"line {line_no}", f"line of {line:,} bytes exceeds ingest.max_record_bytes "
                                           f"({limit:,}); not read")
                    else:
                        yield from self._jsonl_line(line, line_no)
        except (EOFError, OSError, zlib.error, zstandard.ZstdError) as err:
            yield self.invalid(f"line {line_no + 1}", f"unreadable after line {line_no}: {err}")

    def _jsonl_line(self, line: bytes, line_no: int) -> Iterator[dict]:
        location = f"line {line_no}"
        line = line.rstrip(b"\r\n")
        if line_no == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")
        if not line.strip():
            return
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as err:
            yield self.invalid(location, f"invalid UTF-8 at byte {err.start}")
        except json.JSONDecodeError as err:
            yield self.invalid(location, f"malformed JSON: {err.msg} at column {err.colno}")
        else:
            yield self.document(record, location)

    def _parquet_rows(self) -> Iterator[dict]:
        try:
            with fsspec.open(self.path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                if self.spec.text_field not in parquet.schema_arrow.names:
                    yield self.invalid("file", f"no column {self.spec.text_field!r} in Parquet schema")
                    return
                row_no = 0
                for batch in parquet.iter_batches(batch_size=1024):
                    for record in batch.to_pylist():
                        yield self.document(record, f"row {row_no}")
                        row_no += 1
        except (OSError, ValueError) as err:
            yield self.invalid("file", f"unreadable Parquet: {err}")

    def _web_rows(self, fmt: str) -> Iterator[dict]:
        """WARC: HTTP responses with an HTML type, main content extracted; WET: conversion records' text.
        Other records are not documents. A record that cannot be read is an invalid row at its offset; a file
        that stops being readable mid-way gets one invalid row after the last record read."""
        wanted = WarcRecordType.response if fmt == "warc" else WarcRecordType.conversion
        last_offset = None
        try:
            with fsspec.open(self.path, "rb") as raw:
                # quirks_mode reads ClueWeb-style LF-only HTTP headers; HTTP is parsed later, for responses only.
                for record in ArchiveIterator(raw, parse_http=False, quirks_mode=True):
                    last_offset = record.stream_pos
                    if record.record_type != wanted:
                        continue
                    if record.content_length > self.ingest.max_record_bytes:  # skipped unread, in bounded memory
                        yield self._oversized(record)
                        continue
                    row = self._warc_row(record) if fmt == "warc" else self._wet_row(record)
                    if row is not None:
                        yield row
        except OSError as err:
            where = "offset 0" if last_offset is None else f"after offset {last_offset}"
            yield self.invalid(where, f"unreadable {fmt.upper()} {where}: {err}")
            return
        if last_offset is None and _nonempty(self.path):
            yield self.invalid("offset 0", f"not a {fmt.upper()} file: no record found")

    def _warc_row(self, record: WarcRecord) -> dict | None:
        location = f"offset {record.stream_pos}"
        doc_id = self._web_id(record, location)
        try:
            record.parse_http(auto_decode="none", quirks_mode=True)
            if not record.is_http:
                return None
            content_type = record.http_content_type
            payload = _read_payload(record)
            if not _is_html(content_type, payload):
                return None
            encoding = record.http_headers.get("Content-Encoding")
            html = _http_decoded(payload, record.http_headers.get("Transfer-Encoding"), encoding)
            page = extract_html(html, self.ingest.html_extractor, charset=record.http_charset, url=_target(record))
        except Exception as err:  # any failure of this record (headers, decoding, parser) must not end the file
            return self._row(doc_id, location, "", _where(record), f"{type(err).__name__}: {err}")
        meta = {
            **_where(record),
            "http_status": record.http_headers.status_code,
            "content_type": content_type,  # None: no Content-Type, the payload was sniffed as HTML
            "charset": page.charset,
            "extractor": page.extractor,
            "unsure": page.unsure,
            "title": page.title,
            "published": page.date,
        }
        return self._kept_row(doc_id, location, clean_text(page.text), {k: v for k, v in meta.items() if v is not None})

    def _wet_row(self, record: WarcRecord) -> dict:
        location = f"offset {record.stream_pos}"
        doc_id = self._web_id(record, location)
        try:
            payload = _read_payload(record)
        except OSError as err:
            return self._row(doc_id, location, "", _where(record), f"{type(err).__name__}: {err}")
        meta = {
            **_where(record),
            "content_type": record.headers.get("Content-Type"),
            "charset": "utf-8",  # WET text is UTF-8 by definition; stray bytes become U+FFFD
            "content_language": record.headers.get("WARC-Identified-Content-Language"),
            "refers_to": record.headers.get("WARC-Refers-To"),
        }
        text = clean_text(payload.decode("utf-8", errors="replace"))
        return self._kept_row(doc_id, location, text, {k: v for k, v in meta.items() if v is not None})

    def _oversized(self, record: WarcRecord) -> dict:
        location = f"offset {record.stream_pos}"
        error = (f"record of {record.content_length:,} bytes exceeds ingest.max_record_bytes "
                 f"({self.ingest.max_record_bytes:,}); not read")
        return self._row(self._web_id(record, location), location, "", _where(record), error)

    def _web_id(self, record: WarcRecord, location: str) -> str:
        """The WARC-Record-ID (its URI, without the angle brackets), else a hash of where the record is."""
        record_id = (record.record_id or "").strip().strip("<>")
        return record_id or stable_doc_id(self.spec.source, self.shown, location)


def _read_payload(record: WarcRecord) -> bytes:
    """The record's payload; a short read means the file ends inside this record."""
    payload = record.reader.read()
    if len(payload) < record.content_length:
        raise OSError(f"truncated record: {len(payload)} of {record.content_length} bytes")
    return payload


def _is_html(content_type: str | None, payload: bytes) -> bool:
    if content_type:
        return content_type.lower() in HTML_TYPES
    head = payload[:1024].lstrip().lower()  # no Content-Type: sniff, as browsers do
    return head.startswith((b"<!doctype html", b"<html"))


def _http_decoded(payload: bytes, transfer: str | None, encoding: str | None) -> bytes:
    if transfer and "chunked" in transfer.lower():
        payload = ChunkedReader(io.BytesIO(payload)).read()
    decoder = CONTENT_DECODERS.get((encoding or "").strip().lower())
    if decoder is None:
        return payload
    try:
        return decoder(io.BytesIO(payload)).read()
    except OSError:
        if payload[:1024].lstrip()[:1] == b"<":
            return payload
        raise


def _where(record: WarcRecord) -> dict:
    """url, date and offset of a record: kept on its invalid row too."""
    return {"url": _target(record), "date": record.headers.get("WARC-Date"), "offset": record.stream_pos}


def _target(record: WarcRecord) -> str | None:
    """WARC-Target-URI; WARC/1.0 drafts (and wget) wrap it in angle brackets, which are not part of the URL."""
    uri = (record.headers.get("WARC-Target-URI") or "").strip().removeprefix("<").removesuffix(">")
    return uri or None


def _nonempty(path: str) -> bool:
    with fsspec.open(path, "rb") as handle:
        return bool(handle.read(1))


def _decompressed(raw: io.IOBase, compression: str | None) -> io.BufferedIOBase:
    """A buffered byte stream whose readline takes a size limit (fsspec's own file objects ignore one)."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw)  # every member of a multi-member file, in order
    if compression == "zstd":
        return io.BufferedReader(_CheckedZstd(raw))
    return io.BufferedReader(raw, buffer_size=1 << 20)


class ZstdFrames:
    """Follows zstd frame and block headers (RFC 8878) through the compressed bytes, without decompressing, to tell
    whether the input ended on a frame boundary: zstandard's stream_reader stops silently inside a truncated frame."""

    ZSTD, SKIPPABLE = 0xFD2FB528, range(0x184D2A50, 0x184D2A60)

    def __init__(self) -> None:
        self.head, self.need, self.skip, self.state, self.checksum = bytearray(), 4, 0, "magic", False

    @property
    def complete(self) -> bool:
        return self.state == "magic" and not self.head and not self.skip

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.skip:
                step = min(self.skip, len(view))
                self.skip, view = self.skip - step, view[step:]
                continue
            take = self.need - len(self.head)
            self.head += view[:take]
            view = view[take:]
            if len(self.head) == self.need:
                header, self.head = bytes(self.head), bytearray()
                self._advance(int.from_bytes(header, "little"))

    def _advance(self, value: int) -> None:
        state = self.state
        if state == "magic" and value == self.ZSTD:
            self.state, self.need = "descriptor", 1
        elif state == "magic" and value in self.SKIPPABLE:
            self.state, self.need = "skippable", 4
        elif state == "magic":
            raise zstandard.ZstdError("not a zstd frame")
        elif state == "skippable":
            self.state, self.need, self.skip = "magic", 4, value
        elif state == "descriptor":
            single = value >> 5 & 1
            self.checksum = bool(value >> 2 & 1)
            window = 0 if single else 1
            dictionary = (0, 1, 2, 4)[value & 3]
            content_size = (single, 2, 4, 8)[value >> 6]
            self.state, self.need, self.skip = "block", 3, window + dictionary + content_size
        elif state == "block":
            last, kind, size = value & 1, value >> 1 & 3, value >> 3
            self.skip = 1 if kind == 1 else size  # an RLE block stores one byte
            if last:
                self.state, self.need = ("checksum", 4) if self.checksum else ("magic", 4)
        else:  # checksum read
            self.state, self.need = "magic", 4


class _FrameTee:
    """The compressed source, shown to ZstdFrames on its way to the decompressor."""

    def __init__(self, raw: io.IOBase, frames: ZstdFrames) -> None:
        self.raw, self.frames = raw, frames

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.frames.feed(data)
        return data


class _CheckedZstd(io.RawIOBase):
    """zstd frames one after another (stream_reader: bounded memory), raising at the end of a truncated one."""

    def __init__(self, raw: io.IOBase) -> None:
        self.frames = ZstdFrames()
        self.reader = zstandard.ZstdDecompressor().stream_reader(_FrameTee(raw, self.frames), read_across_frames=True)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        data = self.reader.read(len(buffer))
        if not data and not self.frames.complete:
            raise zstandard.ZstdError("truncated zstd frame: the file ends inside it")
        buffer[: len(data)] = data
        return len(data)


def _bounded_lines(stream: io.BufferedIOBase, limit: int) -> Iterator[bytes | int]:
    """Lines split on b"\\n" only (web text holds U+2028 and friends that str.splitlines would break on). A line
    longer than ``limit`` bytes is read past in 1 MiB steps, never held whole: its length is yielded instead."""
    while line := stream.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n") and len(line) == limit + 1:
            yield line
            continue
        size = len(line)
        while not line.endswith(b"\n") and (line := stream.readline(1 << 20)):
            size += len(line)
        yield size - line.endswith(b"\n")


def _as_optional_str(value: object) -> str | None:
    return None if value is None else clean_text(str(value))
