"""The ``zoo`` command: list, tokenize, reconstruct, train (and eval).

    zoo list [PATTERN]
    zoo tokenize IMAGE... --model NAME_OR_PATH [-o ids.npy|ids.json|ids.jsonl] [--num-tokens K | --target psnr=25]
    zoo reconstruct IMAGE --model NAME_OR_PATH -o out.png
    zoo train RECIPE [--resume last|CKPT] [--set section.key=value ...]
    zoo convert --from official-titok PATH --model NAME -o DIR

The top floor: nothing inside ``zoo`` imports this module.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from zoo.errors import ZooError
from zoo.factory import load_model, pick_device  # noqa: F401  (pick_device: for subcommands)


def cmd_list(args: argparse.Namespace) -> int:
    from zoo.registry import get_config, get_entry, list_models

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    print(f"{'name':<22}{'family':<10}{'tokens':>8}{'vocab':>8}{'input':>7}  paper")
    for name in names:
        entry, cfg = get_entry(name), get_config(name)
        tokens = getattr(cfg, "num_tokens", "-")
        vocab = getattr(cfg, "codebook_size", "-")
        size = getattr(cfg, "image_size", "-")
        print(f"{name:<22}{entry.family:<10}{tokens:>8}{vocab:>8}{size:>7}  {entry.meta.get('paper') or '-'}")
    return 0


IDS_FORMATS = {".npy": "npy", ".json": "json", ".jsonl": "jsonl"}


def check_inputs_and_output(inputs: list[Path], output: Path | None, device: str | None) -> None:
    """Refuse missing input files, an unwritable output path and an unusable device before any
    model is loaded (a mistake found after minutes of encoding costs those minutes)."""
    from zoo.device import resolve_device
    from zoo.errors import InputError
    from zoo.io import check_writable

    for path in inputs:
        if not Path(path).is_file():
            raise InputError(f"input {path} " + ("is a folder, not a file" if Path(path).is_dir() else "does not exist"))
    if output is not None:
        check_writable(output)
    resolve_device(device)


def cmd_tokenize(args: argparse.Namespace) -> int:
    from zoo.audio_cli import cmd_tokenize_audio, is_audio_input
    if is_audio_input(args.images):  # audio files: ids (levels, frames) per file
        return cmd_tokenize_audio(args, load_model)
    import numpy as np
    import torch

    from zoo.data import load_image
    from zoo.errors import OutputError
    from zoo.io import atomic_path

    out = None if args.output is None else Path(args.output)
    fmt = None if out is None else IDS_FORMATS.get(out.suffix.lower())
    if out is not None and fmt is None:
        raise OutputError(f"cannot write ids to {out}: unknown extension {out.suffix or '(none)'!r}; use "
                          f"{', '.join(IDS_FORMATS)} (case does not matter)")
    check_inputs_and_output(args.images, out, args.device)
    model = load_model(args.model, revision=args.revision, random_init=args.random_init, device=args.device)
    device = next(model.parameters()).device
    rows: list[tuple[str, list[int]]] = []  # one row per input, in order (repeated inputs included)
    extras: list[dict] = []  # per row: length, score and reached with --target
    from tqdm import tqdm

    batches = range(0, len(args.images), args.batch_size)
    for start in tqdm(batches, desc="tokenize", unit="batch", disable=True if args.quiet else None):  # a batch at a time
        paths = args.images[start:start + args.batch_size]
        images = torch.cat([load_image(p, model.input_size) for p in paths]).to(device)
        encoded = encode_for_cli(model, images, args.num_tokens, args.target)
        rows += [(str(path), ids) for path, (ids, _) in zip(paths, encoded)]
        extras += [extra for _, extra in encoded]
    lines = [json.dumps({"image": path, "ids": ids, **extra}) for (path, ids), extra in zip(rows, extras)]
    missed = [path for (path, _), extra in zip(rows, extras) if extra.get("reached") is False]
    if missed:
        print(f"{len(missed)} image(s) could not reach {args.target} even with all {model.num_tokens} tokens "
              f"(they keep all of them): {', '.join(missed)}", file=sys.stderr)
    if out is None:
        print("\n".join(lines))
        return 0
    with atomic_path(out) as tmp:
        if fmt == "npy":
            with open(tmp, "wb") as f:
                width = max(len(ids) for _, ids in rows)  # --target: rows padded with -1
                np.save(f, np.asarray([ids + [-1] * (width - len(ids)) for _, ids in rows], dtype=np.int64))
        elif fmt == "jsonl":
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        else:  # row i of "ids" belongs to image i of "images", as in the .npy
            tmp.write_text(json.dumps({"model": args.model, "vocab_size": model.vocab_size,
                                       "images": [p for p, _ in rows], "ids": [ids for _, ids in rows]}) + "\n",
                           encoding="utf-8")
    print(f"wrote ids of {len(rows)} image(s) to {out}", file=sys.stderr)
    return 0


def encode_for_cli(model, images, num_tokens: int | None, target: str | None) -> list[tuple[list[int], dict]]:
    """(ids, extra) per image: all tokens, the first ``num_tokens`` (variable-length models), or the
    shortest prefix meeting ``target`` (extra: length, the target metric's value, reached)."""
    from zoo.errors import InputError
    from zoo.models.adaptive import encode_adaptive

    if num_tokens is None and target is None:
        return [(ids, {}) for ids in model.encode(images).tolist()]
    if num_tokens is not None and target is not None:
        raise InputError("give --num-tokens (a fixed length) or --target (a quality per image), not both")
    if not getattr(model, "variable_length", False):
        raise InputError(f"--num-tokens and --target need a variable-length model (any prefix length); "
                         f"{model.name} always gives {model.num_tokens} tokens")
    if num_tokens is not None:
        return [(ids, {}) for ids in model.encode(images, num_tokens=num_tokens).tolist()]
    out = encode_adaptive(model, images, target)
    metric = out.target.metric
    return [(ids.tolist(), {"length": int(k), metric: round(float(score), 4), "reached": b not in out.unreached})
            for b, (ids, k, score) in enumerate(zip(out.ids, out.lengths, out.scores))]


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from zoo.audio_cli import cmd_reconstruct_audio, is_audio_input
    if is_audio_input([args.image]):
        return cmd_reconstruct_audio(args, load_model)
    from zoo.data import image_format, load_image, save_image

    image_format(args.output)  # an extension PIL cannot write is refused before any work
    check_inputs_and_output([args.image], args.output, args.device)
    model = load_model(args.model, revision=args.revision, random_init=args.random_init, device=args.device)
    image = load_image(args.image, model.input_size).to(next(model.parameters()).device)
    recon = model.decode(model.encode(image))
    save_image(recon[0], args.output)
    print(f"wrote {args.output} ({model.num_tokens} tokens)", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from zoo.training.cli_config import run_train  # LightningCLI-style: --config, --section.key, --print_config

    return run_train(args.argv)


def cmd_convert(args: argparse.Namespace) -> int:
    from zoo.convert import convert_to_folder

    from tqdm import tqdm

    with tqdm(total=1, desc=f"convert {args.source}", unit="checkpoint", disable=True if args.quiet else None) as bar:
        model = convert_to_folder(args.source, args.path, args.model, args.output)
        bar.update()
    print(f"wrote {args.output} ({model.name} from {args.source} {args.path})", file=sys.stderr)
    return 0


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def quiet_option(s: argparse.ArgumentParser) -> None:
    """-q/--quiet: no progress bar, no info logs (warnings and errors still show)."""
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no info logs")


def apply_quiet(args: argparse.Namespace) -> None:
    """What --quiet turns off: info logging (ours, Lightning's), tqdm bars, Hub download bars."""
    import os

    from zoo.training.cli_config import quiet_logging

    quiet_logging()
    os.environ["TQDM_DISABLE"] = "1"  # tqdm bars whose disable is not set explicitly
    if hasattr(args, "no_progress"):
        args.no_progress = True
    try:
        from huggingface_hub.utils import disable_progress_bars
        disable_progress_bars()
    except ImportError:
        pass


def audio_options(s: argparse.ArgumentParser) -> None:
    """--bandwidth / --num-levels of audio codecs (tokenize and reconstruct)."""
    s.add_argument("--bandwidth", type=float, default=None, help="audio: kbps; keeps the residual levels that fit")
    s.add_argument("--num-levels", type=int, default=None, help="audio: number of residual levels to keep")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description="The tokenizer zoo: images and audio to token ids and back.")
    p.add_argument("-v", "--verbose", action="store_true", help="show debug logs and full tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list the registered models")
    s.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'titok*'")
    s.set_defaults(func=cmd_list)

    def model_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("--model", required=True, help="local dir, checkpoints/ name, Hub repo id, or registered name")
        s.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
        s.add_argument("--random-init", action="store_true", help="allow a registered name with fresh weights")
        s.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")

    s = sub.add_parser("tokenize", help="print or save the token ids of images")
    s.add_argument("images", nargs="+", type=Path)
    model_args(s)
    s.add_argument("-o", "--output", default=None,
                   help="write ids to a .npy (int64, one row per image), .json or .jsonl file instead of stdout")
    s.add_argument("--batch-size", type=positive_int, default=32, help="images encoded at once")
    s.add_argument("--num-tokens", type=positive_int, default=None,
                   help="variable-length models: keep the first K tokens of each image")
    s.add_argument("--target", default=None, metavar="METRIC=VALUE",
                   help="variable-length models: per image the shortest prefix whose reconstruction meets "
                        "e.g. psnr=25, ssim=0.8 or lpips=0.2 (psnr/ssim at least, lpips at most); .npy rows "
                        "are then padded with -1")
    s.set_defaults(func=cmd_tokenize)
    audio_options(s)
    quiet_option(s)

    s = sub.add_parser("reconstruct", help="tokenize an image and decode it back")
    s.add_argument("image", type=Path)
    model_args(s)
    s.add_argument("-o", "--output", required=True, type=Path,
                   help="output image; the extension picks the format (.png, .jpg, .webp, ...)")
    s.set_defaults(func=cmd_reconstruct)
    audio_options(s)

    # parsed by zoo.training.cli_config (jsonargparse): RECIPE | --config FILE, --section.key VALUE,
    # --set key=value, --print_config, --resume last|auto|CKPT, --quiet; `zoo train --help` lists them
    s = sub.add_parser("train", help="train a tokenizer from a YAML recipe (LightningCLI-style options)",
                       add_help=False, prefix_chars="\x00")
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_train)

    from zoo.convert import list_converters

    s = sub.add_parser("convert", help="convert an official checkpoint into a save_pretrained folder")
    s.add_argument("path", type=Path, help="official checkpoint: a folder, or a .safetensors / .bin file")
    s.add_argument("--from", dest="source", required=True, choices=list_converters(), help="where it comes from")
    s.add_argument("--model", required=True, help="registered variant to load it into, e.g. titok_l_32")
    s.add_argument("-o", "--output", required=True, type=Path, help="output folder (save_pretrained layout)")
    s.set_defaults(func=cmd_convert)
    quiet_option(s)

    from zoo.generate import add_generate_args, run_generate_cli
    from zoo.tokens.export import add_tokenize_dataset_args, run_tokenize_dataset_cli

    s = sub.add_parser("tokenize-dataset", help="encode an image/audio folder into token shards (resumable)")
    add_tokenize_dataset_args(s)
    quiet_option(s)
    s.set_defaults(func=run_tokenize_dataset_cli)

    s = sub.add_parser("generate", help="sample an AR generator trained on tokens and decode (grid PNG / wav)")
    add_generate_args(s)
    s.set_defaults(func=run_generate_cli)

    _add_optional_commands(sub)
    return p


def _add_optional_commands(sub) -> None:
    """Commands whose modules may pull extra dependencies register here."""
    try:
        from zoo.evaluate import add_eval_args, run_eval_cli
    except ImportError:
        return
    s = sub.add_parser("eval", help="reconstruction metrics (PSNR, SSIM, rFID, pFID, ...) of a tokenizer")
    add_eval_args(s)
    quiet_option(s)
    s.set_defaults(func=run_eval_cli)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if getattr(args, "quiet", False):
        apply_quiet(args)
    try:
        return args.func(args)
    except ZooError as e:
        if args.verbose:
            raise
        print(f"zoo {args.command}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
