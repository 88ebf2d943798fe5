"""Parquet input: one document per row, read a batch at a time; a file without the text column is one invalid row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import fsspec
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from datafactory.pipelines.readers import RecordReader


def parquet_rows(reader: RecordReader) -> Iterator[dict]:
    try:
        with fsspec.open(reader.path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            if reader.spec.text_field not in parquet.schema_arrow.names:
                yield reader.invalid("file", f"no column {reader.spec.text_field!r} in Parquet schema")
                return
            row_no = 0
            for batch in parquet.iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    yield reader.document(record, f"row {row_no}")
                    row_no += 1
    except (OSError, ValueError) as err:
        yield reader.invalid("file", f"unreadable Parquet: {err}")
