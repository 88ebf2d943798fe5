"""Document and ledger record schemas, stable document ids, and the ledger's terminal statuses."""

from __future__ import annotations

import hashlib
import re

import pyarrow as pa

KEPT, DROPPED, DUPLICATE, INVALID = "kept", "dropped", "duplicate", "invalid"

# Columns every stage output carries; stages append their own, then `keep` and `reason`.
DOCUMENT_FIELDS = [
    pa.field("doc_id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("input_file", pa.string()),
    pa.field("location", pa.string()),  # "line 12" / "row 7" / "offset 4096": where in input_file
    pa.field("url", pa.string()),
    pa.field("date", pa.string()),
    pa.field("meta", pa.string()),  # JSON object of the input record's other fields
    pa.field("text", pa.string()),
]
# Every stage ends its rows with its decision: keep, the reason for a drop, and the measured value behind it
# (e.g. the langid score or the failing rule's signal), so the funnel can be read by rule and by value.
DECISION_FIELDS = [pa.field("keep", pa.bool_()), pa.field("reason", pa.string()), pa.field("detail", pa.float64())]
DECISION_COLUMNS = tuple(field.name for field in DECISION_FIELDS)

LEDGER_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("input_file", pa.string()),
        ("location", pa.string()),
        ("status", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.float64()),
        ("duplicate_of", pa.string()),
    ]
)


def stable_doc_id(source: str, input_file: str, location: str) -> str:
    """Id for records without one: identical across reruns because it hashes only where the record is."""
    digest = hashlib.sha256(f"{source}\x00{input_file}\x00{location}".encode()).hexdigest()
    return f"{source}-{digest[:20]}"


_NUMBER = re.compile(r"\d+")


def input_order(row: dict) -> tuple[str, int, str]:
    """Where a row's record sits in the input: file, then line / row / offset as a number (so line 9 < line 10)."""
    location = row.get("location") or ""
    number = _NUMBER.search(location)
    return row.get("input_file") or "", int(number.group()) if number else -1, location


def stage_schema(previous: pa.Schema | None, added: list[pa.Field], consumed: tuple[str, ...] = ()) -> pa.Schema:
    """Schema of a stage's output: the previous stage's columns (minus its decision and what it consumed) + its
    own + decision."""
    base = list(DOCUMENT_FIELDS) if previous is None else [
        field for field in previous if field.name not in DECISION_COLUMNS and field.name not in consumed
    ]
    return pa.schema(base + added + DECISION_FIELDS)


def ledger_row(row: dict, status: str, stage: str) -> dict:
    return {
        "doc_id": row["doc_id"],
        "source": row["source"],
        "input_file": row["input_file"],
        "location": row.get("location"),
        "status": status,
        "stage": stage,
        "reason": row.get("reason"),
        "detail": row.get("detail"),
        "duplicate_of": row.get("duplicate_of"),
    }
