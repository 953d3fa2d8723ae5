"""The audio half of ``zoo eval``: each file through encode/decode at each bandwidth (one file per step)."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from zoo.errors import InputError
from zoo.evaluate.common import AUDIO_EXTENSIONS, DataLog, finite, list_files, mean_of
from zoo.metrics.audio import (bitrate_kbps, log_mel, match_length, mel_distance, pesq, si_sdr, stoi,
                               unavailable_metrics)
from zoo.metrics.codebook import CodeUsage

log = logging.getLogger(__name__)


def read_audio(raw: bytes, sample_rate: int, max_seconds: float | None) -> torch.Tensor:
    """File bytes -> mono (T,) float32 at ``sample_rate`` (soundfile, channel mean, resampled)."""
    import soundfile as sf
    import torchaudio

    data, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(1)))
    if wav.numel() == 0:
        raise InputError("the file holds no samples")
    if not torch.isfinite(wav).all():
        raise InputError("the file holds NaN or Inf samples")
    if sr != sample_rate:
        wav = torchaudio.functional.resample(wav, sr, sample_rate)
    if max_seconds is not None:
        wav = wav[: int(max_seconds * sample_rate)]
    return wav


def _asr(asr: Any, notes: list[str]):
    if asr is None:
        notes.append("WER/CER not computed (no ASR)")
        return None
    if asr != "default":
        return asr
    from zoo.metrics.asr import ASRUnavailable, load_default_asr

    try:
        return load_default_asr()
    except ASRUnavailable as e:
        notes.append(f"WER/CER not computed: {e}")
        return None


def run_audio_eval(model: torch.nn.Module, data_dir: Path, *, out: Path, bandwidths: list[float] | None,
                   limit: int | None, seed: int, asr: Any, max_seconds: float | None, device: torch.device,
                   settings: dict[str, Any], notes: list[str],
                   progress: bool) -> tuple[DataLog, list[dict[str, Any]], dict[str, str]]:
    """Returns the data log, one result row per bandwidth, and the written picture files."""
    from zoo.metrics.asr import cer, wer

    files = list_files(data_dir, AUDIO_EXTENSIONS, "audio", limit)
    data = DataLog(data_dir, len(files))
    sr = int(model.sample_rate)
    known = [float(b) for b in (getattr(model, "bandwidths", None) or [])]
    if bandwidths:
        bws: list[float | None] = sorted({float(b) for b in bandwidths})
        if known and any(b not in known for b in bws):
            raise InputError(f"--bandwidth {bws}: this model supports {known} kbps")
    else:
        bws = sorted(known) if known else [None]
    recognizer = _asr(asr, notes)
    if recognizer is not None:
        settings["asr"] = getattr(recognizer, "name", type(recognizer).__name__)
    settings["preprocess"] = {"sample_rate": sr, "mono": True, "max_seconds": max_seconds}
    missing = unavailable_metrics()
    notes.extend(f"{metric.upper()} not reported: {why}" for metric, why in missing.items())

    per_bw: dict[Any, dict[str, list]] = {b: {"mel": [], "sisdr": [], "stoi": [], "pesq": [], "hyp": [],
                                             "levels": [], "seconds": []} for b in bws}
    usage = {b: CodeUsage(int(model.vocab_size)) for b in bws}
    refs: list[str] = []
    ref_kind = set()
    asr_of_original: list[str] = []
    spectro: list[tuple[str, np.ndarray]] = []
    with torch.no_grad():
        for path in tqdm(files, desc="eval", unit="file", disable=not progress):
            try:
                raw = path.read_bytes()
                wav = read_audio(raw, sr, max_seconds)
            except Exception as e:  # soundfile raises LibsndfileError/RuntimeError on unreadable files
                data.skip(path, f"{type(e).__name__}: {e}")
                continue
            data.ok(path, raw)
            x = wav.to(device)[None, None].expand(1, int(getattr(model, "channels", 1)), -1)  # (1, C, T), mono copies
            if recognizer is not None:
                hyp0 = recognizer.transcribe(wav.cpu(), sr)
                transcript = path.with_suffix(".txt")
                if transcript.is_file():
                    refs.append(transcript.read_text(encoding="utf-8").strip())
                    ref_kind.add("transcript files")
                else:
                    refs.append(hyp0)
                    ref_kind.add("ASR of the original audio")
                asr_of_original.append(hyp0)
            if not spectro:
                spectro.append((f"original: {path.name}", log_mel(wav.cpu(), sr).numpy()))
            for b in bws:
                ids = model.encode(x) if b is None else model.encode(x, bandwidth=b)
                if ids.ndim != 3 or ids.shape[0] != 1:
                    raise InputError(f"{type(model).__name__}.encode returned ids of shape {tuple(ids.shape)}, "
                                     "expected (1, L, T_frames) (the AudioTokenizer contract)")
                rec = model.decode(ids)
                if rec.ndim != 3 or rec.shape[0] != 1:
                    raise InputError(f"decode returned audio of shape {tuple(rec.shape)}, expected (1, C, T)")
                ref, est = match_length(wav.cpu(), rec[0].float().mean(0).cpu())
                m = per_bw[b]
                m["mel"].append(mel_distance(ref, est, sr))
                m["sisdr"].append(si_sdr(ref, est))
                if "stoi" not in missing:
                    m["stoi"].append(stoi(ref, est, sr))
                if "pesq" not in missing:
                    m["pesq"].append(pesq(ref, est, sr))
                m["levels"].append(int(ids.shape[1]))
                m["seconds"].append(ref.numel() / sr)
                usage[b].update(ids.transpose(1, 2).cpu())  # CodeUsage takes (B, N, L)
                if recognizer is not None:
                    m["hyp"].append(recognizer.transcribe(est, sr))
                if len(spectro) <= len(bws) and data.evaluated == 1:
                    spectro.append((f"{b} kbps" if b is not None else "reconstruction", log_mel(est, sr).numpy()))
    data.check_any("audio")

    rows = []
    for b in bws:
        m = per_bw[b]
        levels = int(round(float(np.mean(m["levels"]))))
        row: dict[str, Any] = {"bandwidth_kbps": b, "bitrate_kbps": bitrate_kbps(float(model.frame_rate), levels,
                                                                                  int(model.vocab_size)),
                               "num_levels": levels, "mel_distance": mean_of(m["mel"]), "si_sdr": mean_of(m["sisdr"]),
                               "stoi": mean_of(m["stoi"]), "pesq": mean_of(m["pesq"]), "wer": None, "cer": None,
                               "codebook_usage": usage[b].usage(), "perplexity": usage[b].perplexity(),
                               "codebook_usage_per_level": [round(float((c > 0).double().mean()), 4)
                                                            for c in usage[b].counts],
                               "num_files": len(m["mel"]), "seconds": round(float(np.sum(m["seconds"])), 2)}
        if any(np.isnan(v) for v in m["pesq"]):
            notes.append(f"PESQ found no speech in {sum(np.isnan(v) for v in m['pesq'])} file(s) at {b} kbps: "
                         "left out of its mean")
        if recognizer is not None and any(refs):
            row["wer"] = finite(wer(refs, m["hyp"]))
            row["cer"] = finite(cer(refs, m["hyp"]))
        rows.append(row)
    if recognizer is not None:
        settings["wer_reference"] = " + ".join(sorted(ref_kind))
        if "transcript files" in ref_kind and any(refs):
            settings["wer_original"] = finite(wer(refs, asr_of_original))
        if not any(refs):
            notes.append("WER/CER not computed: the ASR heard no words in the original audio")

    written = {}
    from zoo.metrics.plots import save_curves, save_spectrograms

    if spectro:
        spec_path = out.with_name(out.stem + "_spectrogram.png")
        save_spectrograms(spectro, spec_path, f"log-mel spectrograms: {getattr(model, 'name', type(model).__name__)}")
        written["spectrogram"] = spec_path.name
    if len(bws) > 1:
        rd_path = out.with_name(out.stem + "_rd.png")
        save_curves("bitrate_kbps", "bitrate (kbps)", [("mel_distance", "mel distance"), ("si_sdr", "SI-SDR (dB)"),
                                                      ("pesq", "PESQ"), ("wer", "WER")], rows, rd_path,
                    f"rate-distortion: {getattr(model, 'name', type(model).__name__)}")
        written["rd_curve"] = rd_path.name
    return data, rows, written
