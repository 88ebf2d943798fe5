"""μP: the coordinate check holds (activation scales flat in width under μP, growing under standard
parametrisation), hidden matrices learn at lr / width_mult, and a μP model trains like any other."""

import dataclasses

import pytest
import torch

from datafactory.trainer.model import ModelConfig, Transformer
from datafactory.trainer.mup import coordinate_check
from datafactory.trainer.train import build_optimizer, train

WIDTHS = [32, 64, 128, 256]


def test_coordinate_check_is_flat_under_mup_and_grows_under_standard_parametrisation():
    mup = coordinate_check("mup", WIDTHS).slopes()
    standard = coordinate_check("sp", WIDTHS).slopes()
    assert all(abs(slope) < 0.3 for slope in mup.values()), mup
    assert standard["block 1"] > 1.0 and standard["logits"] > 0.5, standard


def test_mup_scales_hidden_learning_rates_init_and_logits():
    base = ModelConfig(dim=32, n_heads=4, vocab_size=64, seq_len=16, attention="sdpa", mup_base_dim=32)
    wide = dataclasses.replace(base, dim=128)
    assert wide.width_mult == 4.0 and wide.attention_scale == 1 / 32
    model = Transformer(wide)
    groups = build_optimizer(model, 1e-2, 0.1, torch.device("cpu")).param_groups
    hidden = {id(p) for p in model.hidden_matrices()}
    assert [group["lr_scale"] for group in groups] == [0.25, 1.0, 1.0]
    assert {id(p) for p in groups[0]["params"]} == hidden and id(model.tok_embeddings.weight) not in hidden
    assert model.layers[0].attention.wq.weight.std().item() == pytest.approx(0.02 / 2, rel=0.1)
    assert model.tok_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert len(build_optimizer(Transformer(dataclasses.replace(wide, mup_base_dim=None)), 1e-2, 0.1,
                               torch.device("cpu")).param_groups) == 2  # standard: unchanged


def test_a_mup_model_trains_and_resumes(corpus, tmp_path):
    config = tmp_path / "mup.yaml"
    config.write_text("preset: test\ndim: 128\nmup_base_dim: 64\n")
    run = tmp_path / "run"
    options = {"model": config, "batch_size": 8, "compile": False, "device": "cpu", "log_every": 4}
    first = train(corpus.stable, out_dir=run, max_steps=12, checkpoint_every=6, **options)
    assert first.losses[-1] < first.first_loss - 0.5
    again = train(corpus.stable, out_dir=tmp_path / "again", max_steps=6, checkpoint_every=6, **options)
    resumed = train(corpus.stable, out_dir=tmp_path / "again", max_steps=12, checkpoint_every=6, **options)
    assert resumed.losses[-1] == pytest.approx(first.losses[-1], rel=1e-5) and again.steps == 6
