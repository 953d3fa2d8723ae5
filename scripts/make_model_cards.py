"""Regenerate model_cards/<name>.md for every registered variant (weights are not needed: models are
built on the meta device). Metrics measured by ``zoo eval`` can be merged in with --results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import zoo
from zoo.io import atomic_write_text
from zoo.model_card import render_model_card


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "model_cards")
    ap.add_argument("--results", type=Path, nargs="*", default=[],
                    help="`zoo eval` results JSON files whose numbers go into the cards")
    ap.add_argument("--models", default="*", help="glob of the variants to write (default: all)")
    args = ap.parse_args()
    measured = {}
    for path in args.results:
        r = json.loads(path.read_text())
        data = r["data"]
        for row in r["results"]:
            tag = f" ({row['num_tokens']} tokens)" if len(r["results"]) > 1 else ""
            metrics = {f"{k}{tag}": v for k, v in row.items() if isinstance(v, (int, float)) and v is not None}
            metrics[f"evaluated on{tag}"] = f"{data['num_evaluated']} images, data hash {data['hash'][7:19]}"
            measured.setdefault(r["model"]["name"], {}).update(metrics)
    for name in zoo.list_models(args.models):
        with torch.device("meta"):
            model = zoo.create(name)
        card = render_model_card(model, metrics=measured.get(name))
        atomic_write_text(args.out / f"{name}.md", card)
        print(f"wrote {args.out / name}.md")


if __name__ == "__main__":
    main()
