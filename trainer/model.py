"""Llama-style decoder (RMSNorm, RoPE, SwiGLU, grouped-query attention) with document-masked attention.

Attention runs on FlexAttention with a block mask built from per-position document ids (causal AND
same document); where FlexAttention cannot train (no backward on CPU, or not importable) it falls
back to scaled_dot_product_attention with the same mask as an explicit boolean tensor.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

try:  # FlexAttention arrived in torch 2.5; keep the module importable without it.
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
except ImportError:  # pragma: no cover - depends on the installed torch
    BlockMask = create_block_mask = flex_attention = None

log = logging.getLogger(__name__)

ATTENTION_BACKENDS = ("auto", "flex", "sdpa")


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the decoder. vocab_size and seq_len usually come from the manifest."""

    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: as many as n_heads (plain multi-head attention)
    ffn_multiple: int = 32  # SwiGLU hidden size is rounded up to a multiple of this
    ffn_dim_multiplier: float = 1.0  # scales the default 8/3 * dim hidden size (Llama 3 uses 1.3-1.5)
    vocab_size: int = 256
    seq_len: int = 64
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    rope_theta: float = 10_000.0
    init_std: float = 0.02
    attention: str = "auto"  # auto | flex | sdpa
    # μP (maximal update parametrisation, for Adam): widths count relative to this base width; hidden matrices get
    # init std / sqrt(width / base) and learning rate / (width / base), logits are divided by width / base and
    # attention scores scaled by 1 / head_dim, so settings tuned at the base width transfer. None: standard.
    mup_base_dim: int | None = None

    def __post_init__(self) -> None:
        kv_heads = self.kv_heads
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not divisible by n_kv_heads {kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.mup_base_dim is not None and self.mup_base_dim <= 0:
            raise ValueError(f"mup_base_dim must be positive, not {self.mup_base_dim}")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention must be one of {ATTENTION_BACKENDS}, not {self.attention!r}")

    @property
    def width_mult(self) -> float:
        """dim / mup_base_dim under μP; 1 under standard parametrisation."""
        return self.dim / self.mup_base_dim if self.mup_base_dim else 1.0

    @property
    def attention_scale(self) -> float | None:
        """1 / head_dim under μP (query-key products grow with width once aligned); None: SDPA's 1/sqrt(head_dim)."""
        return 1.0 / self.head_dim if self.mup_base_dim else None

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_hidden(self) -> int:
        hidden = int(8 * self.dim / 3 * self.ffn_dim_multiplier)
        return self.ffn_multiple * math.ceil(hidden / self.ffn_multiple)


PRESETS: dict[str, ModelConfig] = {
    "test": ModelConfig(
        dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_multiple=32, vocab_size=256, seq_len=64,
    ),
    "125m": ModelConfig(dim=768, n_layers=12, n_heads=12, ffn_multiple=256, vocab_size=32_000, seq_len=2048),
    "350m": ModelConfig(dim=1024, n_layers=24, n_heads=16, ffn_multiple=256, vocab_size=32_000, seq_len=2048),
    "1b": ModelConfig(
        dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_multiple=256, ffn_dim_multiplier=1.5,
        vocab_size=32_000, seq_len=2048, rope_theta=500_000.0,
    ),
}


def load_model_config(spec: str | Path | ModelConfig | dict[str, Any], **overrides: Any) -> ModelConfig:
    """A preset name ("test", "125m", "350m", "1b"), a JSON/YAML file, a mapping of fields, or a config; then
    overrides.

    A file or mapping holds ModelConfig fields and optionally `preset: NAME` as the base; unknown keys are errors.
    """
    if isinstance(spec, ModelConfig):
        base, fields, origin = spec, {}, "<ModelConfig>"
    elif not isinstance(spec, dict) and str(spec) in PRESETS:
        base, fields, origin = PRESETS[str(spec)], {}, f"preset {spec}"
    else:
        if isinstance(spec, dict):
            fields, origin = dict(spec), "model config"
        else:
            path = Path(spec)
            if not path.is_file():
                raise ValueError(f"model config {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
            fields, origin = _read_config_file(path), str(path)
        preset = fields.pop("preset", None)
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"{origin}: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        base = PRESETS[preset] if preset else ModelConfig()
    fields = {**fields, **overrides}
    known = {field.name for field in dataclasses.fields(ModelConfig)}
    if unknown := sorted(set(fields) - known):
        raise ValueError(f"{origin}: unknown model config keys {unknown}; known: {sorted(known)}")
    return dataclasses.replace(base, **fields)


def _read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml  # a project dependency (factory's config uses it); only needed for YAML files

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of ModelConfig fields")
    return data


def param_count(config: ModelConfig, include_embedding: bool = True) -> int:
    """Parameters of Transformer(config), computed from the shape alone."""
    d, hd = config.dim, config.head_dim
    attention = d * config.n_heads * hd * 2 + d * config.kv_heads * hd * 2
    ffn = 3 * d * config.ffn_hidden
    per_layer = attention + ffn + 2 * d
    body = config.n_layers * per_layer + d
    embedding = config.vocab_size * d
    head = 0 if config.tie_embeddings else config.vocab_size * d
    return body + head + (embedding if include_embedding else 0)


def flops_per_token(config: ModelConfig) -> float:
    """Training FLOPs per token: 6 x matmul parameters (the LM head counts, the embedding lookup not)
    plus the attention score/value matmuls, 12 * n_layers * dim * seq_len (PaLM appendix B)."""
    matmul_params = param_count(config, include_embedding=False)
    if config.tie_embeddings:
        matmul_params += config.vocab_size * config.dim
    return 6.0 * matmul_params + 12.0 * config.n_layers * config.dim * config.seq_len


# ----------------------------------------------------------------------------- attention masks


def flex_available() -> bool:
    return flex_attention is not None


@functools.cache  # a process decides (and warns) once per device, however many models it builds
def resolve_attention(requested: str, device: torch.device) -> str:
    """"flex" or "sdpa" for this device; "auto" picks flex wherever it can train (CUDA)."""
    if requested == "sdpa":
        return "sdpa"
    if not flex_available():
        log.warning("FlexAttention is not available in torch %s; using SDPA with a boolean document mask",
                    torch.__version__)
        return "sdpa"
    if requested == "flex" or device.type == "cuda":
        return "flex"
    log.warning("FlexAttention has no backward pass on %s; using SDPA with an explicit boolean document "
                "mask (same result, O(seq_len^2) mask memory)", device.type)
    return "sdpa"


def dense_document_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) boolean: query i may attend key j iff j <= i and both lie in the same document."""
    seq = doc_ids.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=doc_ids.device).tril()
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]
    return (causal & same_doc)[:, None]


@functools.cache
def compile_once(fn: Callable) -> Callable:
    """One compiled wrapper per function, made on first use (not at import: that would load the compiler)."""
    return torch.compile(fn, dynamic=False)


def flex_document_mask(doc_ids: torch.Tensor) -> BlockMask:
    """FlexAttention block mask for causal AND same-document attention; fully masked blocks are skipped."""
    batch, seq = doc_ids.shape

    def mask_mod(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (doc_ids[b, q_idx] == doc_ids[b, kv_idx])

    build = compile_once(create_block_mask) if doc_ids.device.type == "cuda" else create_block_mask
    return build(mask_mod, batch, None, seq, seq, device=doc_ids.device)


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: BlockMask, gqa: bool,
          scale: float | None) -> torch.Tensor:
    """flex_attention as one fused kernel on GPU: traced into the graph when the caller is being
    compiled, else through a compiled wrapper (eager flex materialises the full score matrix)."""
    if torch.compiler.is_compiling() or q.device.type != "cuda":
        return flex_attention(q, k, v, block_mask=mask, enable_gqa=gqa, scale=scale)
    return compile_once(flex_attention)(q, k, v, block_mask=mask, enable_gqa=gqa, scale=scale)


# ----------------------------------------------------------------------------- layers


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_tables(head_dim: int, seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (seq_len, head_dim) for rotate-half RoPE."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, S, D) by position. RoPE is relative, so positions need not restart per document:
    with the document mask, a query only ever sees keys of its own document."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.float() * cos + rotated.float() * sin).type_as(x)


class Attention(nn.Module):
    """Grouped-query self-attention over a document mask (BlockMask for flex, bool tensor for SDPA)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.kv_heads, config.head_dim
        self.scale = config.attention_scale
        self.wq = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.wk = nn.Linear(config.dim, config.kv_heads * config.head_dim, bias=False)
        self.wv = nn.Linear(config.dim, config.kv_heads * config.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Any) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        gqa = self.n_kv_heads != self.n_heads
        if isinstance(mask, torch.Tensor) or mask is None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                               enable_gqa=gqa, scale=self.scale)
        else:
            y = _flex(q, k, v, mask, gqa, self.scale)
        return self.wo(y.transpose(1, 2).reshape(batch, seq, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(config.dim, config.ffn_hidden, bias=False)
        self.w3 = nn.Linear(config.dim, config.ffn_hidden, bias=False)
        self.w2 = nn.Linear(config.ffn_hidden, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Any) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, mask)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    """Token ids (B, S) and document ids (B, S) -> logits (B, S, vocab_size)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(config.head_dim, config.seq_len, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self._compiled_layers: list[nn.Module] | None = None  # plain list: state_dict keys stay unchanged
        self._backends: dict[str, str] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights; residual output projections scaled by 1/sqrt(2 * n_layers); under μP the
        hidden matrices (all but the embedding and output) by a further 1/sqrt(width_mult)."""
        std = self.config.init_std
        embedding = {id(self.tok_embeddings.weight), id(self.output.weight)}
        for name, param in self.named_parameters():
            if param.dim() < 2:
                nn.init.ones_(param)
                continue
            hidden = 1.0 if id(param) in embedding else 1.0 / math.sqrt(self.config.width_mult)
            depth = 1.0 / math.sqrt(2 * self.config.n_layers) if name.endswith(("wo.weight", "w2.weight")) else 1.0
            nn.init.normal_(param, std=std * hidden * depth)

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The matrices μP treats as hidden (width x width): every 2-D weight but the embedding and output."""
        embedding = {id(self.tok_embeddings.weight), id(self.output.weight)}
        return [param for param in self.parameters() if param.dim() >= 2 and id(param) not in embedding]

    def compile_layers(self) -> None:
        """torch.compile every block (torchtitan style): the blocks are identical, so they share one
        compiled graph and compile time does not grow with depth. Masks are built outside, in eager."""
        self._compiled_layers = [torch.compile(layer, fullgraph=True, dynamic=False) for layer in self.layers]

    def uncompile_layers(self) -> None:
        self._compiled_layers = None

    @property
    def compiled(self) -> bool:
        return self._compiled_layers is not None

    def attention_backend(self, device: torch.device) -> str:
        if device.type not in self._backends:
            self._backends[device.type] = resolve_attention(self.config.attention, device)
        return self._backends[device.type]

    def attention_mask(self, doc_ids: torch.Tensor | None, seq: int) -> Any:
        """The document mask in the form the attention backend wants (None: plain causal SDPA)."""
        device = self.rope_cos.device
        if self.attention_backend(device) == "flex":
            if doc_ids is None:
                doc_ids = torch.zeros(1, seq, dtype=torch.int32, device=device)
            return flex_document_mask(doc_ids)
        return None if doc_ids is None else dense_document_mask(doc_ids)

    def forward(self, tokens: torch.Tensor, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        seq = tokens.shape[1]
        if seq > self.config.seq_len:
            raise ValueError(f"sequence of {seq} tokens is longer than seq_len {self.config.seq_len}")
        mask = self.attention_mask(doc_ids, seq)
        cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        h = self.tok_embeddings(tokens)
        for layer in self._compiled_layers or self.layers:
            h = layer(h, cos, sin, mask)
        logits = self.output(self.norm(h))
        return logits / self.config.width_mult if self.config.mup_base_dim else logits
