"""Evaluation sets as items to keep out of the corpus: JSON Lines (optionally .gz / .zst) or Parquet, one item per
record, each configured field's text; a file that cannot be read is one error naming the file and the place.
Light on purpose: the build's preflight reads every eval set before any stage runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datafactory.factory.config import DecontaminateConfig, EvalSetSpec
from datafactory.factory.errors import UserError
from datafactory.filters.quality_train import open_bytes


class EvalSetError(UserError, ValueError):
    """An eval set that cannot be read, with the file and the place in it named."""


@dataclass(frozen=True)
class EvalItem:
    eval_set: str
    item_id: str
    fields: tuple[str, ...]  # the text of each configured field, in the config's order


def field_text(value: object) -> str:
    """A field's text: lists (answer choices) and mappings joined by spaces, numbers written out."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(field_text(part) for part in value)
    if isinstance(value, dict):
        return " ".join(field_text(part) for part in value.values())
    return str(value)


def _records(path: Path) -> Iterator[tuple[str, object]]:
    """(place, record) from Parquet (rows) or JSON Lines (optionally .gz / .zst)."""
    if path.suffix == ".parquet":
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for record in batch.to_pylist():
                yield f"row {number}", record
                number += 1
        return
    with open_bytes(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                raise EvalSetError(f"{path}: line {number}: not UTF-8 text") from None
            except json.JSONDecodeError as err:
                raise EvalSetError(f"{path}: line {number}: malformed JSON ({err.msg})") from None


def read_eval_set(spec: EvalSetSpec, path: str | Path) -> list[EvalItem]:
    """The items of one eval set; an item lacking a field has it empty, a field no item has is an error."""
    path = Path(path)
    if not path.is_file():
        raise EvalSetError(f"eval set {spec.name}: file not found: {path}")
    items, seen = [], set()
    try:
        for place, record in _records(path):
            if not isinstance(record, dict):
                raise EvalSetError(f"{path}: {place}: not a JSON object")
            seen |= record.keys()
            item_id = record.get(spec.id_field)
            items.append(EvalItem(spec.name, str(item_id) if item_id is not None else place,
                                  tuple(field_text(record.get(name)) for name in spec.fields)))
    except (OSError, pa.ArrowException) as err:
        raise EvalSetError(f"{path}: unreadable ({err})") from None
    if missing := [name for name in spec.fields if name not in seen] if items else []:
        raise EvalSetError(f"{path}: no item has the field(s) {', '.join(missing)}; "
                           f"fields found: {', '.join(sorted(seen)[:12])}")
    return items


def read_eval_sets(config: DecontaminateConfig, resolve: Callable[[str], str]) -> list[EvalItem]:
    """Every configured eval set's items; `resolve` turns a config path into a file path."""
    return [item for spec in config.eval_sets for item in read_eval_set(spec, resolve(spec.path))]
