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
