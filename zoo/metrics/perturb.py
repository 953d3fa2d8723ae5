"""Latent perturbation of RobusTok (Qiu et al., "Robust Latent Matters: Boosting Image Generation with
Sampling Error Synthesis", arXiv 2503.08354; official code github.com/lxa9867/ImageFolder,
``tokenizer/tokenizer_image/latent_perturbation.py``, identical in github.com/Xudangliatiger/RobusTok).

What the paper and its code define (read, not copied):

- perturbation strength ``delta`` (δ): for a token whose code is e_k, S_δ is the set of the δ codebook
  entries nearest to it in squared L2 distance (on l2-normalized vectors when the codebook is cosine).
  S_δ contains e_k itself (distance 0): the code takes ``topk(d, δ, largest=False)`` and index 0 is the
  nearest code;
- perturbation rate ``alpha`` (α): the proportion of an image's tokens that are perturbed, α = P / N;
  a perturbed token is replaced by a uniformly drawn member of S_δ. The code draws per token: with
  probability α a uniform index in [0, δ), else index 0;
- perturbation proportion ``beta`` (β): in training, the first floor(β·B) images of a batch are
  perturbed, the others keep their clean quantized latents (official main-training config: α=1.0,
  β=0.1, δ=100, both α and δ annealed, see :func:`anneal_ratio`);
- training passes gradients straight through: ẑ = z + (e' − z).detach(), with z the encoder latent.

pFID (:func:`perturb_tokens`) simulates an AR generator's sampling errors on the *ids*: every image
(β = 1) gets exactly P = round(α·N) token positions, drawn uniformly without replacement, each
replaced by a uniform draw from S_δ of its code (the paper's α = P/N; the expected fraction of ids
that actually change is α·(δ−1)/δ since S_δ holds the code itself). Seeded, so pFID is repeatable.
The official repository has not released its pFID script ("Preparing for PFID calculation"), so the
evaluation rate and strength are parameters (defaults α = 0.1, δ = 100, δ as in the official training
config) and are written into the results.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from zoo.errors import InputError


def nearest_codes(codebook: torch.Tensor, delta: int, *, cosine: bool = False, chunk: int = 1024) -> torch.Tensor:
    """codebook (K, D) -> (K, delta) int64: for each code, the ``delta`` nearest codes (squared L2,
    after l2-normalization when ``cosine``), nearest first; column 0 is the code itself."""
    if codebook.ndim != 2:
        raise InputError(f"codebook must have shape (K, D), got {tuple(codebook.shape)}")
    k = codebook.shape[0]
    if not 1 <= delta <= k:
        raise InputError(f"perturbation strength delta must be in [1, {k}] (the codebook size), got {delta}")
    e = codebook.detach().float()
    if cosine:
        e = F.normalize(e, dim=-1)
    sq = (e * e).sum(-1)
    rows = []
    for start in range(0, k, chunk):
        part = e[start:start + chunk]
        d = sq[start:start + chunk, None] + sq[None, :] - 2 * part @ e.T
        idx = torch.arange(start, start + part.shape[0], device=e.device)
        d[torch.arange(part.shape[0], device=e.device), idx] = -1.0  # the code itself first, even among duplicates
        rows.append(torch.topk(d, delta, dim=1, largest=False).indices)
    return torch.cat(rows)


def perturb_tokens(ids: torch.Tensor, neighbours: torch.Tensor, rate: float, *,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """pFID perturbation of token ids (B, N) int64 -> (B, N) int64 (a new tensor).

    In every image exactly ``round(rate * N)`` positions, chosen uniformly without replacement, are
    replaced by a uniform draw from the row of ``neighbours`` (K, δ) of their id (see :func:`nearest_codes`).
    ``generator`` (a CPU generator) makes it repeatable; all random draws happen on the CPU.
    """
    if ids.ndim != 2 or ids.is_floating_point():
        raise InputError(f"ids must be an integer tensor of shape (B, N), got {ids.dtype} {tuple(ids.shape)}")
    if not 0.0 <= rate <= 1.0:
        raise InputError(f"perturbation rate must be in [0, 1], got {rate}")
    if neighbours.ndim != 2:
        raise InputError(f"neighbours must have shape (K, delta), got {tuple(neighbours.shape)}")
    b, n = ids.shape
    count = int(round(rate * n))
    out = ids.detach().cpu().long().clone()
    if count == 0 or b == 0:
        return out.to(ids.device)
    if out.numel() and (int(out.min()) < 0 or int(out.max()) >= neighbours.shape[0]):
        raise InputError(f"ids must be in [0, {neighbours.shape[0]}), got [{int(out.min())}, {int(out.max())}]")
    positions = torch.rand(b, n, generator=generator).argsort(dim=1)[:, :count]  # (B, P) uniform subsets
    choice = torch.randint(0, neighbours.shape[1], (b, count), generator=generator)
    table = neighbours.detach().cpu().long()
    old = out.gather(1, positions)
    out.scatter_(1, positions, table[old, choice])
    return out.to(ids.device)


def anneal_ratio(step: int, start: int, end: int, end_ratio: float) -> float:
    """Annealing factor of α and δ in RobusTok's main training: 1 until ``start``, then linear down to
    ``end_ratio`` at ``end``, constant after (official code, per epoch; here per any counter).

    The official formula between start and end is 1 − t·end_ratio, which meets end_ratio only for
    end_ratio = 0.5 (its default); this version is continuous for every end_ratio and equal to the
    official one at 0.5.
    """
    if step < start:
        return 1.0
    if step >= end:
        return float(end_ratio)
    t = (step - start) / max(1, end - start)
    return 1.0 - t * (1.0 - end_ratio)


def perturb_latents(latents: torch.Tensor, quantized: torch.Tensor, codebook: torch.Tensor, *, alpha: float,
                    beta: float, delta: int, cosine: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """RobusTok's latent perturbation for training (the official ``add_perturbation`` on (B, N, D) tokens).

    latents: (B, N, D) encoder output before quantization; quantized: (B, N, D) the quantizer's
    (straight-through) output; codebook: (K, D). For the first floor(beta·B) images, each token takes,
    with probability ``alpha``, a uniformly drawn code among the ``delta`` codes nearest to its latent
    (else the nearest code), with gradients passed straight through to ``latents``
    (z + (e − z).detach()); with ``cosine`` the latents and codes are l2-normalized first, as in the
    official code. The other images get ``quantized`` unchanged. Returns (B, N, D).
    """
    if latents.ndim != 3 or latents.shape != quantized.shape:
        raise InputError(f"latents and quantized must have one shape (B, N, D), got {tuple(latents.shape)} "
                         f"and {tuple(quantized.shape)}")
    if codebook.ndim != 2 or codebook.shape[1] != latents.shape[2]:
        raise InputError(f"codebook must have shape (K, {latents.shape[2]}), got {tuple(codebook.shape)}")
    if not (0.0 <= alpha <= 1.0 and 0.0 <= beta <= 1.0):
        raise InputError(f"alpha and beta must be in [0, 1], got alpha={alpha}, beta={beta}")
    b, n, d = latents.shape
    num = int(b * beta)
    if num == 0 or alpha == 0.0:
        return quantized
    if not 1 <= delta <= codebook.shape[0]:
        raise InputError(f"delta must be in [1, {codebook.shape[0]}], got {delta}")
    z = latents[:num]
    e = codebook.to(z.dtype)
    if cosine:
        z, e = F.normalize(z, dim=-1), F.normalize(e, dim=-1)
    flat = z.detach().reshape(-1, d)
    dist = (flat * flat).sum(-1, keepdim=True) + (e * e).sum(-1)[None] - 2 * flat @ e.detach().T
    top = torch.topk(dist, delta, dim=1, largest=False).indices  # (num*N, delta), nearest first
    dev = latents.device
    draw = torch.rand(top.shape[0], generator=generator, device="cpu").to(dev) < alpha
    pick = torch.randint(0, delta, (top.shape[0],), generator=generator, device="cpu").to(dev)
    pick = torch.where(draw, pick, torch.zeros_like(pick))
    codes = e.detach()[top[torch.arange(top.shape[0], device=dev), pick]].reshape(num, n, d)
    perturbed = z + (codes - z).detach()
    return torch.cat([perturbed.to(quantized.dtype), quantized[num:]], dim=0)


def _image_seed(seed: int, index: int) -> int:
    """A 32-bit seed from (seed, index) (torch's CPU generator keeps 32 bits of its seed)."""
    digest = hashlib.sha256(f"zoo-pfid:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def perturb_tokens_indexed(ids: torch.Tensor, neighbours: torch.Tensor, rate: float, *, seed: int,
                           first_index: int) -> torch.Tensor:
    """:func:`perturb_tokens` with one generator per image, seeded by (``seed``, image index), so the
    perturbation of an image does not depend on the batch size or on the other images.

    ids: (B, N), rows being images ``first_index`` .. ``first_index + B - 1`` of the evaluated set."""
    rows = [perturb_tokens(ids[i:i + 1], neighbours, rate, generator=torch.Generator().manual_seed(
                _image_seed(seed, first_index + i))) for i in range(ids.shape[0])]
    return torch.cat(rows) if rows else ids.clone()
