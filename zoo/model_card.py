"""Model cards: a README.md with Hub metadata (YAML front matter), what the model is, how to use it,
how it was trained (when recorded) and what was measured (``zoo eval`` results)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from zoo.errors import UnknownModelError
from zoo.registry import get_entry
from zoo.version import __version__

NOT_RECORDED = "not recorded"
# PSNR below which reconstructions are blurry blocks rather than recognizable pictures (the bar)
RECOGNIZABLE_PSNR = 22.0
METRIC_KEYS = ("psnr", "ssim", "lpips", "rfid", "pfid", "psnr_perturbed", "codebook_usage", "perplexity",
               "mel_distance", "si_sdr", "stoi", "pesq", "wer", "cer", "gfid")


# -- measured numbers -------------------------------------------------------------------------------
def results_for(name: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``zoo eval`` (or generator measurement) JSON results that belong to the model ``name``."""
    def owner(r: dict[str, Any]) -> str:
        if isinstance(r.get("model"), dict):
            return str(r["model"].get("name") or r["model"].get("id") or "")
        return Path(str(r.get("generator") or "")).name
    return [r for r in results if owner(r) == name]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def measured_section(model: Any, results: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Markdown lines of the measured numbers and the metric names measured (for the front matter)."""
    lines: list[str] = []
    names: list[str] = []
    for r in results:
        rows = r.get("results")
        if isinstance(rows, list) and rows:  # zoo eval schema
            data = r.get("data") or {}
            cols = [k for k in ("num_tokens", "bandwidth", "num_levels", "bits_per_image", "bitrate_kbps", *METRIC_KEYS)
                    if any(row.get(k) is not None for row in rows)]
            names += [k for k in cols if k in METRIC_KEYS and k not in names]
            pre = data.get("preprocess") or {}
            lines += [f"Measured with `zoo eval` on `{data.get('dir', '?')}`: {data.get('num_evaluated', '?')} "
                      f"{'images' if model.modality == 'image' else 'files'} (data hash "
                      f"`{str(data.get('hash', '?'))[:19]}`"
                      + (f", {pre.get('input_size')} px, {pre.get('resize')}" if pre.get("input_size") else "")
                      + f"; seed {(r.get('settings') or {}).get('seed', '?')}).", "",
                      "| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
            lines += ["| " + " | ".join(_fmt(row.get(k)) if row.get(k) is not None else "-" for k in cols) + " |"
                      for row in rows]
            cfg = (r.get("model") or {}).get("config")
            ours = json.loads(json.dumps(dataclasses.asdict(model.config), default=str))  # tuples as JSON lists
            if isinstance(cfg, dict) and any(k not in ours or ours[k] != v for k, v in cfg.items()):
                lines += ["", "**These numbers were measured on weights whose config differs from this "
                          "checkpoint's; re-measure with `zoo eval`.**"]
            lines += [""] + [f"- {n}" for n in r.get("notes") or []] + ([""] if r.get("notes") else [])
        else:  # a flat record (e.g. the generator's gFID measurement)
            flat = {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            names += [k for k in flat if k in METRIC_KEYS and k not in names]
            lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in flat.items()]
            for key in ("data", "note"):
                if isinstance(r.get(key), str):
                    lines += ["", f"{'Measured on' if key == 'data' else 'Note'}: {r[key]}"]
            lines += [""]
    return lines, names


def best_psnr(results: list[dict[str, Any]]) -> float | None:
    values = [row.get("psnr") for r in results for row in (r.get("results") or []) if isinstance(row, dict)]
    values = [v for v in values if isinstance(v, (int, float))]
    return max(values) if values else None


# -- the card ---------------------------------------------------------------------------------------
def _front_matter(model: Any, metric_names: list[str], datasets: list[str]) -> list[str]:
    modality = getattr(model, "modality", "") or "generator"
    tags = [f"{modality}-tokenizer" if modality in ("image", "audio") else "autoregressive-generator",
            model.family, "tokenizer-zoo", "discrete-tokens"]
    lines = ["---", "library_name: tokenizer-zoo", "license: apache-2.0", "tags:"] + [f"- {t}" for t in tags]
    if datasets:
        lines += ["datasets:"] + [f"- {json.dumps(d)}" for d in datasets]
    if metric_names:
        lines += ["metrics:"] + [f"- {m}" for m in metric_names]
    return lines + ["---", ""]


def render_model_card(model: Any, *, repo_id: str | None = None, metrics: dict[str, Any] | None = None,
                      results: list[dict[str, Any]] | None = None, training: str | None = None,
                      datasets: list[str] | None = None, grid: str | None = None) -> str:
    """Markdown model card for ``model`` (a zoo tokenizer or AR generator).

    ``metrics``: name -> value, if measured; ``results``: ``zoo eval`` JSON results of these weights
    (their tables, data and notes go in); ``training``: how the weights were trained (data, recipe,
    seed, licenses; ``None`` = a registered variant's card without a Training section, ``""`` =
    "not recorded"); ``datasets``: names for the Hub front matter; ``grid``: a reconstruction image path.
    """
    try:
        meta = get_entry(model.name).meta
    except UnknownModelError:
        meta = {}
    results = results or []
    measured, metric_names = measured_section(model, results)
    metric_names += [k for k in (metrics or {}) if k in METRIC_KEYS and k not in metric_names]
    load = repo_id or model.name
    modality = getattr(model, "modality", "")
    params = model.num_parameters(include_buffers=True) if hasattr(model, "num_parameters") else \
        sum(p.numel() for p in model.parameters())
    what = f"{model.family} {modality} tokenizer" if modality else f"autoregressive generator ({model.family})"
    lines = _front_matter(model, metric_names, datasets or []) + [
        f"# {model.name}",
        "",
        f"{'An' if what[0] in 'aeiou' else 'A'} {what} from the tokenizer zoo (version {__version__})"
        + (f", the paper's {meta['paper']}." if meta.get("paper") else "."),
        "",
        "## Use",
        "",
        "```python",
        "import zoo",
    ]
    if modality:
        lines.append(f'model = zoo.from_pretrained("{load}")')
    if modality == "image":
        lines += [f"ids = model.encode(images)      # (B, 3, {model.input_size}, {model.input_size}) in [0, 1] -> "
                  f"(B, {model.num_tokens}) ids",
                  "recon = model.decode(ids)       # -> (B, 3, H, W) in [0, 1]"]
    elif modality == "audio":
        lines += [f"ids = model.encode(wav, sample_rate={model.sample_rate})  # (B, {model.channels}, T) in [-1, 1] -> "
                  f"(B, {model.num_levels}, frames) ids",
                  "wav = model.decode(ids[:, :2])  # any prefix of the levels -> (B, C, T)"]
    else:
        lines += ["from zoo import hub",
                  "from zoo.generate import load_generator",
                  f'gen = load_generator(hub.resolve("{load}"))   # then: zoo generate --generator <folder> ...']
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
    lines += ["## Architecture and tokens", "", "| | |", "|---|---|",
              f"| family | {model.family} |",
              f"| parameters | {params:,} |"]
    if meta.get("params_official"):
        lines.append(f"| official parameter count | {meta['params_official']:,} |")
    if modality == "image":
        lines += [f"| tokens per image | {model.num_tokens}"
                  + (" (any prefix decodes)" if getattr(model, "variable_length", False) else "") + " |",
                  f"| vocabulary | {model.vocab_size} |",
                  f"| input size | {model.input_size}x{model.input_size} |",
                  f"| bits per image | {model.bits_per_image:.0f} |"]
    elif modality == "audio":
        lines += [f"| sample rate | {model.sample_rate} Hz, {model.channels} channel(s) |",
                  f"| frame rate | {model.frame_rate:.4g} Hz |",
                  f"| levels x vocabulary | {model.num_levels} x {model.vocab_size} |",
                  f"| bitrate | {model.bitrate(1):.4g} to {model.bitrate():.4g} kbps |"]
    if training is not None:
        lines += ["", "## Training", "", training.strip() or f"Training data, recipe and seed: {NOT_RECORDED}."]
    lines += ["", "## Measured", ""]
    if measured:
        lines += measured
        if grid:
            what_grid = "Reconstructions" if modality else "Samples"
            lines += [f"{what_grid} (from the same `zoo eval` / measurement run): ![grid]({grid})", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
        lines.append("")
    if not measured and not metrics:
        lines += ["No reconstruction metrics have been measured for these weights yet.", ""]
    lines += ["## Intended use and limits", ""] + _use_and_limits(model, results, training) + [""]
    lines += ["## License", "",
              "Code and these weights: Apache-2.0 (the tokenizer zoo's license)"
              + (f"; the official weights' own license applies to conversions of {meta['official_repo']}"
                 if meta.get("official_repo") else "")
              + "." + (" Training data keeps its own licenses (see Training)." if training is not None else ""), ""]
    lines += ["## Config", "", "```json", json.dumps(dataclasses.asdict(model.config), indent=2, default=str),
              "```", ""]
    return "\n".join(lines)


def _use_and_limits(model: Any, results: list[dict[str, Any]], training: str | None) -> list[str]:
    modality = getattr(model, "modality", "")
    if modality == "image":
        use = (f"Turning {model.input_size}x{model.input_size} RGB images into {model.num_tokens} discrete tokens "
               "and back: for training and testing autoregressive generators and token pipelines.")
    elif modality == "audio":
        use = (f"Turning {model.sample_rate} Hz audio into {model.num_levels} levels of discrete tokens per frame "
               "and back: for speech/audio language models and codec experiments.")
    else:
        use = "Sampling token sequences for the tokenizer named in its config (class-conditional)."
    out = [f"- Intended use: {use}"]
    psnr = best_psnr(results)
    if psnr is not None and psnr < RECOGNIZABLE_PSNR:
        out.append(f"- Quality: the best measured PSNR is {psnr:.1f} dB (below {RECOGNIZABLE_PSNR:.0f} dB): "
                   "reconstructions are blurry and details are not recognizable. Use it to exercise pipelines "
                   "and as a test fixture, not to judge the method; train longer for real use.")
    elif psnr is None and not results:
        out.append("- Quality: not measured for these weights.")
    out.append("- Inputs outside the training data's domain and size were not evaluated; the numbers above hold "
               "only for the data they name." if results else
               "- Inputs outside the training data's domain and size were not evaluated.")
    if training is not None and not training.strip():
        out.append(f"- Training data and its licenses: {NOT_RECORDED}; check them before any release.")
    return out


# -- bundled checkpoints ----------------------------------------------------------------------------
def training_record(folder: str | Path, results: list[dict[str, Any]] | None = None) -> tuple[str, list[str]]:
    """How the weights in ``folder`` were trained, and dataset names for the front matter, from (first
    found) ``folder/TRAINING.md``, ``folder/provenance.json`` (keys such as recipe, data, datasets,
    seed, steps, license), the folder's entry in ``checkpoints/README.md`` (a ``- `name/`: ...`` item)
    or a ``training`` text in its results; ``("", [])`` when none records it."""
    folder = Path(folder)
    if (folder / "TRAINING.md").is_file():
        return (folder / "TRAINING.md").read_text(encoding="utf-8"), []
    if (folder / "provenance.json").is_file():
        record = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
        datasets = [str(d) for d in record.pop("datasets", [])] if isinstance(record, dict) else []
        text = "\n".join(f"- {k}: {v}" for k, v in record.items()) if isinstance(record, dict) else str(record)
        return text, datasets
    readme = folder.parent / "README.md"
    if readme.is_file():
        entry = _readme_entry(readme.read_text(encoding="utf-8"), folder.name)
        if entry:
            return f"From `checkpoints/README.md`: {entry}", []
    for r in results or []:
        if isinstance(r.get("training"), str):
            return f"- recipe and run: {r['training']}" + (f"\n- data: {r['data']}" if isinstance(r.get("data"), str)
                                                           else ""), []
    return "", []


def _readme_entry(text: str, name: str) -> str:
    """The text of the ``- `name/`: ...`` item of a Markdown list (continuation lines joined)."""
    lines, out = text.splitlines(), []
    for i, line in enumerate(lines):
        if line.startswith(f"- `{name}/`") or line.startswith(f"- `{name}`"):
            out.append(line.split(":", 1)[1].strip() if ":" in line else line[2:])
            for more in lines[i + 1:]:
                if not more.startswith("  ") or more.lstrip().startswith("- "):
                    break
                out.append(more.strip())
            break
    return " ".join(out)


def load_results(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Every readable JSON file among ``paths`` (folders are searched for ``*.json``)."""
    found: list[dict[str, Any]] = []
    for path in map(Path, paths):
        for f in sorted(path.glob("*.json")) if path.is_dir() else [path]:
            try:
                r = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(r, dict):
                found.append(r)
    return found


def checkpoint_card(model: Any, folder: str | Path, results: list[dict[str, Any]], *, grid: str | None = None,
                    repo_id: str | None = None) -> str:
    """The card of the checkpoint in ``folder`` (holding ``model``): its results, its training record."""
    mine = results_for(Path(folder).name, results) or results_for(model.name, results)
    training, datasets = training_record(folder, mine)
    return render_model_card(model, repo_id=repo_id, results=mine, training=training, datasets=datasets, grid=grid)
