"""Manifest loader: hash and root checks, batch contents, determinism, resume, source weights."""

import json

import numpy as np
import pytest
import torch
from support.synthetic import PAD, build_corpus

from datafactory.factory.manifest import ManifestError
from datafactory.factory.shards import read_shard
from datafactory.trainer.data import IGNORE_INDEX, ManifestLoader, document_ids, open_phase


def take(loader: ManifestLoader, n: int) -> list:
    return [next(loader) for _ in range(n)]


def same_batches(a: list, b: list) -> bool:
    return all(
        torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)
        and torch.equal(x.doc_ids, y.doc_ids) and torch.equal(x.sources, y.sources)
        for x, y in zip(a, b, strict=True)
    )


def test_batches_match_the_shard_rows(corpus):
    phase = open_phase(corpus.stable)
    with ManifestLoader(phase, batch_size=16, prefetch=0) as loader:
        batch = next(loader)
    assert batch.inputs.shape == batch.targets.shape == batch.doc_ids.shape == (16, corpus.seq_len)
    assert batch.inputs.dtype == torch.int64 and batch.doc_ids.dtype == torch.int32
    # every row is one shard row: inputs = row[:-1], targets = row[1:] with padding ignored
    rows = {tuple(r) for src in phase.sources for shard in src.shards for r in shard.tokens.astype(np.int64)}
    for inputs, targets in zip(batch.inputs, batch.targets, strict=True):
        full = inputs.tolist() + [targets[-1].item()]
        known = [r for r in rows if list(r[:-1]) == inputs.tolist()]
        assert known, "a batch row is not a shard row"
        valid_targets = targets[targets != IGNORE_INDEX]
        assert valid_targets.tolist() == list(known[0][1:len(valid_targets) + 1])
        assert full[0] == known[0][0]


def test_padding_and_document_ids():
    starts = np.array([0, 3, 7], dtype=np.int32)
    assert document_ids(starts, valid_len=11, length=10).tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert document_ids(starts, valid_len=8, length=10).tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 3, 3]


def test_padded_row_targets_are_ignored(corpus):
    phase = open_phase(corpus.stable)
    loader = ManifestLoader(phase, batch_size=64, prefetch=0)
    seen_padded = False
    for batch in take(loader, 4):
        for inputs, targets in zip(batch.inputs, batch.targets, strict=True):
            pads = (inputs == PAD).nonzero()
            if len(pads):
                seen_padded = True
                first_pad = pads[0].item()  # the row's valid_len is first_pad
                assert (targets[first_pad - 1:] == IGNORE_INDEX).all()
                assert (targets[:first_pad - 1] != IGNORE_INDEX).all()
    assert seen_padded


def test_document_ids_follow_doc_starts(corpus):
    phase = open_phase(corpus.stable)
    shard = read_shard(corpus.root / phase.sources[0].shard_paths[0])
    loader = ManifestLoader(phase, batch_size=8, prefetch=0)
    batch = next(loader)
    # BOS (id 1) opens every document in the synthetic corpus, so ids must step exactly at BOS tokens
    for inputs, doc_ids in zip(batch.inputs, batch.doc_ids, strict=True):
        steps = (doc_ids[1:] != doc_ids[:-1]).nonzero().flatten() + 1
        bos = (inputs == 1).nonzero().flatten()
        bos = bos[bos > 0]
        pad_start = (inputs == PAD).nonzero().flatten()[:1]
        assert set(steps.tolist()) == set(bos.tolist()) | set(pad_start.tolist())
    assert shard.rows == 40


def test_deterministic_and_resumable(corpus):
    first = take(ManifestLoader(corpus.stable, batch_size=8), 12)
    again = take(ManifestLoader(corpus.stable, batch_size=8, prefetch=0), 12)
    assert same_batches(first, again)
    # resume from the state after batch 5 (the prefetch thread has run ahead; the state must not)
    loader = ManifestLoader(corpus.stable, batch_size=8, prefetch=3)
    take(loader, 5)
    state = json.loads(json.dumps(loader.state_dict()))  # a plain, JSON-able dict
    loader.close()
    assert state["step"] == 5
    resumed = take(ManifestLoader(corpus.stable, batch_size=8, state=state), 7)
    assert same_batches(first[5:], resumed)


def test_epochs_wrap_and_cover_every_row(corpus):
    loader = ManifestLoader(corpus.stable, batch_size=32, prefetch=0)
    web_rows = sum(shard.rows for shard in loader.phase.sources[0].shards)
    seen = []
    while len(seen) < 3 * web_rows:
        batch = next(loader)
        seen += [tuple(r.tolist()) for r, s in zip(batch.inputs, batch.sources, strict=True) if s == 0]
    first_epoch = seen[:web_rows]
    assert len(set(first_epoch)) == web_rows  # a permutation: every row once per epoch
    assert seen[web_rows:2 * web_rows] != first_epoch  # and a new order the next epoch
    assert loader.state_dict()["sources"]["web"]["cursor"] == len(seen)


def test_source_weights_are_respected(tmp_path):
    corpus = build_corpus(tmp_path, stable_weights={"web": 0.8, "code": 0.2})
    loader = ManifestLoader(corpus.stable, batch_size=50)
    picks = torch.cat([batch.sources for batch in take(loader, 40)])
    loader.close()
    assert abs((picks == 0).float().mean().item() - 0.8) < 0.03


def test_zero_weight_source_is_never_read(tmp_path):
    corpus = build_corpus(tmp_path, stable_weights={"web": 1.0, "code": 0.0})
    loader = ManifestLoader(corpus.stable, batch_size=32, prefetch=0)
    assert all((batch.sources == 0).all() for batch in take(loader, 5))


def test_refuses_a_shard_whose_hash_differs(corpus):
    shard = corpus.root / "shards" / "code-000.arrow"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="shards/code-000.arrow: sha256 differs"):
        open_phase(corpus.stable)


def test_refuses_a_different_tokenizer(corpus):
    (corpus.root / "tokenizer" / "tok.model").write_bytes(b"another tokenizer")
    with pytest.raises(ManifestError, match="tokenizer/tok.model: sha256 differs"):
        open_phase(corpus.stable)


def test_refuses_paths_leaving_the_root(corpus, tmp_path):
    manifest = json.loads(corpus.stable.read_text())
    outside = tmp_path / "elsewhere.arrow"
    outside.write_bytes((corpus.root / "shards" / "code-000.arrow").read_bytes())
    manifest["sources"][1]["shards"][0]["path"] = "../elsewhere.arrow"
    escaped = corpus.stable.with_name("escaped.json")
    escaped.write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"\.\./elsewhere\.arrow leaves the build directory"):
        open_phase(escaped)
    assert open_phase(escaped, allow_outside_root=True).sources[1].rows == 32


def test_state_of_another_manifest_is_refused(corpus):
    stable = ManifestLoader(corpus.stable, batch_size=4, prefetch=0)
    next(stable)
    with pytest.raises(ManifestError, match="phase 'stable'"):
        ManifestLoader(corpus.anneal, batch_size=4, state=stable.state_dict())


def test_anneal_inherits_cursors_of_shared_sources(corpus):
    stable = ManifestLoader(corpus.stable, batch_size=16, prefetch=0)
    take(stable, 3)
    anneal = ManifestLoader(corpus.anneal, batch_size=16, inherit=stable.state_dict(), prefetch=0)
    cursors = anneal.state_dict()["sources"]
    assert cursors["web"]["cursor"] == stable.state_dict()["sources"]["web"]["cursor"] > 0
    assert cursors["hq"]["cursor"] == 0


def test_errors_in_the_prefetch_thread_reach_the_caller(corpus):
    loader = ManifestLoader(corpus.stable, batch_size=4)
    loader.vocab_size = 3  # every row now holds out-of-vocabulary ids
    with pytest.raises(ManifestError, match="outside the vocabulary"):
        next(loader)
