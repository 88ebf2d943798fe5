"""Training throughput: the trainer's compiled, document-masked decoder vs a plain eager PyTorch GPT of the
same size (written below as the reference), in one process on the same synthetic batches.

    python benchmarks/train_throughput.py                      # CPU: test size, short sequences
    python benchmarks/train_throughput.py --size 125m --seq-len 2048 --batch-size 8 --steps 30

Prints tokens/s and MFU (6N + attention FLOPs per token, over the device's dense bf16 peak) for both and
their ratio. Both models take the same optimizer step (AdamW, grad clip 1.0, bf16 autocast on CUDA);
ours also masks attention per document, which the reference (plain causal attention) does not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from datafactory.trainer.data import Batch
from datafactory.trainer.metrics import peak_flops_for
from datafactory.trainer.model import ModelConfig, Transformer, flops_per_token, load_model_config, param_count
from datafactory.trainer.train import build_optimizer, pick_device, train_step

# ----------------------------------------------------------------------------- the reference: a plain GPT


class GPTBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.fc = nn.Linear(dim, 4 * dim, bias=False)
        self.fc_out = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(dim, dim=2)
        q, k, v = (t.view(batch, seq, self.n_heads, dim // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(batch, seq, dim))
        return x + self.fc_out(F.gelu(self.fc(self.ln_2(x))))


class ReferenceGPT(nn.Module):
    """nanoGPT-shaped: learned positions, LayerNorm, GELU MLP of 4 x dim, tied head; eager, no doc mask."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.dim)
        self.wpe = nn.Embedding(config.seq_len, config.dim)
        self.blocks = nn.ModuleList(GPTBlock(config.dim, config.n_heads) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.head.weight = self.wte.weight
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def reference_flops_per_token(model: ReferenceGPT, config: ModelConfig) -> float:
    matmul = sum(p.numel() for p in model.parameters()) - model.wte.weight.numel() - model.wpe.weight.numel()
    matmul += config.vocab_size * config.dim  # the tied head's matmul
    return 6.0 * matmul + 12.0 * config.n_layers * config.dim * config.seq_len


# ----------------------------------------------------------------------------- data and timing


def synthetic_batches(config: ModelConfig, batch_size: int, count: int,
                      device: torch.device) -> list[Batch]:
    """Random ids, documents of random length (mean seq_len / 4) packed into each row."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        tokens = torch.randint(0, config.vocab_size, (batch_size, config.seq_len + 1), generator=generator)
        starts = torch.rand(batch_size, config.seq_len, generator=generator) < 4 / config.seq_len
        starts[:, 0] = False
        doc_ids = starts.cumsum(dim=1).to(torch.int32)
        sources = torch.zeros(batch_size, dtype=torch.int64)
        batches.append(Batch(tokens[:, :-1], tokens[:, 1:], doc_ids, sources, "stable", {}).to(device))
    return batches


def time_steps(steps: dict[str, Callable[[Batch], object]], batches: list[Batch], warmup: int, rounds: int,
               device: torch.device) -> dict[str, float]:
    """Median seconds per step of each model. After `warmup` untimed steps each (compilation), the models
    take turns over `rounds` chunks of the batches, so a noisy machine slows both alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in steps.values():
        for batch in batches[:warmup]:
            step(batch)
    sync()
    timed = batches[warmup:]
    chunk = max(1, len(timed) // rounds)
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for start in range(0, chunk * rounds, chunk):
        for name, step in steps.items():
            began = time.perf_counter()
            for batch in timed[start:start + chunk]:
                step(batch)
            sync()
            samples[name].append((time.perf_counter() - began) / chunk)
    return {name: statistics.median(values) for name, values in samples.items()}


def our_model(config: ModelConfig, device: torch.device, compile: bool) -> tuple[dict, Callable]:
    torch.manual_seed(0)
    model = Transformer(config).to(device)
    if compile:
        model.compile_layers()
    optimizer = build_optimizer(model, 3e-4, 0.1, device)
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    name = f"datafactory ({'compiled' if compile else 'eager'}, {model.attention_backend(device)} doc mask)"
    info = {"model": name, "params": param_count(config), "flops_per_token": flops_per_token(config)}
    return info, lambda batch: train_step(model, optimizer, batch, 3e-4, 1.0, 1, autocast)


def reference_model(config: ModelConfig, device: torch.device) -> tuple[dict, Callable]:
    torch.manual_seed(0)
    model = ReferenceGPT(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    cuda = device.type == "cuda"

    def step(batch: Batch) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(batch.inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch.targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    params = sum(p.numel() for p in model.parameters())
    info = {"model": "reference GPT (eager, causal SDPA)", "params": params,
            "flops_per_token": reference_flops_per_token(model, config)}
    return info, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default=None, help="test, 125m, 350m (default: test on CPU, 125m on GPU)")
    parser.add_argument("--seq-len", type=int, default=None, help="default: 256 on CPU, 2048 on GPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8")
    parser.add_argument("--vocab-size", type=int, default=32_000)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on CPU, 50 on GPU)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    parser.add_argument("--rounds", type=int, default=5, help="the models alternate over this many chunks")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-compile", action="store_true", help="run our model eagerly too")
    parser.add_argument("--peak-flops", type=float, default=None, help="device peak FLOP/s for MFU")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    size = args.size or ("125m" if gpu else "test")
    seq_len = args.seq_len or (2048 if gpu else 256)
    batch_size = args.batch_size or 8
    steps = args.steps or (50 if gpu else 20)
    vocab = args.vocab_size if size != "test" else min(args.vocab_size, 4096)
    config = load_model_config(size, seq_len=seq_len, vocab_size=vocab)
    peak = args.peak_flops or peak_flops_for(device)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    batches = synthetic_batches(config, batch_size, args.warmup + steps, device)
    tokens_per_step = batch_size * seq_len
    where = f"{device} ({torch.cuda.get_device_name(device)})" if gpu else str(device)
    print(f"{size}: dim {config.dim}, {config.n_layers} layers, {config.n_heads} heads, vocab {vocab}, "
          f"seq_len {seq_len}, batch {batch_size}, {steps} timed steps on {where}")

    models = [our_model(config, device, compile=not args.no_compile), reference_model(config, device)]
    steps_by_name = {info["model"]: step for info, step in models}
    seconds = time_steps(steps_by_name, batches, args.warmup, args.rounds, device)
    results = [info for info, _ in models]
    for result in results:
        result["seconds_per_step"] = seconds[result["model"]]
        result["tokens_per_s"] = tokens_per_step / result["seconds_per_step"]
        result["mfu"] = result["flops_per_token"] * result["tokens_per_s"] / peak if peak else None
    print(f"{'model':<48} {'params':>10} {'tokens/s':>12} {'MFU':>7}")
    for result in results:
        mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "n/a"
        params = result["params"] / 1e6
        print(f"{result['model']:<48} {params:>9.1f}M {result['tokens_per_s']:>12,.0f} {mfu:>7}")
    ours, reference = results
    ratio = ours["tokens_per_s"] / reference["tokens_per_s"]
    print(f"ratio ours / reference: {ratio:.2f}x tokens/s", end="")
    if peak:
        print(f", {ours['mfu'] / reference['mfu']:.2f}x MFU")
    else:
        print(" (MFU needs --peak-flops on this device)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"size": size, "seq_len": seq_len, "batch_size": batch_size, "device": str(device),
                       "results": results, "ratio_tokens_per_s": ratio}, handle, indent=2)


if __name__ == "__main__":
    main()
