"""The μP coordinate check (Yang et al., Tensor Programs V): train a few steps at growing widths and watch the
scale of every layer's output. Under μP the scales stay flat as width grows; under standard parametrisation the
logits grow with width, which is why a learning rate tuned on a small proxy does not transfer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from datafactory.trainer.model import ModelConfig, Transformer
from datafactory.trainer.train import build_optimizer, scaled_lr

PARAMETRISATIONS = ("mup", "sp")


@dataclass(frozen=True)
class CoordinateCheck:
    """Mean |activation| per (width, layer) after `steps` Adam steps, and each layer's log-log slope over width."""

    parametrisation: str
    widths: list[int]
    layers: list[str]
    scales: np.ndarray  # (widths, layers)

    def slopes(self) -> dict[str, float]:
        logs = np.log(np.asarray(self.widths, dtype=np.float64))
        return {layer: float(np.polyfit(logs, np.log(self.scales[:, i]), 1)[0])
                for i, layer in enumerate(self.layers)}


def coordinate_check(parametrisation: str, widths: list[int], steps: int = 4, lr: float = 1e-2, seed: int = 0,
                     base: ModelConfig | None = None) -> CoordinateCheck:
    """Every width trains `steps` steps on the same random tokens at the same learning rate (μP scales it per
    layer group from the smallest width); activations are measured on a fixed batch after the last step."""
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(f"parametrisation must be one of {PARAMETRISATIONS}, not {parametrisation!r}")
    base = base or ModelConfig(dim=widths[0], n_layers=2, n_heads=4, vocab_size=256, seq_len=64, attention="sdpa")
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, base.vocab_size, (8, base.seq_len + 1), generator=generator)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    rows, names = [], []
    for width in widths:
        config = dataclasses.replace(base, dim=width,
                                     mup_base_dim=widths[0] if parametrisation == "mup" else None)
        torch.manual_seed(seed)
        model = Transformer(config)
        optimizer = build_optimizer(model, lr, 0.0, torch.device("cpu"))
        for _ in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = scaled_lr(group, lr)
            loss = torch.nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        scales, names = _layer_scales(model, inputs)
        rows.append(scales)
    return CoordinateCheck(parametrisation, list(widths), names, np.asarray(rows))


def _layer_scales(model: Transformer, inputs: torch.Tensor) -> tuple[list[float], list[str]]:
    """Mean |output| of the embedding, every block and the logits, on one batch, without gradients."""
    captured: dict[str, torch.Tensor] = {}
    modules = [("embedding", model.tok_embeddings)] + [(f"block {i}", layer) for i, layer in enumerate(model.layers)]
    hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
             for name, module in modules]
    try:
        with torch.no_grad():
            captured["logits"] = model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    names = [name for name, _ in modules] + ["logits"]
    return [float(captured[name].abs().mean()) for name in names], names
