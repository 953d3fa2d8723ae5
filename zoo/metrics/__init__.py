"""Evaluation metrics of the zoo: images (PSNR, SSIM, LPIPS, FID, pFID), codebooks, audio, ASR.

Modules import their optional dependencies (scipy, torch-fidelity, pystoi, pesq, faster-whisper)
only when the metric that needs them is called.
"""

from zoo.metrics.codebook import CodeUsage, bits_per_image
from zoo.metrics.fid import (FeatureStats, FIDAccumulator, FIDWeightsMissing, frechet_distance,
                             frechet_distance_from_features, load_fid_extractor)
from zoo.metrics.image import load_lpips, psnr, ssim
from zoo.metrics.perturb import anneal_ratio, nearest_codes, perturb_latents, perturb_tokens

__all__ = ["CodeUsage", "bits_per_image", "FeatureStats", "FIDAccumulator", "FIDWeightsMissing", "frechet_distance",
           "frechet_distance_from_features", "load_fid_extractor", "load_lpips", "psnr", "ssim", "anneal_ratio",
           "nearest_codes", "perturb_latents", "perturb_tokens"]
