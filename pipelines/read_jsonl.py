"""JSON Lines input, plain, gzip (every member) or zstd (every frame), read line by line in bounded memory; a file
cut short yields every record before the cut, then one invalid row."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import fsspec
import zstandard

if TYPE_CHECKING:
    from datafactory.pipelines.readers import RecordReader

ZSTD_INPUT_CHUNK = 1 << 12  # compressed bytes per decompress call: bounds the output of one call (zstd ratio <= ~45000)


def jsonl_rows(reader: RecordReader, compression: str | None) -> Iterator[dict]:
    line_no = 0
    limit = reader.ingest.max_record_bytes
    try:
        with fsspec.open(reader.path, "rb") as raw:
            stream = decompressed(raw, compression or sniffed_compression(raw))
            for line_no, line in enumerate(bounded_lines(stream, limit), start=1):
                if isinstance(line, int):
                    yield reader.invalid(f"line {line_no}", f"line of {line:,} bytes exceeds ingest.max_record_bytes "
                                       f"({limit:,}); not read")
                else:
                    yield from jsonl_line(reader, line, line_no)
    except (EOFError, OSError, zlib.error, zstandard.ZstdError) as err:
        yield reader.invalid(f"line {line_no + 1}", f"unreadable after line {line_no}: {err}")


def jsonl_line(reader: RecordReader, line: bytes, line_no: int) -> Iterator[dict]:
    location = f"line {line_no}"
    line = line.rstrip(b"\r\n")
    if line_no == 1:
        line = line.removeprefix(b"\xef\xbb\xbf")
    if not line.strip():
        return
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as err:
        yield reader.invalid(location, f"invalid UTF-8 at byte {err.start}")
    except json.JSONDecodeError as err:
        yield reader.invalid(location, f"malformed JSON: {err.msg} at column {err.colno}")
    except RecursionError:
        yield reader.invalid(location, "JSON nested too deeply to read")
    except ValueError as err:  # e.g. an integer of more digits than Python converts (sys.get_int_max_str_digits)
        yield reader.invalid(location, f"unreadable JSON value: {err}")
    else:
        yield reader.document(record, location)


MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}


def sniffed_compression(raw: io.IOBase) -> str | None:
    """gzip or zstd by the file's first bytes, for a compressed file named plain .jsonl (read as it is, not as
    invalid UTF-8)."""
    head = raw.read(4)
    raw.seek(0)
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)


def decompressed(raw: io.IOBase, compression: str | None) -> io.BufferedIOBase:
    """A buffered byte stream whose readline takes a size limit (fsspec's own file objects ignore one)."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw)  # every member of a multi-member file, in order
    if compression == "zstd":
        return io.BufferedReader(ZstdFrames(raw))
    return io.BufferedReader(raw, buffer_size=1 << 20)


class ZstdFrames(io.RawIOBase):
    """zstd frames one after another, decompressed a small input chunk at a time; raises when the input ends
    inside a frame (a stream reader would stop there silently). python-zstandard's decompressobj says where a frame
    ends (``eof``) and hands back the bytes after it (``unused_data``)."""

    def __init__(self, raw: io.IOBase) -> None:
        self.raw, self.decompressor = raw, zstandard.ZstdDecompressor()
        self.frame, self.in_frame, self.pending = self.decompressor.decompressobj(), False, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        while not self.pending:
            chunk = self.raw.read(ZSTD_INPUT_CHUNK)
            if not chunk:
                if self.in_frame:
                    raise zstandard.ZstdError("truncated zstd frame: the file ends inside it")
                return 0
            self.pending = self._decompress(chunk)
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        return size

    def _decompress(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            out.append(self.frame.decompress(chunk))
            self.in_frame = not self.frame.eof
            if self.in_frame:
                break
            chunk = self.frame.unused_data  # the next frame starts here
            self.frame = self.decompressor.decompressobj()
        return b"".join(out)


def bounded_lines(stream: io.BufferedIOBase, limit: int) -> Iterator[bytes | int]:
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
