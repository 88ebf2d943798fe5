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
            yield from row_groups(reader, parquet)
    except (OSError, ValueError) as err:
        yield reader.invalid("file", f"unreadable Parquet: {err}")


def row_groups(reader: RecordReader, parquet: pq.ParquetFile) -> Iterator[dict]:
    """Every row group on its own: a corrupt one is one invalid row naming its rows, and the others are still read.
    Rows are numbered from the file's metadata, so a document's location never depends on a neighbour's damage."""
    first = 0
    for group in range(parquet.num_row_groups):
        end, row_no = first + parquet.metadata.row_group(group).num_rows, first
        try:
            for batch in parquet.iter_batches(batch_size=1024, row_groups=[group]):
                for record in batch.to_pylist():
                    yield reader.document(record, f"row {row_no}")
                    row_no += 1
        except (OSError, ValueError) as err:
            yield reader.invalid(f"row group {group}", f"rows {row_no}-{end - 1} unreadable: {err}")
        first = end
