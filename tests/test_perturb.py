"""RobusTok latent perturbation: pFID token perturbation and the training op."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.errors import InputError
from zoo.metrics.perturb import anneal_ratio, nearest_codes, perturb_latents, perturb_tokens


def test_nearest_codes_brute_force():
    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(50, 6, generator=g)
    table = nearest_codes(codebook, 7, chunk=16)
    assert table.shape == (50, 7)
    assert torch.equal(table[:, 0], torch.arange(50))  # S_delta holds the code itself, first
    d = ((codebook[:, None] - codebook[None]) ** 2).sum(-1).numpy()
    for k in range(50):
        np.testing.assert_array_equal(table[k].numpy(), np.argsort(d[k], kind="stable")[:7])
    cos = nearest_codes(codebook * torch.rand(50, 1, generator=g) * 5, 4, cosine=True)
    unit = torch.nn.functional.normalize(codebook, dim=-1)
    np.testing.assert_array_equal(cos.numpy(), nearest_codes(unit, 4).numpy())  # scale-free with cosine
    with pytest.raises(InputError, match="delta"):
        nearest_codes(codebook, 51)


def test_perturb_tokens_definition():
    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(64, 4, generator=g)
    table = nearest_codes(codebook, 5)
    ids = torch.randint(0, 64, (400, 50), generator=g)
    out = perturb_tokens(ids, table, 0.3, generator=torch.Generator().manual_seed(1))
    assert out.shape == ids.shape and out.dtype == torch.long
    changed = out != ids
    # at most round(0.3 * 50) = 15 positions per image are touched
    assert int(changed.sum(1).max()) <= 15
    # each replacement is one of the delta nearest codes of the original id
    rows, cols = changed.nonzero(as_tuple=True)
    assert all(int(out[r, c]) in table[int(ids[r, c])].tolist() for r, c in zip(rows[:500], cols[:500]))
    # expected changed fraction alpha * (delta - 1) / delta = 0.3 * 4 / 5 = 0.24
    assert float(changed.float().mean()) == pytest.approx(0.24, abs=0.01)
    # fixed seed -> same ids; another seed -> other ids
    again = perturb_tokens(ids, table, 0.3, generator=torch.Generator().manual_seed(1))
    other = perturb_tokens(ids, table, 0.3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out, again) and not torch.equal(out, other)
    assert torch.equal(perturb_tokens(ids, table, 0.0), ids)
    every = perturb_tokens(ids, table, 1.0, generator=torch.Generator().manual_seed(3))
    assert float((every != ids).float().mean()) == pytest.approx(0.8, abs=0.01)
    with pytest.raises(InputError, match="rate"):
        perturb_tokens(ids, table, 1.5)
    with pytest.raises(InputError, match="integer"):
        perturb_tokens(ids.float(), table, 0.1)


def test_perturb_latents_training_op():
    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(32, 8, generator=g)
    latents = torch.randn(8, 10, 8, generator=g, requires_grad=True)
    nearest = ((latents.detach()[..., None, :] - codebook) ** 2).sum(-1).argmin(-1)
    quantized = codebook[nearest]
    # beta: only the first floor(beta * B) images change
    out = perturb_latents(latents, quantized, codebook, alpha=1.0, beta=0.5, delta=5,
                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[4:], quantized[4:])
    top5 = torch.topk(((latents.detach()[:4, :, None] - codebook) ** 2).sum(-1), 5, largest=False).indices
    for b in range(4):
        for n in range(10):
            assert any(torch.allclose(out[b, n], codebook[j], atol=1e-6) for j in top5[b, n])
    assert not torch.allclose(out[:4], quantized[:4])  # alpha=1, delta=5: most tokens moved
    # gradients pass straight through to the latents of perturbed images
    out.sum().backward()
    assert torch.equal(latents.grad[:4], torch.ones(4, 10, 8))
    # delta=1 or alpha=0: the nearest code, i.e. no perturbation
    same = perturb_latents(latents, quantized, codebook, alpha=1.0, beta=1.0, delta=1)
    assert torch.allclose(same, quantized, atol=1e-6)
    assert perturb_latents(latents, quantized, codebook, alpha=0.0, beta=1.0, delta=5) is quantized
    # alpha is the per-token probability of a random draw among the delta nearest
    big = torch.randn(64, 50, 8, generator=g)
    q = codebook[((big[..., None, :] - codebook) ** 2).sum(-1).argmin(-1)]
    moved = (perturb_latents(big, q, codebook, alpha=0.4, beta=1.0, delta=4,
                             generator=torch.Generator().manual_seed(0)) - q).abs().sum(-1) > 1e-6
    assert float(moved.float().mean()) == pytest.approx(0.4 * 3 / 4, abs=0.02)
    with pytest.raises(InputError, match="codebook"):
        perturb_latents(latents, quantized, codebook[:, :3], alpha=0.1, beta=0.1, delta=2)


def test_anneal_ratio():
    assert anneal_ratio(0, 40, 120, 0.5) == 1.0
    assert anneal_ratio(200, 40, 120, 0.5) == 0.5
    for step in range(40, 121, 10):  # equals the official 1 - t * end_ratio at end_ratio 0.5
        assert anneal_ratio(step, 40, 120, 0.5) == pytest.approx(1 - (step - 40) / 80 * 0.5)
    assert anneal_ratio(80, 40, 120, 0.2) == pytest.approx(0.6)


def test_indexed_perturbation_does_not_depend_on_batching():
    from zoo.metrics.perturb import perturb_tokens_indexed

    table = nearest_codes(torch.randn(32, 4, generator=torch.Generator().manual_seed(0)), 6)
    ids = torch.randint(0, 32, (10, 20), generator=torch.Generator().manual_seed(1))
    whole = perturb_tokens_indexed(ids, table, 0.4, seed=3, first_index=0)
    parts = torch.cat([perturb_tokens_indexed(ids[:4], table, 0.4, seed=3, first_index=0),
                       perturb_tokens_indexed(ids[4:], table, 0.4, seed=3, first_index=4)])
    assert torch.equal(whole, parts) and not torch.equal(whole, ids)
    assert not torch.equal(whole, perturb_tokens_indexed(ids, table, 0.4, seed=4, first_index=0))
