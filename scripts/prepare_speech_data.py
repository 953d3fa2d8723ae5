"""Make a folder of real and synthesized speech with transcripts, from packages that install offline.

    python scripts/prepare_speech_data.py data/speech [--rate 16000] [--flite 200] [--heldout 0.1]

Writes ``OUT/train/*.wav`` and ``OUT/heldout/*.wav`` (mono, ``--rate`` Hz, 16-bit) with a ``.txt``
transcript beside each, plus ``OUT/PROVENANCE.md`` (sources and licenses). Sources:

- Debian ``asterisk-core-sounds-en-wav`` (or ``asterisk-core-sounds-en``): 568 studio prompts of one
  speaker at 8 kHz, transcripts from ``core-sounds-en.txt.gz``, CC-BY-SA-3.0. Prompts without speech
  (``[beep]``-style transcripts) are skipped.
- Debian ``flite``: ``--flite N`` sentences synthesized with the ``slt`` voice (16 kHz) from a
  deterministic generator of simple English sentences (flite: BSD-like license).
The held-out split is by file (a seeded shuffle), so no utterance is in both.
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from zoo.audio import resample

ASTERISK_DIRS = [Path("/usr/share/asterisk/sounds/en"), Path("/usr/share/asterisk/sounds/en_US_f_Allison")]
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")

SUBJECTS = ["the old man", "a small dog", "my sister", "the teacher", "our neighbour", "the pilot", "a young girl",
            "the farmer", "his brother", "the doctor", "a tired cat", "the captain"]
VERBS = ["opened", "painted", "carried", "found", "watched", "cleaned", "bought", "dropped", "followed", "fixed"]
OBJECTS = ["the red door", "a heavy box", "the blue car", "an old map", "the garden gate", "a wooden chair",
           "the kitchen window", "a green bottle", "the silver key", "a paper boat"]
TAILS = ["this morning", "before dinner", "near the river", "in the rain", "after school", "on Sunday",
         "at the station", "without a word", "last winter", "by the lake"]


def asterisk_prompts() -> list[tuple[Path, str]]:
    """(wav path, transcript) of the asterisk prompts with spoken text."""
    if not ASTERISK_TEXT.is_file():
        return []
    texts = {}
    for line in gzip.open(ASTERISK_TEXT, "rt", encoding="utf-8", errors="replace"):
        if ":" not in line or line.startswith(";"):
            continue
        name, text = line.split(":", 1)
        text = text.strip()
        if text and not text.startswith("["):
            texts[name.strip()] = re.sub(r"\[.*?\]", " ", text).strip()
    out = []
    for folder in ASTERISK_DIRS:
        if not folder.is_dir():
            continue
        for wav in sorted(folder.glob("*.wav")):
            if wav.stem in texts and texts[wav.stem]:
                out.append((wav, texts[wav.stem]))
        if out:
            break
    return out


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}".capitalize() + "."
            for _ in range(n)]


def write(path: Path, wav: torch.Tensor, rate: int, text: str) -> None:
    sf.write(str(path), np.clip(wav.numpy(), -1, 1), rate, subtype="PCM_16")
    path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--rate", type=int, default=16_000)
    ap.add_argument("--flite", type=int, default=200, help="number of flite sentences (0: none)")
    ap.add_argument("--heldout", type=float, default=0.1, help="fraction of files held out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    items: list[tuple[str, torch.Tensor, str, str]] = []  # name, wav (T,), text, source
    for wav_path, text in asterisk_prompts():
        data, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
        wav = resample(torch.from_numpy(data.mean(1)), sr, args.rate)
        items.append((f"asterisk_{wav_path.stem}", wav, text, "asterisk-core-sounds-en (CC-BY-SA-3.0)"))
    if args.flite and shutil.which("flite"):
        with tempfile.TemporaryDirectory() as tmp:
            for i, text in enumerate(sentences(args.flite, args.seed)):
                target = Path(tmp) / f"{i}.wav"
                subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(target)], check=True)
                data, sr = sf.read(str(target), dtype="float32", always_2d=True)
                items.append((f"flite_slt_{i:04d}", resample(torch.from_numpy(data.mean(1)), sr, args.rate), text,
                              "flite slt voice (synthesized)"))
    if not items:
        raise SystemExit("no speech found: apt-get install asterisk-core-sounds-en-wav flite")
    rng = random.Random(args.seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    n_held = max(1, int(round(len(items) * args.heldout)))
    held = set(order[:n_held])
    for split in ("train", "heldout"):
        (out / split).mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for i, (name, wav, text, source) in enumerate(items):
        split = "heldout" if i in held else "train"
        write(out / split / f"{name}.wav", wav, args.rate, text)
        counts[f"{split}/{source}"] = counts.get(f"{split}/{source}", 0) + 1
    lines = ["# Speech data provenance", "", f"Made by `scripts/prepare_speech_data.py` (seed {args.seed}, "
             f"{args.rate} Hz mono).", ""] + [f"- {k}: {v} files" for k, v in sorted(counts.items())]
    (out / "PROVENANCE.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
