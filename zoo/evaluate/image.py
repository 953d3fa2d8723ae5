"""The image half of ``zoo eval``: batches of images through encode/decode at each token length."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from zoo.errors import InputError
from zoo.evaluate.common import (IMAGE_EXTENSIONS, DataLog, codebook_of, finite, iter_image_batches,
                                 list_files, mean_of)
from zoo.metrics.codebook import CodeUsage, bits_per_image
from zoo.metrics.image import load_lpips, psnr, ssim
from zoo.metrics.perturb import nearest_codes, perturb_tokens_indexed

log = logging.getLogger(__name__)


def encode_at(model: torch.nn.Module, images: torch.Tensor, k: int) -> torch.Tensor:
    """ids (B, k): ``encode(images, num_tokens=k)`` for variable-length models, else ``encode(images)``."""
    if getattr(model, "variable_length", False):
        ids = model.encode(images, num_tokens=k)
    else:
        ids = model.encode(images)
    if ids.ndim != 2 or ids.shape != (images.shape[0], k):
        raise InputError(f"{type(model).__name__}.encode returned ids of shape {tuple(ids.shape)}, "
                         f"expected {(images.shape[0], k)}")
    return ids


def run_image_eval(model: torch.nn.Module, data_dir: Path, *, out: Path, lengths: list[int], limit: int | None,
                   batch_size: int, seed: int, fid: bool, fid_weights: Any,
                   feature_extractor: Callable[[torch.Tensor], torch.Tensor] | None, pfid: bool, pfid_rate: float,
                   pfid_delta: int, lpips: bool, lpips_net: str, resize: str, device: torch.device,
                   grid_size: int, settings: dict[str, Any], notes: list[str],
                   progress: bool) -> tuple[DataLog, list[dict[str, Any]], dict[str, str]]:
    """Returns the data log, one result row per token length, and the written picture files."""
    from zoo.metrics.fid import FIDAccumulator, load_fid_extractor

    files = list_files(data_dir, IMAGE_EXTENSIONS, "image", limit)
    data = DataLog(data_dir, len(files))
    size = int(model.input_size)

    fid_acc = None
    if fid:
        extractor = feature_extractor if feature_extractor is not None else load_fid_extractor(fid_weights, device=device)
        fid_acc = FIDAccumulator(extractor)
        settings["fid_extractor"] = getattr(extractor, "source", None) or getattr(extractor, "name", None) \
            or type(extractor).__name__
    else:
        notes.append("rFID/pFID not computed (--no-fid)")

    neighbours = None
    if fid and pfid:
        try:
            codebook, cosine = codebook_of(model)
            neighbours = nearest_codes(codebook, min(pfid_delta, codebook.shape[0]), cosine=cosine).cpu()
            settings["pfid"] = {"rate": pfid_rate, "delta": int(neighbours.shape[1]), "seed": seed,
                                "cosine": cosine, "definition": "RobusTok (arXiv 2503.08354): in every image "
                                "round(rate*N) random token positions each replaced by a uniform draw from the "
                                "delta nearest codes of its code (itself included)"}
            if neighbours.shape[1] != pfid_delta:
                notes.append(f"pFID delta lowered from {pfid_delta} to the codebook size {neighbours.shape[1]}")
        except InputError as e:
            notes.append(f"pFID not computed: {e}")

    lpips_metric = None
    if lpips:
        lpips_metric, lpips_note = load_lpips(lpips_net, device)
        if lpips_metric is None:
            notes.append(lpips_note)
        settings["lpips"] = lpips_note

    per_k: dict[int, dict[str, list[float]]] = {k: {"psnr": [], "ssim": [], "lpips": [], "psnr_perturbed": []}
                                               for k in lengths}
    usage = {k: CodeUsage(int(model.vocab_size)) for k in lengths}
    grid: dict[str, list[torch.Tensor]] = {}
    kept = 0
    seen = 0  # images before this batch: the index that seeds each image's pFID perturbation
    batches = iter_image_batches(files, size, resize, batch_size, data)
    bar = tqdm(batches, total=-(-len(files) // batch_size), desc="eval", unit="batch", disable=not progress)
    with torch.no_grad():
        for images in bar:
            x = images.to(device)
            keep = max(0, min(grid_size - kept, x.shape[0]))
            if keep:
                grid.setdefault("original", []).append(x[:keep].cpu())
            if fid_acc is not None:
                fid_acc.update("real", x)
            for k in lengths:
                ids = encode_at(model, x, k)
                rec = model.decode(ids).float().clamp(0, 1)
                if rec.shape != x.shape:
                    raise InputError(f"decode returned images of shape {tuple(rec.shape)}, expected {tuple(x.shape)}")
                usage[k].update(ids)
                m = per_k[k]
                m["psnr"] += psnr(x, rec).tolist()
                m["ssim"] += ssim(x, rec).tolist()
                if lpips_metric is not None:
                    m["lpips"] += lpips_metric(x, rec).tolist()
                if fid_acc is not None:
                    fid_acc.update(f"recon@{k}", rec)
                if keep:
                    grid.setdefault(f"{k} tokens", []).append(rec[:keep].cpu())
                if neighbours is not None:
                    pids = perturb_tokens_indexed(ids.cpu(), neighbours, pfid_rate, seed=seed,
                                                  first_index=seen).to(ids.device)
                    prec = model.decode(pids).float().clamp(0, 1)
                    fid_acc.update(f"perturbed@{k}", prec)
                    m["psnr_perturbed"] += psnr(x, prec).tolist()
                    if keep:
                        grid.setdefault(f"{k} perturbed", []).append(prec[:keep].cpu())
            kept += keep
            seen += x.shape[0]
    data.check_any("image")

    rows = []
    for k in lengths:
        m = per_k[k]
        row: dict[str, Any] = {"num_tokens": k, "bits_per_image": bits_per_image(k, int(model.vocab_size)),
                               "psnr": mean_of(m["psnr"]), "ssim": mean_of(m["ssim"]),
                               "lpips": mean_of(m["lpips"]) if lpips_metric is not None else None,
                               "rfid": None, "pfid": None, "psnr_perturbed": mean_of(m["psnr_perturbed"]),
                               "codebook_usage": usage[k].usage(), "perplexity": usage[k].perplexity(),
                               "num_images": len(m["psnr"])}
        if fid_acc is not None:
            if data.evaluated < 2:
                notes.append("rFID/pFID need at least 2 images")
            else:
                row["rfid"] = finite(fid_acc.compute("real", f"recon@{k}"))
                if neighbours is not None:
                    row["pfid"] = finite(fid_acc.compute("real", f"perturbed@{k}"))
        rows.append(row)
    if fid_acc is not None and 2 <= data.evaluated < 2048:
        notes.append(f"FID on {data.evaluated} images is biased upward (the usual protocol uses 50,000); "
                     "compare runs only at the same data and count")
    settings["preprocess"] = {"input_size": size, "resize": resize, "resized_from": data.resized}
    if data.resized:
        total = sum(data.resized.values())
        how = {"center-crop": "resized (shorter side) and center-cropped", "resize": "resized"}.get(resize, resize)
        notes.append(f"{total} image(s) not {size}x{size} were {how} to {size}x{size} (sizes: "
                     + ", ".join(f"{s} x{n}" for s, n in sorted(data.resized.items())[:5]) + ")")
    if settings.get("lpips") and lpips_metric is None:
        settings["lpips"] = None

    written = {}
    from zoo.metrics.plots import save_curves, save_grid

    if grid:
        grid_path = out.with_name(out.stem + "_grid.png")
        save_grid([(label, torch.cat(t)) for label, t in grid.items()], grid_path)
        written["grid"] = grid_path.name
    if len(lengths) > 1:
        rd_path = out.with_name(out.stem + "_rd.png")
        save_curves("num_tokens", "tokens per image", [("psnr", "PSNR (dB)"), ("lpips", "LPIPS"), ("rfid", "rFID")],
                    rows, rd_path, f"rate-distortion: {getattr(model, 'name', type(model).__name__)}",
                    log_x=True, extra={"rfid": ("pfid", "pFID")})
        written["rd_curve"] = rd_path.name
    return data, rows, written
