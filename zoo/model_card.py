"""Model cards: a README.md with Hub metadata, what the model is, how to use it, and its numbers."""

from __future__ import annotations

import dataclasses
from typing import Any

from zoo.errors import UnknownModelError
from zoo.registry import get_entry
from zoo.version import __version__


def render_model_card(model: Any, *, repo_id: str | None = None, metrics: dict[str, Any] | None = None) -> str:
    """Markdown model card for ``model`` (a zoo tokenizer). ``metrics``: name -> value, if measured."""
    try:
        meta = get_entry(model.name).meta
    except UnknownModelError:
        meta = {}
    load = repo_id or model.name
    params = model.num_parameters(include_buffers=True)
    lines = [
        "---",
        "library_name: tokenizer-zoo",
        "tags:", "- image-tokenizer" if model.modality == "image" else "- audio-tokenizer",
        f"- {model.family}", "- tokenizer-zoo",
        "license: apache-2.0",
        "---",
        "",
        f"# {model.name}",
        "",
        f"A {model.family} {model.modality} tokenizer from the tokenizer zoo (version {__version__})"
        + (f", the paper's {meta['paper']}." if meta.get("paper") else "."),
        "",
        "## Use",
        "",
        "```python",
        "import zoo",
        f'model = zoo.from_pretrained("{load}")',
    ]
    if model.modality == "image":
        lines += [f"ids = model.encode(images)      # (B, 3, {model.input_size}, {model.input_size}) in [0, 1] -> "
                  f"(B, {model.num_tokens}) ids",
                  "recon = model.decode(ids)       # -> (B, 3, H, W) in [0, 1]"]
    elif model.modality == "audio":
        lines += [f"ids = model.encode(wav, sample_rate={model.sample_rate})  # (B, {model.channels}, T) in [-1, 1] -> "
                  f"(B, {model.num_levels}, frames) ids",
                  "wav = model.decode(ids[:, :2])  # any prefix of the levels -> (B, C, T)"]
    lines += ["```", ""]
    if meta.get("official_repo"):
        lines += [f"`zoo.from_pretrained(\"{model.name}\")` downloads the official checkpoint "
                  f"[{meta['official_repo']}](https://huggingface.co/{meta['official_repo']}) and converts it to the "
                  "zoo's layout on load.", ""]
    if getattr(model, "card_note", None):  # a family's own paragraph (e.g. what its parameter count covers)
        lines += [model.card_note, ""]
    elif hasattr(model, "pixel_decoder"):
        lines += ["Two-stage design: the parameter count includes the 30.5M-parameter MaskGIT-VQGAN pixel decoder "
                  "and its 1024x256 codebook.", ""]
    lines += ["## Facts", "", "| | |", "|---|---|",
              f"| family | {model.family} |",
              f"| parameters | {params:,} |"]
    if meta.get("params_official"):
        lines.append(f"| official parameter count | {meta['params_official']:,} |")
    if model.modality == "image":
        lines += [f"| tokens per image | {model.num_tokens} |",
                  f"| vocabulary | {model.vocab_size} |",
                  f"| input size | {model.input_size}x{model.input_size} |",
                  f"| bits per image | {model.bits_per_image:.0f} |"]
    elif model.modality == "audio":
        lines += [f"| sample rate | {model.sample_rate} Hz, {model.channels} channel(s) |",
                  f"| frame rate | {model.frame_rate:.4g} Hz |",
                  f"| levels x vocabulary | {model.num_levels} x {model.vocab_size} |",
                  f"| bitrate | {model.bitrate(1):.4g} to {model.bitrate():.4g} kbps |"]
    if metrics:
        lines += ["", "## Measured", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    else:
        lines += ["", "No reconstruction metrics have been measured for these weights yet."]
    lines += ["", "## Config", "", "```json"]
    import json
    lines += [json.dumps(dataclasses.asdict(model.config), indent=2), "```", ""]
    return "\n".join(lines)
