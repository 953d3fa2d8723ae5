"""Real speech that can be had offline, as 16 kHz wav files + .txt transcripts for codec training and eval.

    apt-get install asterisk-core-sounds-en-g722 pocketsphinx-testdata
    pip install --target /tmp/g722pkg g722          # the ITU G.722 decoder (only this script needs it)
    PYTHONPATH=/tmp/g722pkg python scripts/prepare_speech.py /tmp/speech

Writes ``OUT/train`` and ``OUT/eval`` (Asterisk's studio prompts, one speaker, 16 kHz G.722, CC-BY-SA
3.0; every ``--eval-every``-th prompt in sorted order is held out, the ``silence/`` clips are skipped)
and ``OUT/eval_librivox`` (pocketsphinx-testdata's five LibriVox utterances, another speaker). Each
``name.wav`` has its transcript in ``name.txt`` (from ``core-sounds-en.txt.gz`` / the test data's
``transcription`` file).
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

ASTERISK = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def asterisk_transcripts() -> dict[str, str]:
    out = {}
    for line in gzip.open(TRANSCRIPTS, "rt", encoding="utf-8", errors="replace"):
        if line.startswith(";") or ":" not in line:
            continue
        name, text = line.split(":", 1)
        out[name.strip()] = text.strip()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--eval-every", type=int, default=10)
    args = p.parse_args()
    import G722  # noqa: N811  (pip package g722)

    texts = asterisk_transcripts()
    files = sorted(f for f in ASTERISK.rglob("*.g722") if "silence" not in f.relative_to(ASTERISK).parts)
    counts = {"train": 0, "eval": 0, "eval_librivox": 0}
    for i, f in enumerate(files):
        key = f.relative_to(ASTERISK).with_suffix("").as_posix()
        split = "eval" if i % args.eval_every == 0 else "train"
        pcm = np.asarray(G722.G722(16000, 64000).decode(f.read_bytes()), dtype=np.int16)
        if pcm.size < 1600:
            continue
        dest = args.out / split / (key.replace("/", "__") + ".wav")
        dest.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(dest), pcm.astype(np.float32) / 32768.0, 16000, subtype="PCM_16")
        if key in texts:
            dest.with_suffix(".txt").write_text(texts[key] + "\n", encoding="utf-8")
        counts[split] += 1
    if LIBRIVOX.is_dir():
        lines = (LIBRIVOX / "transcription").read_text().splitlines()
        dest_dir = args.out / "eval_librivox"
        dest_dir.mkdir(parents=True, exist_ok=True)
        for line in lines:
            m = re.match(r"^(.*)\((\S+)\)\s*$", line)
            if not m or not (LIBRIVOX / f"{m.group(2)}.wav").is_file():
                continue
            shutil.copy(LIBRIVOX / f"{m.group(2)}.wav", dest_dir / f"{m.group(2)}.wav")
            text = re.sub(r"</?s>", " ", m.group(1)).split()
            (dest_dir / f"{m.group(2)}.txt").write_text(" ".join(text).lower() + "\n", encoding="utf-8")
            counts["eval_librivox"] += 1
    print(counts)


if __name__ == "__main__":
    main()
