"""Packing documents into fixed-width rows keeps every token and records where documents start."""

import numpy as np

from datafactory.pipelines.tokenize import pack

BOS, EOS, PAD = 1, 2, 3


def test_pack_rows_boundaries_and_padding():
    docs = [np.arange(10, 15, dtype=np.uint32), np.arange(20, 27, dtype=np.uint32), np.array([30], np.uint32)]
    rows = pack(docs, width=8, bos=BOS, eos=EOS, pad=PAD)
    flat = rows.tokens.reshape(-1)
    expected = [BOS, *range(10, 15), EOS, BOS, *range(20, 27), EOS, BOS, 30, EOS]
    assert flat[: len(expected)].tolist() == expected
    assert (flat[len(expected):] == PAD).all()
    assert rows.tokens.shape == (3, 8)
    assert rows.valid_len.tolist() == [8, 8, len(expected) - 16]
    # row 1 continues the second document; row 2 starts the third, then padding
    assert rows.doc_starts == [[0, 7], [0], [0]]


def test_pack_empty():
    rows = pack([], width=4, bos=BOS, eos=EOS, pad=PAD)
    assert rows.tokens.shape == (0, 4)


def test_every_document_is_found_where_the_tokenize_view_says_it_starts(reference_build):
    from datafactory.factory.catalog import query
    from datafactory.factory.shards import read_shard
    from datafactory.pipelines.tokenizer import load_info

    bos = load_info(reference_build).bos_id
    _, docs = query(reference_build, "SELECT shard, first_row, \"offset\", n_tokens FROM tokenize WHERE keep")
    shards = {path: read_shard(reference_build / path) for path in {shard for shard, *_ in docs}}
    assert docs
    for path, first_row, offset, _ in docs:
        shard = shards[path]
        assert shard.tokens[first_row][offset] == bos and offset in shard.starts(first_row)
    for path, shard in shards.items():  # and no other document starts in the shard
        starts = sorted((row, offset) for shard_path, row, offset, _ in docs if shard_path == path)
        assert starts == [(int(row), int(offset)) for row, offset in np.argwhere(shard.tokens == bos)]
