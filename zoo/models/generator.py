"""A reference class-conditional autoregressive generator over tokenizer ids (GPT style).

The sequence is ``[class, t_0, t_1, ..., t_{N-1}]``: position i predicts token i, and for
variable-length token sets (One-D-Piece, FlexTok, audio clips) position N_b predicts an END id
(``vocab_size``) so sampling stops by itself. Residual (L, T) ids are flattened to one sequence
with a pattern of :mod:`zoo.tokens.vocab` before they reach this model. A null class
(``num_classes``), used for ``class_dropout`` of the labels in training, gives classifier-free
guidance at sampling time.

Sampling (:meth:`ARGenerator.generate`): KV cache (or full recomputation, same ids), temperature,
top-k, top-p, CFG scale, a fixed length or END-terminated lengths. Random draws come from one
``torch.Generator``: one uniform per sample and step, turned into an id by inverse-CDF, so cached
and uncached sampling with the same seed give the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.blocks.causal import CausalBlock, KVCache
from zoo.errors import InputError
from zoo.tokens.vocab import delay_pad_id


@dataclass
class ARGeneratorConfig:
    """Sizes of the generator and a description of the tokens it models (``tokens``: the shard
    manifest's tokenizer info, pattern and class names, so ``zoo generate`` can decode)."""

    vocab_size: int = 1024          # ids 0..vocab_size-1 (flattened vocabulary for residual patterns)
    max_len: int = 32               # most tokens per sample
    num_classes: int = 1
    variable_length: bool = False   # predict an END id (= vocab_size) after the last token
    width: int = 256
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    class_dropout: float = 0.1      # labels replaced by the null class in training (for CFG)
    tokens: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "num_classes", "width", "depth", "num_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} must be a multiple of num_heads {self.num_heads}")
        if not 0.0 <= self.class_dropout < 1.0:
            raise ValueError(f"class_dropout must be in [0, 1), got {self.class_dropout}")


#: named sizes (only the network; vocabulary, length and classes come from the token shards)
GENERATOR_SIZES: dict[str, dict[str, Any]] = {
    "gpt_nano": dict(width=128, depth=4, num_heads=4),
    "gpt_mini": dict(width=256, depth=6, num_heads=8),
    "gpt_small": dict(width=512, depth=8, num_heads=8),
    "gpt_base": dict(width=768, depth=12, num_heads=12),
}


def generator_config(name: str, **overrides: Any) -> ARGeneratorConfig:
    """The config of a named size (``gpt_nano`` ...) with ``overrides``."""
    if name not in GENERATOR_SIZES:
        raise InputError(f"unknown generator {name!r}; known: {', '.join(GENERATOR_SIZES)}")
    return ARGeneratorConfig(**{**GENERATOR_SIZES[name], **overrides})


@dataclass
class Generated:
    """ids: (B, max_len) int64, positions >= lengths[b] hold ``pad_id``; lengths: (B,) int64."""

    ids: torch.Tensor
    lengths: torch.Tensor
    pad_id: int

    def rows(self) -> list[torch.Tensor]:
        return [self.ids[b, :int(n)] for b, n in enumerate(self.lengths.tolist())]


class ARGenerator(nn.Module):
    """labels (B,) + ids (B, N) -> logits (B, N + 1, vocab_size [+ 1 END]) for tokens 0..N (N = END)."""

    family = "ar_generator"
    config_class = ARGeneratorConfig

    def __init__(self, config: ARGeneratorConfig, name: str | None = None):
        super().__init__()
        self.config = config
        self.name = name or self.family
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size + 1, c.width)   # + END, which also pads the inputs
        self.cls_emb = nn.Embedding(c.num_classes + 1, c.width)  # + the null class
        self.pos_emb = nn.Parameter(0.02 * torch.randn(c.max_len + 1, c.width))
        self.blocks = nn.ModuleList(CausalBlock(c.width, c.num_heads, c.mlp_ratio, c.dropout) for _ in range(c.depth))
        self.ln_f = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, self.num_outputs, bias=False)
        self.apply(self._init)
        mask = structure_mask(c, self.num_outputs)
        self.register_buffer("allowed", mask if mask is not None else torch.ones(0, dtype=torch.bool), persistent=False)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def end_id(self) -> int:
        return self.config.vocab_size

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    @property
    def num_outputs(self) -> int:
        return self.config.vocab_size + (1 if self.config.variable_length else 0)

    # -- forward ----------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, start: int, cache: KVCache | None) -> torch.Tensor:
        x = x + self.pos_emb[start:start + x.shape[1]]
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.length += x.shape[1]
        return self.head(self.ln_f(x))

    def _embed(self, labels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cls_emb(labels)[:, None], self.tok_emb(ids)], dim=1)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """ids: (B, N) int64 in [0, vocab_size] (END/padding = vocab_size), N <= max_len; labels: (B,)
        in [0, num_classes] (num_classes = null) -> logits (B, N + 1, num_outputs)."""
        if ids.ndim != 2 or labels.shape != ids.shape[:1]:
            raise InputError(f"ids must be (B, N) and labels (B,), got {tuple(ids.shape)} and {tuple(labels.shape)}")
        if ids.shape[1] > self.config.max_len:
            raise InputError(f"sequences of {ids.shape[1]} tokens exceed max_len {self.config.max_len}")
        return self._run(self._embed(labels, ids), 0, None)

    def loss(self, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of tokens (and the END after each sequence when variable-length).

        ids: (B, N) padded (any id beyond lengths[b]), lengths: (B,), labels: (B,)."""
        labels = labels.clamp_min(0)  # unlabelled items (-1) count as class 0
        n = ids.shape[1]
        pos = torch.arange(n, device=ids.device)[None]
        valid = pos < lengths[:, None]
        inputs = torch.where(valid, ids, torch.full_like(ids, self.end_id))
        logits = self(inputs, labels)
        targets = torch.where(valid, ids, torch.full_like(ids, -100))
        if self.config.variable_length:  # END at position lengths[b], ignored after it
            end = torch.where(pos == lengths[:, None], torch.full_like(ids, self.end_id), torch.full_like(ids, -100))
            targets = torch.cat([torch.where(valid, targets, end),
                                 torch.where(lengths[:, None] == n, self.end_id, -100)], dim=1)
        else:
            logits = logits[:, :n]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)

    # -- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, labels: torch.Tensor, *, length: int | None = None, min_length: int = 1,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, cfg_scale: float = 1.0,
                 use_cache: bool = True, generator: torch.Generator | None = None) -> Generated:
        """Sample ids for ``labels`` (B,) (class indices; ``num_classes`` = unconditional).

        length: tokens per sample (default max_len); variable-length models stop earlier at END,
        never before ``min_length``. temperature 0 = greedy; top_k 0 / top_p 1 = off;
        cfg_scale 1 = no guidance (logits = uncond + scale * (cond - uncond) otherwise).
        """
        c = self.config
        length = c.max_len if length is None else int(length)
        if not 1 <= length <= c.max_len:
            raise InputError(f"length must be in [1, {c.max_len}], got {length}")
        if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
            raise InputError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1; got {temperature}, {top_k}, {top_p}")
        device = self.pos_emb.device
        labels = torch.as_tensor(labels, device=device).long().reshape(-1)
        if labels.numel() and labels.device.type == "cpu" and (int(labels.min()) < 0 or int(labels.max()) > c.num_classes):
            raise InputError(f"class labels must be in [0, {c.num_classes - 1}] (or {c.num_classes} for none), "
                             f"got {labels.tolist()}")
        b = labels.shape[0]
        guided = cfg_scale != 1.0
        cond = torch.cat([labels, torch.full_like(labels, self.null_class)]) if guided else labels
        cache = None
        if use_cache:
            cache = KVCache(c.depth, cond.shape[0], c.num_heads, length + 1, c.width // c.num_heads,
                            device=device, dtype=self.pos_emb.dtype)
        ids = torch.full((b, length), self.end_id, dtype=torch.long, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        lengths = torch.full((b,), length, dtype=torch.long, device=device)
        for i in range(length):
            prev = ids[:, :i].repeat(2, 1) if guided else ids[:, :i]
            if cache is None:
                logits = self._run(self._embed(cond, prev), 0, None)[:, -1]
            elif i == 0:
                logits = self._run(self.cls_emb(cond)[:, None], 0, cache)[:, -1]
            else:
                logits = self._run(self.tok_emb(prev[:, -1:]), i, cache)[:, -1]
            logits = logits.float()
            if guided:
                logits = logits[b:] + cfg_scale * (logits[:b] - logits[b:])
            if self.allowed.numel():  # residual patterns: only ids of the level this position holds
                logits = logits.masked_fill(~self.allowed[i], float("-inf"))
            if self.config.variable_length and i < min_length:
                logits[:, self.end_id] = float("-inf")
            u = torch.rand(b, generator=generator, device="cpu").to(device)
            tok = sample_logits(logits, u, temperature=temperature, top_k=top_k, top_p=top_p)
            if self.config.variable_length:
                ended = tok == self.end_id
                lengths = torch.where(ended & ~done, torch.full_like(lengths, i), lengths)
                done = done | ended
                tok = torch.where(done, torch.full_like(tok, self.end_id), tok)
            ids[:, i] = tok
            if self.config.variable_length and bool(done.all()):
                break
        return Generated(ids, lengths, self.end_id)

    # -- save / load ------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """``model.safetensors`` + ``config.json`` (family ar_generator), written atomically."""
        from zoo import hub
        return hub.save_pretrained(self, directory)


def structure_mask(c: ARGeneratorConfig, num_outputs: int) -> torch.Tensor | None:
    """(max_len, num_outputs) bool: the ids each position of a flattened residual sequence may hold
    (``interleave``: the block of level s % L; ``delay``: the pad while level s % L is still delayed,
    then that level's block; END only at frame boundaries). None for single-level tokens and
    ``level_major`` (its level depends on the unknown length)."""
    t = c.tokens or {}
    pattern, levels, vocab = t.get("pattern"), int(t.get("num_levels") or 1), int(t.get("token_vocab_size") or 0)
    if pattern not in ("interleave", "delay") or levels < 2 or vocab * levels > c.vocab_size:
        return None
    mask = torch.zeros(c.max_len, num_outputs, dtype=torch.bool)
    for s in range(c.max_len):
        level, step = s % levels, s // levels
        if pattern == "delay" and step < level:
            mask[s, delay_pad_id(vocab, levels)] = True
        else:
            mask[s, level * vocab:(level + 1) * vocab] = True
        if c.variable_length and level == 0:
            mask[s, c.vocab_size] = True
    return mask


def sample_logits(logits: torch.Tensor, u: torch.Tensor, *, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> torch.Tensor:
    """logits (B, V) + uniforms u (B,) in [0, 1) -> ids (B,) by inverse CDF over the filtered softmax."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the smallest set whose mass reaches top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    cdf = probs.cumsum(-1)
    cdf = cdf / cdf[:, -1:]
    return torch.searchsorted(cdf, u[:, None].to(cdf.dtype), right=True).clamp_max(logits.shape[-1] - 1)[:, 0]
