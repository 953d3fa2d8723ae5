"""Markdown tables of evaluation results (one run, or many runs for the README)."""

from __future__ import annotations

import math
from typing import Any

# (key in a result row, column title, decimals); a column shows only when some row has the key.
IMAGE_COLUMNS = [("num_tokens", "tokens", 0), ("bits_per_image", "bits/img", 0), ("psnr", "PSNR (dB)", 2),
                 ("ssim", "SSIM", 4), ("lpips", "LPIPS", 4), ("rfid", "rFID", 2), ("pfid", "pFID", 2),
                 ("codebook_usage", "usage", 3), ("perplexity", "perplexity", 1)]
AUDIO_COLUMNS = [("bandwidth_kbps", "bandwidth (kbps)", 2), ("bitrate_kbps", "bitrate (kbps)", 2),
                 ("mel_distance", "mel dist.", 3), ("si_sdr", "SI-SDR (dB)", 2), ("stoi", "STOI", 3),
                 ("pesq", "PESQ", 2), ("wer", "WER", 3), ("cer", "CER", 3), ("codebook_usage", "usage", 3),
                 ("perplexity", "perplexity", 1)]


def fmt(value: Any, decimals: int) -> str:
    """A number for a table cell: fixed decimals, '-' for missing, 'nan' kept visible."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, (int, float)):
        return f"{value:.{decimals}f}" if decimals else f"{round(value):d}"
    return str(value)


def columns_for(modality: str) -> list[tuple[str, str, int]]:
    return AUDIO_COLUMNS if modality == "audio" else IMAGE_COLUMNS


def rows_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, int]],
               lead: list[tuple[str, str]] = ()) -> str:
    """A Markdown table of ``rows``: ``lead`` (key, title) text columns first, then the numeric
    ``columns`` that at least one row has."""
    shown = [c for c in columns if any(r.get(c[0]) is not None for r in rows)]
    titles = [t for _, t in lead] + [t for _, t, _ in shown]
    lines = ["| " + " | ".join(titles) + " |", "|" + "|".join(["---"] * len(lead) + ["---:"] * len(shown)) + "|"]
    for r in rows:
        cells = [str(r.get(k, "-")) for k, _ in lead] + [fmt(r.get(k), d) for k, _, d in shown]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_markdown(result: dict[str, Any]) -> str:
    """The Markdown report of one ``zoo eval`` run: header facts, the metrics table, notes."""
    m, d, s = result["model"], result["data"], result["settings"]
    lines = [f"# Evaluation of `{m['id']}`", "",
             f"- model: {m.get('family') or '-'} `{m.get('name')}`, revision {m.get('revision') or '-'}",
             f"- data: `{d['dir']}`: {d['num_evaluated']} evaluated, {d['num_skipped']} skipped "
             f"(hash `{d['hash'][:19]}`)", f"- seed {s['seed']}, device {s['device']}"]
    if "pfid" in s and s["pfid"]:
        p = s["pfid"]
        lines.append(f"- pFID: rate alpha={p['rate']}, strength delta={p['delta']}, seed {p['seed']} (RobusTok)")
    if s.get("fid_extractor"):
        lines.append(f"- FID features: {s['fid_extractor']}")
    lines += ["", rows_table(result["results"], columns_for(m.get("modality", "image")))]
    if result.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)
