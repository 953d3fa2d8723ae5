"""Train One-D-Piece-nano from a recipe, starting from a TiTok-nano checkpoint (same architecture).

    python scripts/finetune_one_d_piece_nano.py recipes/one_d_piece_nano.yaml --init checkpoints/titok_nano_32 \
        --set data.root=data/train --set trainer.max_steps=1500

How the shipped ``checkpoints/one_d_piece_nano_32`` was made (a CPU budget of minutes): TiTok-nano's
encoder, codebook and decoder already reconstruct from 32 tokens; Tail Token Drop fine-tuning then
teaches the decoder (and the encoder's token order) to reconstruct from any prefix. ``zoo train``
runs the same recipe from scratch. The result is written with ``save_pretrained`` to the run's
``export/`` folder.
"""

from __future__ import annotations

import argparse

import zoo
from zoo.training.recipe import build, load_recipe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--init", required=True, help="a save_pretrained folder (or checkpoints/ name) of the same shape")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    module, data, trainer = build(load_recipe(args.recipe, args.set))
    start = zoo.from_pretrained(args.init)
    module.model.load_state_dict(start.state_dict())  # strict: a model of another shape is an error
    trainer.fit(module, datamodule=data)
    print({k: round(float(v), 4) for k, v in trainer.callback_metrics.items()})


if __name__ == "__main__":
    main()
