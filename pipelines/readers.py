"""Reads one input file into document rows (keep=True) or located invalid rows (keep=False, reason says why); each
format's reading lives in its own module (read_jsonl, read_parquet, read_warc)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from datafactory.factory.config import IngestConfig, InputSpec
from datafactory.factory.records import stable_doc_id
from datafactory.pipelines.inputs import FORMATS, detect_format
from datafactory.pipelines.read_jsonl import jsonl_rows
from datafactory.pipelines.read_parquet import parquet_rows
from datafactory.pipelines.read_warc import web_rows
from datafactory.pipelines.text_fields import as_optional_str, clean_text


class RecordReader:
    """Reads one input file into document rows (keep=True) or invalid rows (keep=False, reason says why)."""

    def __init__(self, spec: InputSpec, ingest: IngestConfig, path: str, shown_path: str) -> None:
        self.spec, self.ingest, self.path, self.shown = spec, ingest, path, shown_path

    def rows(self) -> Iterator[dict]:
        fmt, compression = detect_format(self.path)
        fmt = self.spec.format or fmt
        if fmt == "parquet":
            yield from parquet_rows(self)
        elif fmt == "jsonl":
            yield from jsonl_rows(self, compression)
        elif fmt in ("warc", "wet"):
            yield from web_rows(self, fmt)
        else:
            yield self.invalid("file", f"unknown file extension (expected one of {', '.join(FORMATS)})")

    def invalid(self, location: str, error: str) -> dict:
        return self.row(stable_doc_id(self.spec.source, self.shown, location), location, "", {}, error)

    def row(self, doc_id: str, location: str, text: str, record: dict, error: str | None) -> dict:
        known = {self.spec.text_field, self.spec.id_field, "url", "date"}
        meta = {k: v for k, v in record.items() if k not in known}
        return {
            "doc_id": doc_id,
            "source": self.spec.source,
            "input_file": self.shown,
            "location": location,
            "url": as_optional_str(record.get("url")),
            "date": as_optional_str(record.get("date")),
            "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str) if meta else None,
            "text": text,
            "keep": error is None,
            "reason": None if error is None else f"invalid: {error}",
        }

    def document(self, record: object, location: str) -> dict:
        try:
            return self.checked_document(record, location)
        except RecursionError:  # json.loads read it, but storing its meta as JSON again goes deeper than Python allows
            return self.invalid(location, "record nested too deeply to store")

    def checked_document(self, record: object, location: str) -> dict:
        if not isinstance(record, dict):
            return self.invalid(location, f"record is {type(record).__name__}, not an object")
        raw_id = record.get(self.spec.id_field)
        doc_id = clean_text(str(raw_id)) if isinstance(raw_id, str | int) and str(raw_id) else stable_doc_id(
            self.spec.source, self.shown, location
        )  # an id is stored and hashed as UTF-8: lone surrogates become U+FFFD, as in the text
        text = record.get(self.spec.text_field)
        if text is None:
            missing = "is null" if self.spec.text_field in record else "is missing"
            return self.row(doc_id, location, "", {}, f"field {self.spec.text_field!r} {missing}")
        if not isinstance(text, str):
            return self.row(doc_id, location, "", {}, f"field {self.spec.text_field!r} is {type(text).__name__}")
        text = clean_text(text)
        if len(text.strip()) < max(self.ingest.min_doc_chars, 1):
            return self.row(doc_id, location, "", {}, "empty text")
        return self.kept_row(doc_id, location, text, record)

    def kept_row(self, doc_id: str, location: str, text: str, record: dict) -> dict:
        record = {k: clean_text(v) if isinstance(v, str) else v for k, v in record.items()}
        if len(text) > self.ingest.max_doc_chars:
            record["truncated_from_chars"] = len(text)
            text = text[: self.ingest.max_doc_chars]
        return self.row(doc_id, location, text, record, None)
