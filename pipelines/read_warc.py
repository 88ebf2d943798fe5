"""WARC and WET input: HTML responses with their main content extracted (WARC), conversion records' text (WET);
other records are not documents, and a record that cannot be read is an invalid row at its offset."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

import fsspec
from fastwarc.stream_io import BrotliReader, ChunkedReader, GzipReader, ZstdReader
from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from datafactory.factory.records import stable_doc_id
from datafactory.filters.html import extract_html
from datafactory.pipelines.text_fields import clean_text

if TYPE_CHECKING:
    from datafactory.pipelines.readers import RecordReader

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


def web_rows(reader: RecordReader, fmt: str) -> Iterator[dict]:
    """WARC: HTTP responses with an HTML type, main content extracted; WET: conversion records' text.
    Other records are not documents. A record that cannot be read is an invalid row at its offset; a file
    that stops being readable mid-way gets one invalid row after the last record read."""
    wanted = WarcRecordType.response if fmt == "warc" else WarcRecordType.conversion
    last_offset = None
    try:
        with fsspec.open(reader.path, "rb") as raw:
            # quirks_mode reads ClueWeb-style LF-only HTTP headers; HTTP is parsed later, for responses only.
            for record in ArchiveIterator(raw, parse_http=False, quirks_mode=True):
                last_offset = record.stream_pos
                if record.record_type != wanted:
                    continue
                if record.content_length > reader.ingest.max_record_bytes:  # skipped unread, in bounded memory
                    yield oversized(reader, record)
                    continue
                row = warc_row(reader, record) if fmt == "warc" else wet_row(reader, record)
                if row is not None:
                    yield row
    except OSError as err:
        where = "offset 0" if last_offset is None else f"after offset {last_offset}"
        yield reader.invalid(where, f"unreadable {fmt.upper()} {where}: {err}")
        return
    if last_offset is None and _nonempty(reader.path):
        yield reader.invalid("offset 0", f"not a {fmt.upper()} file: no record found")


def warc_row(reader: RecordReader, record: WarcRecord) -> dict | None:
    location = f"offset {record.stream_pos}"
    doc_id = web_id(reader, record, location)
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
        page = extract_html(html, reader.ingest.html_extractor, charset=record.http_charset, url=_target(record))
    except Exception as err:  # any failure of this record (headers, decoding, parser) must not end the file
        return reader.row(doc_id, location, "", _where(record), f"{type(err).__name__}: {err}")
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
    return reader.kept_row(doc_id, location, clean_text(page.text), {k: v for k, v in meta.items() if v is not None})


def wet_row(reader: RecordReader, record: WarcRecord) -> dict:
    location = f"offset {record.stream_pos}"
    doc_id = web_id(reader, record, location)
    try:
        payload = _read_payload(record)
    except OSError as err:
        return reader.row(doc_id, location, "", _where(record), f"{type(err).__name__}: {err}")
    meta = {
        **_where(record),
        "content_type": record.headers.get("Content-Type"),
        "charset": "utf-8",  # WET text is UTF-8 by definition; stray bytes become U+FFFD
        "content_language": record.headers.get("WARC-Identified-Content-Language"),
        "refers_to": record.headers.get("WARC-Refers-To"),
    }
    text = clean_text(payload.decode("utf-8", errors="replace"))
    return reader.kept_row(doc_id, location, text, {k: v for k, v in meta.items() if v is not None})


def oversized(reader: RecordReader, record: WarcRecord) -> dict:
    location = f"offset {record.stream_pos}"
    error = (f"record of {record.content_length:,} bytes exceeds ingest.max_record_bytes "
             f"({reader.ingest.max_record_bytes:,}); not read")
    return reader.row(web_id(reader, record, location), location, "", _where(record), error)


def web_id(reader: RecordReader, record: WarcRecord, location: str) -> str:
    """The WARC-Record-ID (its URI, without the angle brackets), else a hash of where the record is."""
    record_id = (record.record_id or "").strip().strip("<>")
    return record_id or stable_doc_id(reader.spec.source, reader.shown, location)


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
