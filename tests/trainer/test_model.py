"""The decoder: document masking (flex and SDPA agree with running each document alone), config loading,
FLOP accounting."""

import json
import warnings

import pytest
import torch

from datafactory.trainer.model import (
    ModelConfig,
    Transformer,
    dense_document_mask,
    flex_available,
    flops_per_token,
    load_model_config,
    param_count,
)


def doc_ids_for(lengths: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), i, dtype=torch.int32) for i, n in enumerate(lengths)])


def per_document_logits(model: Transformer, tokens: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Each document run on its own, from position 0, with a plain causal mask."""
    pieces, start = [], 0
    for n in lengths:
        pieces.append(model(tokens[:, start:start + n]))
        start += n
    return torch.cat(pieces, dim=1)


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_documents_do_not_attend_across_boundaries(backend):
    if backend == "flex" and not flex_available():
        pytest.skip("FlexAttention is not available in this torch")
    torch.manual_seed(0)
    config = load_model_config("test", vocab_size=50, seq_len=48, attention=backend)
    model = Transformer(config).eval()
    rows = [[5, 20, 3, 20], [48], [1, 47]]  # document lengths per row
    tokens = torch.randint(0, 50, (len(rows), 48))
    doc_ids = torch.stack([doc_ids_for(lengths) for lengths in rows])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager flex on CPU warns that it is unfused
        packed = model(tokens, doc_ids)
        for row, lengths in enumerate(rows):
            alone = per_document_logits(model, tokens[row:row + 1], lengths)
            torch.testing.assert_close(packed[row:row + 1], alone, atol=2e-5, rtol=1e-4)
        # and the mask matters: without it a later document sees the earlier one
        unmasked = model(tokens[:1])
    assert not torch.allclose(unmasked[0, 5:], packed[0, 5:], atol=1e-3)


def test_dense_mask_is_causal_and_per_document():
    mask = dense_document_mask(doc_ids_for([2, 3])[None])[0, 0]
    expected = torch.tensor([
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("preset", ["test", "125m", "350m", "1b"])
def test_param_count_matches_the_module(preset):
    config = load_model_config(preset, vocab_size=512, seq_len=128) if preset != "test" else load_model_config(preset)
    if preset in ("350m", "1b"):  # building them takes a few seconds; check the formula on shapes instead
        config = load_model_config(config, n_layers=1)
    model = Transformer(config)
    assert param_count(config) == sum(p.numel() for p in model.parameters())


def test_preset_sizes_and_flops():
    sizes = {name: param_count(load_model_config(name)) / 1e6 for name in ("125m", "350m", "1b")}
    assert 100 < sizes["125m"] < 140 and 300 < sizes["350m"] < 400 and 900 < sizes["1b"] < 1300
    config = load_model_config("125m")
    matmul = param_count(config, include_embedding=False) + config.vocab_size * config.dim
    assert flops_per_token(config) == 6 * matmul + 12 * config.n_layers * config.dim * config.seq_len


def test_config_from_json_and_yaml(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"preset": "125m", "n_layers": 6}))
    config = load_model_config(tmp_path / "m.json", vocab_size=1000)
    assert (config.dim, config.n_layers, config.vocab_size) == (768, 6, 1000)
    (tmp_path / "m.yaml").write_text("dim: 128\nn_layers: 3\nn_heads: 4\ntie_embeddings: false\n")
    config = load_model_config(tmp_path / "m.yaml")
    assert (config.dim, config.n_layers, config.tie_embeddings) == (128, 3, False)
    assert Transformer(load_model_config(config, vocab_size=40, seq_len=16)).output.weight.shape == (40, 128)
    (tmp_path / "bad.json").write_text(json.dumps({"dims": 128}))
    with pytest.raises(ValueError, match="dims"):
        load_model_config(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="neither a preset"):
        load_model_config("7b")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(dim=64, n_heads=4, n_kv_heads=3)
