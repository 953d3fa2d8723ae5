"""Adaptive token length: per image, the shortest prefix whose reconstruction meets a quality target.

Works for every image tokenizer whose ``token_lengths()`` is a ``range`` and whose shorter encodings
are prefixes of the full one (One-D-Piece, FlexTok): ``encode(images, num_tokens=k)`` equals
``encode(images)[:, :k]``.

>>> out = encode_adaptive(model, images, "psnr>=25")      # or model.encode(images, target="psnr>=25")
>>> out.lengths                  # (B,) int64: tokens kept per image
>>> out.ids[0]                   # (lengths[0],) ids of image 0
>>> out.unreached                # indices of images that missed the target even with all N tokens
>>> padded, lengths = out.pad(pad_id=model.vocab_size)   # (B, N) for an AR generator (+1 pad code)
>>> images = model.decode(padded, lengths=lengths)       # decoders ignore the padding given lengths

Search, per image, over the indices of ``token_lengths()`` (lengths L[0] < L[1] < ...):

1. **gallop**: probe the lengths at indices 0, 1, 3, 7, ... (1, 2, 4, 8, ... tokens for
   range(1, N+1)) and finally the full length, stopping at the first that meets the target;
2. **bisect** between the last probe that missed and the first that met.

Each round decodes every image still searching in one batch (one decode per image and round; with
``ragged_decode`` models one call per round, else one call per distinct length), so an image costs
at most about 2 log2(N) decodes, and fewer when a short prefix suffices.

The bisection assumes quality grows with the prefix length (monotone), which tail-token-drop and
nested-dropout training aim for but do not guarantee. Whatever the curve, the returned length
always meets the target (or is N for an image listed in ``unreached``), and is never longer than the
first power-of-two length meeting it (what a fixed search over 1, 2, 4, ..., N would give); when
the curve is monotone it is the shortest length meeting the target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from zoo.errors import InputError
from zoo.metrics.image import load_lpips, psnr, ssim
from zoo.validation import check_images

#: metric name -> True when higher is better
METRICS = {"psnr": True, "ssim": True, "lpips": False}
_TARGET_RE = re.compile(r"^\s*([a-zA-Z]+)\s*(>=|<=|=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Target:
    """A per-image quality target: ``metric`` (psnr in dB, ssim, lpips) compared with ``threshold``
    (psnr/ssim: at least, lpips: at most)."""

    metric: str
    threshold: float

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric]

    def met(self, scores: torch.Tensor) -> torch.Tensor:
        """(B,) scores -> (B,) bool."""
        return scores >= self.threshold if self.higher_is_better else scores <= self.threshold

    def __str__(self) -> str:
        return f"{self.metric}{'>=' if self.higher_is_better else '<='}{self.threshold:g}"


def parse_target(target: str | dict[str, Any] | Target) -> Target:
    """``"psnr>=25"``, ``"psnr=25"`` (psnr/ssim mean at least, lpips at most), ``"lpips<=0.2"``,
    ``{"psnr": 25}``, ``{"metric": "ssim", "threshold": 0.8}`` or a :class:`Target`."""
    if isinstance(target, Target):
        metric, threshold, op = target.metric, target.threshold, "="
    elif isinstance(target, dict):
        if set(target) == {"metric", "threshold"}:
            metric, threshold = target["metric"], target["threshold"]
        elif len(target) == 1:
            (metric, threshold), = target.items()
        else:
            raise InputError(f"a target dict is {{metric: threshold}} or {{'metric': ..., 'threshold': ...}}, got {target}")
        op = "="
    elif isinstance(target, str):
        m = _TARGET_RE.match(target)
        if not m:
            raise InputError(f"target {target!r} is not METRIC>=VALUE (e.g. 'psnr>=25', 'ssim>=0.8', 'lpips<=0.2')")
        metric, op, value = m.groups()
        try:
            threshold = float(value)
        except ValueError:
            raise InputError(f"target {target!r}: {value!r} is not a number") from None
    else:
        raise InputError(f"target must be a string like 'psnr>=25', a dict or a Target, got {type(target).__name__}")
    metric = str(metric).lower()
    if metric not in METRICS:
        raise InputError(f"target metric must be one of {sorted(METRICS)}, got {metric!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold != threshold:
        raise InputError(f"target threshold must be a number, got {threshold!r}")
    wrong = ("<", "<=") if METRICS[metric] else (">", ">=")
    if op in wrong:
        better = "higher" if METRICS[metric] else "lower"
        raise InputError(f"target {target!r}: {better} {metric} is better, so a target is "
                         f"{metric}{'>=' if METRICS[metric] else '<='}VALUE")
    return Target(metric, float(threshold))


@dataclass
class RaggedIds:
    """Token ids of a batch with one length per image.

    ids: list of B tensors, ids[b] of shape (lengths[b],) int64; lengths: (B,) int64;
    num_tokens: the model's longest length N; unreached: indices of the images whose reconstruction
    missed the target even with all N tokens (they keep all N); scores: (B,) the target metric of the
    kept prefix; decodes: (B,) decodes the search spent per image.
    """

    ids: list[torch.Tensor]
    lengths: torch.Tensor
    num_tokens: int
    unreached: list[int] = field(default_factory=list)
    target: Target | None = None
    scores: torch.Tensor | None = None
    decodes: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.ids) == 0:
            raise InputError("a RaggedIds needs at least one image's ids, got an empty list")
        lengths = [int(t.shape[0]) if isinstance(t, torch.Tensor) and t.ndim == 1 else -1 for t in self.ids]
        if -1 in lengths:
            raise InputError("every entry of RaggedIds.ids must be a 1-D tensor of ids")
        if self.lengths.tolist() != lengths:
            raise InputError(f"RaggedIds.lengths {self.lengths.tolist()} do not match the ids' lengths {lengths}")
        if min(lengths) < 1 or max(lengths) > self.num_tokens:
            raise InputError(f"RaggedIds lengths must be in [1, {self.num_tokens}], got {lengths}")

    def __len__(self) -> int:
        return len(self.ids)

    def pad(self, pad_id: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (padded (B, length) int64, lengths (B,) int64), ``length`` = num_tokens by default.

        Position j >= lengths[b] of row b holds ``pad_id``. For an AR generator pick an id outside
        the vocabulary (``model.vocab_size``, one extra embedding row) or reserve one; the zoo's
        decoders ignore the padding when given ``lengths``: ``model.decode(padded, lengths=lengths)``.
        """
        length = self.num_tokens if length is None else int(length)
        if length < int(self.lengths.max()):
            raise InputError(f"pad length {length} is shorter than the longest ids ({int(self.lengths.max())})")
        out = torch.full((len(self.ids), length), int(pad_id), dtype=torch.long, device=self.ids[0].device)
        for b, row in enumerate(self.ids):
            out[b, :row.shape[0]] = row
        return out, self.lengths.clone()


def ragged_to_padded(ids: RaggedIds | list[torch.Tensor] | tuple[torch.Tensor, ...],
                     lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A :class:`RaggedIds` or a list of 1-D id tensors (any lengths) -> (B, max_len) ids padded
    with 0 and (B,) lengths, for ``decode(ids, lengths=...)``."""
    if lengths is not None:
        raise InputError("lengths are given by the ragged ids themselves; pass lengths only with a (B, n) tensor")
    if isinstance(ids, RaggedIds):
        return ids.pad(0, int(ids.lengths.max()))
    if len(ids) == 0:
        raise InputError("got an empty list of ids: nothing to decode")
    if not all(isinstance(t, torch.Tensor) and t.ndim == 1 and t.numel() > 0 for t in ids):
        raise InputError("a list of ids must hold non-empty 1-D id tensors (one per image)")
    sizes = torch.tensor([t.shape[0] for t in ids])
    return RaggedIds(list(ids), sizes, int(sizes.max())).pad(0)


def _metric_fn(target: Target, device: torch.device, lpips_net: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if target.metric == "psnr":
        return psnr
    if target.metric == "ssim":
        return ssim
    metric, note = load_lpips(lpips_net, device=device)
    if metric is None:
        raise InputError(f"target {target} needs LPIPS, which cannot run here: {note}; use a psnr or ssim target")
    return metric


def _decode_at(model: Any, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Decode ids[b, :lengths[b]] for every b, batched: one call for ``ragged_decode`` models, else
    one call per distinct length."""
    if getattr(model, "ragged_decode", False):
        width = int(lengths.max())
        return model.decode(ids[:, :width], lengths=lengths)
    out: torch.Tensor | None = None
    for k in torch.unique(lengths).tolist():
        rows = (lengths == k).nonzero().flatten()
        images = model.decode(ids[rows, :k])
        if out is None:
            out = images.new_empty((ids.shape[0], *images.shape[1:]))
        out[rows] = images
    assert out is not None
    return out


@torch.no_grad()
def encode_adaptive(model: Any, images: torch.Tensor, target: str | dict[str, Any] | Target, *,
                    batch_size: int | None = None, lpips_net: str = "vgg") -> RaggedIds:
    """images (B, 3, H, W) in [0, 1] -> :class:`RaggedIds`: per image the shortest prefix of its ids
    whose reconstruction meets ``target`` (see the module docstring for the search and its guarantee).

    ``batch_size``: decode at most this many images at once (default: all). An LPIPS target needs
    the ``lpips_net`` backbone weights; without them this raises :class:`InputError`.
    """
    goal = parse_target(target)
    allowed = model.token_lengths() if hasattr(model, "token_lengths") else None
    if not isinstance(allowed, range) or len(allowed) == 0:
        raise InputError(f"adaptive length needs a model whose token_lengths() is a range of lengths; "
                         f"{type(model).__name__} gives {allowed!r}")
    check_images(images, model.input_size)
    if images.shape[0] == 0:
        raise InputError("got an empty batch of images")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    images = images.to(device)
    metric = _metric_fn(goal, device, lpips_net)
    step = batch_size or images.shape[0]
    parts = [_search(model, images[i:i + step], goal, metric, allowed) for i in range(0, images.shape[0], step)]
    ids = [row for p in parts for row in p[0]]
    lengths, scores, decodes = (torch.cat([p[i] for p in parts]) for i in (1, 2, 3))
    unreached = [b for b, ok in enumerate(torch.cat([p[4] for p in parts]).tolist()) if not ok]
    return RaggedIds(ids, lengths, allowed[-1], unreached, goal, scores, decodes)


def _search(model: Any, images: torch.Tensor, goal: Target, metric: Callable, allowed: range):
    """Gallop then bisect over indices of ``allowed`` for one batch; see :func:`encode_adaptive`."""
    full = model.encode(images, num_tokens=allowed[-1])
    b, last = images.shape[0], len(allowed) - 1
    lengths_of = torch.tensor(list(allowed), dtype=torch.long)
    lo = torch.zeros(b, dtype=torch.long)           # every index < lo misses the target
    hi = torch.full((b,), -1, dtype=torch.long)     # an index that meets it (-1: none found yet)
    probe = torch.zeros(b, dtype=torch.long)        # next gallop index: 0, 1, 3, 7, ..., last
    score_at_hi = torch.full((b,), float("nan"))
    decodes = torch.zeros(b, dtype=torch.long)
    reached = torch.ones(b, dtype=torch.bool)

    def evaluate(rows: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths_of[index]
        recon = _decode_at(model, full[rows.to(full.device)], lengths.to(full.device))
        scores = metric(images[rows.to(images.device)], recon).float().cpu()
        decodes[rows] += 1
        return goal.met(scores), scores

    # 1. gallop: probe 0, 1, 3, 7, ... (lengths 1, 2, 4, 8, ...), then the full length
    while True:
        rows = ((hi < 0) & reached).nonzero().flatten()
        if rows.numel() == 0:
            break
        met, scores = evaluate(rows, probe[rows])
        hit, miss = rows[met], rows[~met]
        hi[hit], score_at_hi[hit] = probe[hit], scores[met]
        at_end = miss[probe[miss] == last]
        reached[at_end] = False
        hi[at_end], score_at_hi[at_end] = last, scores[~met][probe[miss] == last]
        going = miss[probe[miss] < last]
        lo[going] = probe[going] + 1
        probe[going] = torch.clamp(2 * probe[going] + 1, max=last)
    # 2. bisect in [lo, hi] for images that met the target (invariant: hi meets it, < lo misses)
    while True:
        rows = (reached & (lo < hi)).nonzero().flatten()
        if rows.numel() == 0:
            break
        mid = (lo[rows] + hi[rows]) // 2
        met, scores = evaluate(rows, mid)
        hit, miss = rows[met], rows[~met]
        hi[hit], score_at_hi[hit] = mid[met], scores[met]
        lo[miss] = mid[~met] + 1
    lengths = lengths_of[hi]
    ids = [full[i, :int(k)].clone() for i, k in enumerate(lengths.tolist())]
    return ids, lengths, score_at_hi, decodes, reached
