"""Regenerate model_cards/<name>.md: one card per registered variant (weights are not needed: models
are built on the meta device), then one per bundled checkpoint under checkpoints/ (built from its
config.json and weights, with its `zoo eval` results from results/ and its training record), which
replaces the variant's card of the same name.

    python scripts/make_model_cards.py                      # every variant and checkpoint
    python scripts/make_model_cards.py --only titok_nano_32 # just these (variants or checkpoints)
    python scripts/make_model_cards.py --push OWNER         # also upload each checkpoint + card to OWNER/<name>
"""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

import torch

import zoo
from zoo import hub
from zoo.factory import load_directory
from zoo.io import atomic_write_text
from zoo.model_card import checkpoint_card, load_results, render_model_card

ROOT = Path(__file__).resolve().parents[1]


def load_checkpoint(folder: Path):
    """The model in a checkpoint folder: a tokenizer, or an AR generator."""
    if hub.read_config(folder).get("family") == "ar_generator":
        from zoo.generate import load_generator
        return load_generator(folder)
    return load_directory(folder)


def bundled(checkpoints: Path) -> list[Path]:
    return sorted(p for p in checkpoints.iterdir() if (p / hub.CONFIG_NAME).is_file()) if checkpoints.is_dir() else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "model_cards")
    ap.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    ap.add_argument("--results", type=Path, nargs="*", default=[ROOT / "results"],
                    help="`zoo eval` results JSON files or folders of them (default: results/)")
    ap.add_argument("--only", nargs="*", default=None, help="names or globs of variants/checkpoints to write")
    ap.add_argument("--push", default=None, metavar="OWNER",
                    help="upload each bundled checkpoint with its card to the Hub repo OWNER/<name>")
    args = ap.parse_args(argv)

    def wanted(name: str) -> bool:
        return args.only is None or any(fnmatch.fnmatch(name, pat) for pat in args.only)

    results = load_results(args.results)
    for name in filter(wanted, zoo.list_models()):
        with torch.device("meta"):
            model = zoo.create(name)
        atomic_write_text(args.out / f"{name}.md", render_model_card(model))
        print(f"wrote {args.out / name}.md (variant)")
    for folder in filter(lambda f: wanted(f.name), bundled(args.checkpoints)):
        model = load_checkpoint(folder)
        grid = next((p for r in args.results if r.is_dir() for kind in ("grid", "spectrogram")
                     if (p := r / f"{folder.name}_{kind}.png").is_file()), None)
        rel = None if grid is None else Path("..") / grid.resolve().relative_to(args.out.resolve().parent) \
            if grid.resolve().is_relative_to(args.out.resolve().parent) else grid
        card = checkpoint_card(model, folder, results, grid=None if rel is None else rel.as_posix())
        atomic_write_text(args.out / f"{folder.name}.md", card)
        print(f"wrote {args.out / folder.name}.md (checkpoint {folder})")
        if args.push:
            repo = f"{args.push}/{folder.name}"
            hub.push_to_hub(model, repo, card=checkpoint_card(model, folder, results, repo_id=repo))
            print(f"pushed {folder} to {repo}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
