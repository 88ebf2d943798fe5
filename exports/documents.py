"""The documents of a manifest phase, as the token sequences the packer laid into its shards: each one `[bos] ids
[eos]`, cut back out of the packed rows, with a document the packer split across two consecutive shards of a stream
joined again. Nothing is re-tokenized."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datafactory.factory.manifest import ManifestError, check_manifest_files, load_manifest
from datafactory.factory.shards import read_shard

_SHARD_NAME = re.compile(r"part(\d+)-(\d+)\.arrow")


@dataclass(frozen=True)
class PhaseSource:
    """One mixture component of a phase: its name, blend weight, planned tokens and shards (absolute paths)."""

    name: str
    weight: float
    planned_tokens: int
    shards: list[Path]


@dataclass(frozen=True)
class Phase:
    path: Path
    manifest: dict
    sources: list[PhaseSource]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16) if self.manifest["tokenizer"]["vocab_size"] <= 1 << 16 else np.dtype(np.uint32)


def open_phase(manifest_path: str | Path) -> Phase:
    """The manifest, validated, with every shard checked against its sha256 before anything is read."""
    manifest, root = load_manifest(manifest_path)
    if problems := check_manifest_files(manifest, root):
        raise ManifestError(f"manifest {manifest_path} does not match the files under {root}: {problems[0]}"
                            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    sources = [PhaseSource(entry["name"], float(entry["weight"]), int(entry["planned_tokens"]),
                           [root / item["path"] for item in entry["shards"]]) for entry in manifest["sources"]]
    return Phase(Path(manifest_path), manifest, sources)


def _follows(previous: Path | None, shard: Path) -> bool:
    """Whether `shard` is the next shard of `previous`'s stream (same folder and part, shard number + 1)."""
    if previous is None or previous.parent != shard.parent:
        return False
    before, after = _SHARD_NAME.fullmatch(previous.name), _SHARD_NAME.fullmatch(shard.name)
    return bool(before and after and before.group(1) == after.group(1)
                and int(after.group(2)) == int(before.group(2)) + 1)


def shard_pieces(path: Path, bos: int) -> list[np.ndarray]:
    """The shard's valid tokens cut where documents start; a first piece not starting with bos continues the previous
    shard's last document. A row boundary is recorded as a start too (0 is always among a row's starts), so only a
    recorded start holding bos begins a document."""
    shard = read_shard(path)
    width = shard.tokens.shape[1]  # every row but the last is full, so row r's tokens start at r * width
    flat = np.concatenate([shard.tokens[row, :shard.valid_len[row]] for row in range(shard.rows)]) \
        if shard.rows else np.empty(0, shard.tokens.dtype)
    cuts = sorted({row * width + start for row in range(shard.rows) for start in shard.starts(row)
                   if 0 < row * width + start < len(flat) and flat[row * width + start] == bos})
    return [piece for piece in np.split(flat, cuts) if len(piece)]


def source_documents(source: PhaseSource, bos: int) -> Iterator[np.ndarray]:
    """Every document of the source's shards in manifest order, split ones joined."""
    pending: np.ndarray | None = None
    previous: Path | None = None
    for shard in source.shards:
        pieces = shard_pieces(shard, bos)
        if pieces and pieces[0][0] != bos and pending is not None and _follows(previous, shard):
            pieces[0] = np.concatenate([pending, pieces[0]])
        elif pending is not None:
            yield pending
        pending = None
        if pieces:
            *whole, pending = pieces
            yield from whole
        previous = shard
    if pending is not None:
        yield pending
