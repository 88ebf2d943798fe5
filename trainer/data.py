"""Manifest-driven batches over memory-mapped shards: verified, weighted by source, deterministic, resumable.

Each batch row picks a source by the phase weights (numpy Generator seeded from the manifest seed);
each source walks its rows in a permuted order that is fixed per (seed, source, epoch). The loader's
state is a plain dict, and a loader built from a saved state yields exactly the batches that followed.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datafactory.factory.manifest import ManifestError, check_manifest_files, load_manifest
from datafactory.factory.shards import Shard, read_shard

IGNORE_INDEX = -100
STATE_VERSION = 1


# ----------------------------------------------------------------------------- one phase, opened


@dataclass
class Source:
    """One source of a phase: its weight and its shards, addressed as one run of rows."""

    name: str
    weight: float
    shards: list[Shard]
    shard_paths: list[str]
    fingerprint: str  # hash of the shard sha256s: equal fingerprints mean the same rows in the same order
    row_offsets: np.ndarray = field(init=False)  # row_offsets[i] = first global row of shard i
    starts: list[tuple[np.ndarray, np.ndarray]] = field(init=False)  # per shard: (list offsets, values)

    def __post_init__(self) -> None:
        self.row_offsets = np.cumsum([0] + [shard.rows for shard in self.shards])
        self.starts = [
            (shard.doc_starts.offsets.to_numpy(), shard.doc_starts.values.to_numpy()) for shard in self.shards
        ]

    @property
    def rows(self) -> int:
        return int(self.row_offsets[-1])

    def locate(self, row: int) -> tuple[int, int]:
        shard = int(np.searchsorted(self.row_offsets, row, side="right")) - 1
        return shard, row - int(self.row_offsets[shard])


@dataclass
class Phase:
    """A loaded, validated and hash-checked manifest with its shards memory-mapped."""

    path: Path
    manifest: dict
    root: Path
    sources: list[Source]

    @property
    def name(self) -> str:
        return self.manifest["phase"]

    @property
    def seq_len(self) -> int:
        return self.manifest["seq_len"]

    @property
    def seed(self) -> int:
        return self.manifest["seed"]

    @property
    def tokenizer(self) -> dict:
        return self.manifest["tokenizer"]

    @property
    def lr_schedule(self) -> dict:
        return self.manifest["lr_schedule"]

    @property
    def next_phase(self) -> Path | None:
        rel = self.manifest.get("next_phase")
        return (self.path.parent / rel) if rel else None

    @property
    def source_names(self) -> list[str]:
        return [source.name for source in self.sources]


def open_phase(path: str | Path, allow_outside_root: bool = False, verify: bool = True) -> Phase:
    """Validate a manifest, check the tokenizer's and every shard's sha256 (before reading any of them),
    then memory-map the shards and check them against what the manifest says they hold."""
    path = Path(path)
    manifest, root = load_manifest(path, allow_outside_root=allow_outside_root)
    if verify and (problems := check_manifest_files(manifest, root)):
        listing = "\n  ".join(problems)
        raise ManifestError(f"manifest {path} does not match the files under {root}:\n  {listing}")
    seq_len, tokenizer_sha = manifest["seq_len"], manifest["tokenizer"]["sha256"]
    sources = []
    for entry in manifest["sources"]:
        shards, paths = [], []
        for item in entry["shards"]:
            shard = read_shard(root / item["path"])
            _check_shard(shard, item, seq_len, tokenizer_sha, path)
            shards.append(shard)
            paths.append(item["path"])
        fingerprint = hashlib.sha256("".join(item["sha256"] for item in entry["shards"]).encode()).hexdigest()
        source = Source(entry["name"], float(entry["weight"]), shards, paths, fingerprint[:16])
        if source.weight > 0 and source.rows == 0:
            raise ManifestError(f"manifest {path}: source {source.name!r} has weight {source.weight} "
                                "but no rows")
        sources.append(source)
    return Phase(path=path, manifest=manifest, root=root, sources=sources)


def _check_shard(shard: Shard, item: dict, seq_len: int, tokenizer_sha: str, manifest: Path) -> None:
    where = f"manifest {manifest}: shard {item['path']}"
    if int(shard.metadata.get("seq_len", -1)) != seq_len:
        raise ManifestError(f"{where} has seq_len {shard.metadata.get('seq_len')}, "
                            f"the manifest says {seq_len}")
    if shard.rows != item["rows"]:
        raise ManifestError(f"{where} has {shard.rows} rows, the manifest says {item['rows']}")
    shard_tokenizer = shard.metadata.get("tokenizer_sha256")
    if shard_tokenizer is not None and shard_tokenizer != tokenizer_sha:
        raise ManifestError(f"{where} was tokenized with tokenizer {shard_tokenizer[:12]}..., "
                            f"the manifest names {tokenizer_sha[:12]}...")


# ----------------------------------------------------------------------------- batches


@dataclass
class Batch:
    """inputs/targets/doc_ids are (B, seq_len); sources is (B,). state: the loader state after this batch."""

    inputs: torch.Tensor  # int64 token ids
    targets: torch.Tensor  # int64, next token; IGNORE_INDEX at padding and beyond valid_len
    doc_ids: torch.Tensor  # int32 document index per position (padding gets an id of its own)
    sources: torch.Tensor  # int64 index into the phase's sources, per row
    phase: str
    state: dict
    origins: list[tuple[str, int]] = field(default_factory=list)  # per row: its shard (manifest-relative) and row

    def to(self, device: torch.device | str) -> Batch:
        move = {"device": device, "non_blocking": True}
        return Batch(self.inputs.to(**move), self.targets.to(**move), self.doc_ids.to(**move),
                     self.sources.to(**move), self.phase, self.state, self.origins)


def row_arrays(source: Source, shard_index: int, row: int, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One packed row as the model sees it: inputs, targets (ignored past the row's valid length and at padding) and
    the document id of every position, for masking attention across documents."""
    shard = source.shards[shard_index]
    tokens = shard.tokens[row].astype(np.int64)
    valid = int(shard.valid_len[row])
    offsets, values = source.starts[shard_index]
    targets = tokens[1:].copy()
    targets[max(valid - 1, 0):] = IGNORE_INDEX  # target j is token j + 1
    if pad_id >= 0:
        targets[targets == pad_id] = IGNORE_INDEX
    return tokens[:-1], targets, document_ids(values[offsets[row]:offsets[row + 1]], valid, len(tokens) - 1)


def document_ids(starts: np.ndarray, valid_len: int, length: int) -> np.ndarray:
    """Document index of each of `length` positions from a row's start offsets; positions at or past
    valid_len (padding) form a document of their own, so they never mix with real text."""
    marks = np.zeros(length, dtype=np.int32)
    marks[starts[(starts > 0) & (starts < length)]] = 1
    ids = np.cumsum(marks, dtype=np.int32)
    if valid_len < length:
        ids[valid_len:] = ids[max(valid_len - 1, 0)] + 1
    return ids


class ManifestLoader:
    """Infinite iterator of Batches for one phase, prefetched by a background thread.

    `state` resumes from `state_dict()` of an earlier loader over the same manifest. `inherit` is the
    state of the previous phase's loader: a source that appears in both phases with the same shards and
    seed continues from where the previous phase left it instead of starting over.
    """

    def __init__(self, phase: Phase | str | Path, batch_size: int, state: dict | None = None, *,
                 inherit: dict | None = None, prefetch: int = 2, pin_memory: bool = False):
        self.phase = phase if isinstance(phase, Phase) else open_phase(phase)
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.pin_memory = pin_memory
        self.vocab_size = self.phase.tokenizer["vocab_size"]
        self.pad_id = self.phase.tokenizer["pad_id"]
        weights = np.array([source.weight for source in self.phase.sources], dtype=np.float64)
        self._weights = weights / weights.sum()
        self._orders: dict[tuple[int, int], np.ndarray] = {}
        # Producer state: advanced by whichever thread builds batches, snapshotted into each Batch.
        self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.phase.seed, 0x5EED])))
        self._cursors = [0] * len(self.phase.sources)
        self._step = 0
        if inherit is not None:
            self._inherit(inherit)
        if state is not None:
            self._load(state)
        self._consumed_state = self._snapshot()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- state

    def _snapshot(self) -> dict:
        return {
            "version": STATE_VERSION,
            "phase": self.phase.name,
            "seed": self.phase.seed,
            "step": self._step,
            "rng": self._rng.bit_generator.state,
            "sources": {
                source.name: {"cursor": cursor, "fingerprint": source.fingerprint}
                for source, cursor in zip(self.phase.sources, self._cursors, strict=True)
            },
        }

    def state_dict(self) -> dict:
        """State after the last batch handed out (batches still in the prefetch queue do not count)."""
        return self._consumed_state

    def _load(self, state: dict) -> None:
        where = f"loader state for manifest {self.phase.path}"
        if state.get("version") != STATE_VERSION:
            raise ManifestError(f"{where}: unknown state version {state.get('version')}")
        if (state["phase"], state["seed"]) != (self.phase.name, self.phase.seed):
            raise ManifestError(f"{where}: state is for phase {state['phase']!r} seed {state['seed']}, "
                                f"the manifest is phase {self.phase.name!r} seed {self.phase.seed}")
        saved = state["sources"]
        if sorted(saved) != sorted(self.phase.source_names):
            raise ManifestError(f"{where}: state has sources {sorted(saved)}, "
                                f"the manifest {sorted(self.phase.source_names)}")
        for i, source in enumerate(self.phase.sources):
            if saved[source.name]["fingerprint"] != source.fingerprint:
                raise ManifestError(f"{where}: the shards of source {source.name!r} changed since "
                                    "the state was saved")
            self._cursors[i] = int(saved[source.name]["cursor"])
        self._rng.bit_generator.state = state["rng"]
        self._step = int(state["step"])

    def _inherit(self, previous: dict) -> None:
        if previous.get("seed") != self.phase.seed:
            return
        for i, source in enumerate(self.phase.sources):
            before = previous.get("sources", {}).get(source.name)
            if before is not None and before["fingerprint"] == source.fingerprint:
                self._cursors[i] = int(before["cursor"])

    # -- producing batches

    def _order(self, source_index: int, epoch: int) -> np.ndarray:
        """Row order of one source in one epoch: a permutation fixed by (seed, source name, epoch)."""
        key = (source_index, epoch)
        if key not in self._orders:
            source = self.phase.sources[source_index]
            name_key = zlib.crc32(source.name.encode())
            seeds = np.random.SeedSequence([self.phase.seed, name_key, epoch])
            rng = np.random.Generator(np.random.PCG64(seeds))
            self._orders = {k: v for k, v in self._orders.items() if k[0] != source_index}
            self._orders[key] = rng.permutation(source.rows)
        return self._orders[key]

    def _next_row(self, source_index: int) -> tuple[Source, int, int]:
        source = self.phase.sources[source_index]
        cursor = self._cursors[source_index]
        self._cursors[source_index] += 1
        epoch, position = divmod(cursor, source.rows)
        shard, row = source.locate(int(self._order(source_index, epoch)[position]))
        return source, shard, row

    def _produce(self) -> Batch:
        batch, seq = self.batch_size, self.phase.seq_len
        picks = self._rng.choice(len(self.phase.sources), size=batch, p=self._weights)
        inputs = np.empty((batch, seq), dtype=np.int64)
        targets = np.empty((batch, seq), dtype=np.int64)
        doc_ids = np.empty((batch, seq), dtype=np.int32)
        origins = []
        for b, source_index in enumerate(picks):
            source, shard_index, row = self._next_row(int(source_index))
            origins.append((source.shard_paths[shard_index], row))
            top = int(source.shards[shard_index].tokens[row].max(initial=0))
            if top >= self.vocab_size:
                raise ManifestError(f"shard {source.shard_paths[shard_index]} row {row}: token id "
                                    f"{top} is outside the vocabulary of {self.vocab_size}")
            inputs[b], targets[b], doc_ids[b] = row_arrays(source, shard_index, row, self.pad_id)
        self._step += 1
        tensors = [torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(doc_ids),
                   torch.from_numpy(picks.astype(np.int64))]
        if self.pin_memory:
            tensors = [tensor.pin_memory() for tensor in tensors]
        return Batch(*tensors, phase=self.phase.name, state=self._snapshot(), origins=origins)

    # -- iteration with a background prefetch thread

    def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                item: Any = self._produce()
            except BaseException as err:  # handed to the consumer, which raises it
                item = err
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def __iter__(self) -> ManifestLoader:
        return self

    def __next__(self) -> Batch:
        if self._stop.is_set():
            raise RuntimeError(f"loader over {self.phase.path} is closed")
        if self.prefetch <= 0:
            batch = self._produce()
        else:
            if self._thread is None:
                self._queue = queue.Queue(maxsize=self.prefetch)
                self._thread = threading.Thread(target=self._worker, name="manifest-loader", daemon=True)
                self._thread.start()
            batch = self._queue.get()
            if isinstance(batch, BaseException):
                self.close()
                raise batch
        self._consumed_state = batch.state
        return batch

    def close(self) -> None:
        """Stop the prefetch thread; the loader cannot be iterated afterwards."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ManifestLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
