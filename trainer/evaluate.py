"""Validation loss of a checkpoint on a manifest's shards: every source's rows read once, in order, no sampling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datafactory.trainer.checkpoints import load_checkpoint
from datafactory.trainer.data import IGNORE_INDEX, Phase, Source, open_phase, row_arrays
from datafactory.trainer.model import ModelConfig, Transformer
from datafactory.trainer.train import pick_device


@dataclass(frozen=True)
class SourceLoss:
    """Mean next-token loss (nats) over the tokens read from one source."""

    loss: float
    tokens: int
    rows: int


def load_model(checkpoint: str | Path, device: torch.device) -> Transformer:
    """The model a training checkpoint holds, in eval mode, with the config it was trained with."""
    state = load_checkpoint(checkpoint, device)
    net = Transformer(ModelConfig(**state["run"]["model_config"])).to(device)
    net.load_state_dict(state["model"])
    return net.eval()


def source_batches(source: Source, pad_id: int, batch_size: int,
                   max_rows: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(inputs, targets, doc_ids) over the source's first max_rows rows, shard by shard, the way the
    training loader builds them (targets past a row's valid length and at padding are ignored)."""
    rows = [(shard, row) for shard in range(len(source.shards)) for row in range(source.shards[shard].rows)]
    rows = rows[:max_rows]
    for first in range(0, len(rows), batch_size):
        chunk = rows[first:first + batch_size]
        seq = source.shards[0].tokens.shape[1] - 1
        inputs = np.empty((len(chunk), seq), dtype=np.int64)
        targets = np.empty((len(chunk), seq), dtype=np.int64)
        doc_ids = np.empty((len(chunk), seq), dtype=np.int32)
        for b, (shard_index, row) in enumerate(chunk):
            inputs[b], targets[b], doc_ids[b] = row_arrays(source, shard_index, row, pad_id)
        yield torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(doc_ids)


@torch.no_grad()
def source_loss(net: Transformer, phase: Phase, source: Source, batch_size: int, max_tokens: int,
                device: torch.device) -> SourceLoss:
    pad_id = phase.tokenizer["pad_id"]
    max_rows = max(1, -(-max_tokens // phase.seq_len))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    total, count, rows = torch.zeros((), dtype=torch.float64, device=device), 0, 0
    for inputs, targets, doc_ids in source_batches(source, pad_id, batch_size, max_rows):
        inputs, targets, doc_ids = inputs.to(device), targets.to(device), doc_ids.to(device)
        with autocast:
            logits = net(inputs, doc_ids)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                               reduction="sum")
        total += loss.double()
        count += int((targets != IGNORE_INDEX).sum())
        rows += inputs.shape[0]
    if count == 0:
        raise ValueError(f"source {source.name!r} of {phase.path} has no tokens to evaluate on")
    return SourceLoss(loss=float(total) / count, tokens=count, rows=rows)


def evaluate(manifest_path: str | Path, checkpoint: str | Path, batch_size: int = 16, max_tokens: int = 1_000_000,
             device: str = "auto", allow_outside_root: bool = False) -> dict[str, SourceLoss]:
    """Loss per source of the manifest (weights ignored), reading at most max_tokens positions of each
    source from its first shard on, so every checkpoint sees the same tokens."""
    dev = pick_device(device)
    phase = open_phase(manifest_path, allow_outside_root=allow_outside_root)
    net = load_model(checkpoint, dev)
    if net.config.seq_len < phase.seq_len or net.config.vocab_size < phase.tokenizer["vocab_size"]:
        raise ValueError(f"checkpoint {checkpoint} (seq_len {net.config.seq_len}, vocab {net.config.vocab_size}) "
                         f"cannot read {manifest_path} (seq_len {phase.seq_len}, "
                         f"vocab {phase.tokenizer['vocab_size']})")
    return {source.name: source_loss(net, phase, source, batch_size, max_tokens, dev) for source in phase.sources}
