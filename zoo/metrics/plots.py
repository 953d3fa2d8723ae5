"""Pictures of an evaluation: reconstruction grid, rate-distortion curves, spectrogram comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from zoo.io import atomic_path


def save_grid(rows: list[tuple[str, torch.Tensor]], path: str | Path, label_width: int = 110) -> Path:
    """One PNG, a labelled row per entry: ``rows`` = [(label, images (B, 3, S, S) in [0, 1])]; the first
    row is normally the originals, the next ones reconstructions (one per token length)."""
    if not rows:
        raise ValueError("no rows to draw")
    n = max(t.shape[0] for _, t in rows)
    s = max(t.shape[-1] for _, t in rows)
    pad = 2
    canvas = Image.new("RGB", (label_width + n * (s + pad), len(rows) * (s + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        y = r * (s + pad)
        draw.text((4, y + s // 2 - 6), label, fill="black")
        arr = (images.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for i, a in enumerate(arr):
            tile = Image.fromarray(a)
            if tile.size != (s, s):
                tile = tile.resize((s, s), Image.NEAREST)
            canvas.paste(tile, (label_width + i * (s + pad), y))
    path = Path(path)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_curves(x_key: str, x_label: str, panels: list[tuple[str, str]], rows: list[dict[str, Any]],
                path: str | Path, title: str, *, log_x: bool = False,
                extra: dict[str, tuple[str, str]] | None = None) -> Path:
    """Rate-distortion curves: one panel per (key, label) of ``panels`` that some row has, ``x_key``
    on the x axis. ``extra`` = {panel key: (second key, label)} drawn dashed in the same panel (rFID + pFID)."""
    plt = _pyplot()
    panels = [p for p in panels if any(r.get(p[0]) is not None for r in rows)]
    if not panels:
        raise ValueError("no metric to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    xs = [r[x_key] for r in rows]
    for ax, (key, label) in zip(axes[0], panels):
        ys = [np.nan if r.get(key) is None else r[key] for r in rows]
        ax.plot(xs, ys, "o-", label=label)
        second, second_label = (extra or {}).get(key, (None, None))
        if second and any(r.get(second) is not None for r in rows):
            ax.plot(xs, [np.nan if r.get(second) is None else r[second] for r in rows], "s--", label=second_label)
            ax.legend()
        ax.set_xlabel(x_label)
        ax.set_ylabel(label if not second else f"{label} / {second_label}")
        if log_x and all(x > 0 for x in xs):
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    return _save_figure(plt, fig, title, path)


def save_spectrograms(rows: list[tuple[str, np.ndarray]], path: str | Path, title: str) -> Path:
    """Log-mel spectrograms stacked vertically: ``rows`` = [(label, (n_mels, frames) array)]."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 2.2 * len(rows)), squeeze=False)
    lo = min(float(np.min(m)) for _, m in rows)
    hi = max(float(np.max(m)) for _, m in rows)
    for ax, (label, mel) in zip(axes[:, 0], rows):
        ax.imshow(mel, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("frame")
    return _save_figure(plt, fig, title, path)


def _save_figure(plt, fig, title: str, path: str | Path) -> Path:
    """Title, lay out and write ``fig`` as a PNG (atomically), then free it."""
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
