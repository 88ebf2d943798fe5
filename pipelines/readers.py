"""Input readers: JSONL (plain, gzip, zstd) and Parquet into document rows; unreadable records become invalid rows."""

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

from factory.config import BuildConfig, ConfigError, IngestConfig, InputSpec
from factory.records import stable_doc_id

JSONL_SUFFIXES = {".jsonl": None, ".json": None, ".ndjson": None}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
FORMATS = ("jsonl", "parquet")


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
    return None, compression


def resolve_inputs(config: BuildConfig) -> list[tuple[str, int]]:
    """Every input file with the index of its spec; a spec that matches nothing is a config error."""
    files = []
    for index, spec in enumerate(config.inputs):
        pattern = spec.path if "://" in spec.path else str(Path(config.base_dir) / spec.path)
        fs = fsspec.core.url_to_fs(pattern)[0]
        matches = sorted(fs.unstrip_protocol(p) if "://" in pattern else p for p in fs.glob(pattern))
        if not matches:
            raise ConfigError(f"inputs[{index}].path: no file matches {spec.path!r} (base dir {config.base_dir})")
        files += [(match, index) for match in matches]
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
    """Lone surrogates (from JSON escapes) become U+FFFD so the text can be stored as UTF-8."""
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
        record = {k: clean_text(v) if isinstance(v, str) else v for k, v in record.items()}
        if len(text) > self.ingest.max_doc_chars:
            record["truncated_from_chars"] = len(text)
            text = text[: self.ingest.max_doc_chars]
        return self._row(doc_id, location, text, record, None)

    def _jsonl_rows(self, compression: str | None) -> Iterator[dict]:
        line_no = 0
        try:
            with fsspec.open(self.path, "rb") as raw:
                for line_no, line in enumerate(_decompressed(raw, compression), start=1):
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


def _decompressed(raw: io.IOBase, compression: str | None) -> Iterator[bytes]:
    """Lines split on b"\\n" only: web text holds U+2028 and friends that str.splitlines would break on."""
    if compression == "gzip":
        stream = gzip.GzipFile(fileobj=raw)
    elif compression == "zstd":
        stream = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True))
    else:
        stream = raw
    yield from stream


def _as_optional_str(value: object) -> str | None:
    return None if value is None else clean_text(str(value))
