"""Vector quantization (VQ) backed by vector-quantize-pytorch's ``VectorQuantize``.

Training runs the library's forward (EMA or learned codebook, k-means init, dead-code restart,
straight-through or rotation-trick gradients). In eval the nearest-code lookup goes through the
zoo's dispatch instead (fused Triton kernel on CUDA, chunked PyTorch elsewhere), which computes the
same scores as the library and so returns the same ids, in O(N + K) memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from vector_quantize_pytorch import VectorQuantize

from zoo.errors import ConfigError
from zoo.kernels.layers import NearestCode
from zoo.quantize.base import Quantizer, QuantizerAux, QuantizerOutput, kernel_backend, zero_loss
from zoo.quantize.checks import check_bool, check_common, check_float, check_int


@dataclass
class VQConfig:
    """Options of :class:`VectorQuantizer`.

    dim: D of the incoming latents. codebook_size: K. codebook_dim: low-dimensional codebook
    (factorized codes: project D -> codebook_dim, look up, project back) or None for D.
    use_cosine: l2-normalize latents and codes (cosine similarity lookup), as TiTok and ViT-VQGAN do;
    False: Euclidean codes. ema_decay: decay of the EMA codebook update. learnable_codebook: learn
    the codes by gradient (commitment + codebook loss) instead of EMA (Euclidean codes only).
    kmeans_init: initialise codes by k-means on the first batch (kmeans_iters iterations).
    dead_code_threshold: restart codes whose EMA cluster size falls below this (0: off).
    rotation_trick: pass gradients through the rotation trick instead of straight-through.
    lookup_backend: eval lookup: "auto" (Triton on CUDA, chunked PyTorch elsewhere), "torch",
    "triton" or "library" (vector-quantize-pytorch's own forward).
    usage_window: number of recent training calls over which codebook usage is measured.
    """

    dim: int
    codebook_size: int
    codebook_dim: int | None = None
    use_cosine: bool = True
    commitment_weight: float = 0.25
    ema_decay: float = 0.8
    learnable_codebook: bool = False
    kmeans_init: bool = False
    kmeans_iters: int = 10
    dead_code_threshold: float = 0.0
    rotation_trick: bool = False
    lookup_backend: str = "auto"
    usage_window: int = 100

    def __post_init__(self):
        name = type(self).__name__
        self.dim = check_int(name, "dim", self.dim, 1)
        self.codebook_size = check_int(name, "codebook_size", self.codebook_size, 1)
        self.codebook_dim = check_int(name, "codebook_dim", self.codebook_dim, 1, optional=True)
        for flag in ("use_cosine", "learnable_codebook", "kmeans_init", "rotation_trick"):
            check_bool(name, flag, getattr(self, flag))
        self.commitment_weight = check_float(name, "commitment_weight", self.commitment_weight, 0.0)
        self.ema_decay = check_float(name, "ema_decay", self.ema_decay, 0.0, 1.0)
        self.kmeans_iters = check_int(name, "kmeans_iters", self.kmeans_iters, 1)
        self.dead_code_threshold = check_float(name, "dead_code_threshold", self.dead_code_threshold, 0.0)
        if self.learnable_codebook and self.use_cosine:
            raise ConfigError("learnable_codebook needs Euclidean codes (use_cosine=False); "
                              "cosine codes are updated by EMA")
        check_common(self)


def make_vector_quantize(config: VQConfig, **extra) -> VectorQuantize:
    """The library module for ``config`` (``extra`` goes to ``VectorQuantize`` unchanged)."""
    return VectorQuantize(
        dim=config.dim,
        codebook_size=config.codebook_size,
        codebook_dim=config.codebook_dim,
        use_cosine_sim=config.use_cosine,
        commitment_weight=config.commitment_weight,
        decay=config.ema_decay,
        kmeans_init=config.kmeans_init,
        kmeans_iters=config.kmeans_iters,
        threshold_ema_dead_code=config.dead_code_threshold,
        rotation_trick=config.rotation_trick,
        learnable_codebook=config.learnable_codebook,
        ema_update=not config.learnable_codebook,
        **extra,
    )


def eval_lookup(vq: VectorQuantize, x: torch.Tensor, lookup: NearestCode) -> tuple[torch.Tensor, torch.Tensor]:
    """The library's eval forward of one (single-head) ``VectorQuantize``, with the lookup swapped.

    x: (..., dim) -> (quantized (..., dim) in x's dtype, ids (...) int64), the same ids as
    ``vq(x)[1]`` in eval (same projection, same normalization, same scores, same tie rule).
    """
    dtype = x.dtype
    h = vq.project_in(x)
    h = vq._codebook.transform_input(h)  # l2norm for cosine codes, identity otherwise
    embed = vq._codebook.embed[0].detach()
    if not (h.dtype == embed.dtype and h.dtype in (torch.bfloat16, torch.float16)):
        h, embed = h.float(), embed.float()  # the library computes in fp32
    ids, codes = lookup(h, embed, "dot" if vq._codebook.use_cosine_sim else "euclidean")
    return vq.project_out(codes.type(dtype)), ids


def fast_eval_ok(vq: VectorQuantize, initted: bool | None = None) -> bool:
    """Whether :func:`eval_lookup` reproduces the library module (plain single-head codebook).

    ``initted``: the codebook's init flag as known on the host (:class:`InitFlags`); read from the
    buffer when None, which waits for the GPU.
    """
    cb = vq._codebook
    if initted is None:
        initted = bool(cb.initted)
    return (vq.heads == 1 and not cb.affine_param and cb.vq_bridge is None and initted
            and vq.channel_last and not vq.accept_image_fmap and not vq.accept_3d_fmap)


class InitFlags:
    """Host-side copy of the library codebooks' ``initted`` buffers, so an eval forward never reads
    a GPU buffer to choose its path (one ``bool(tensor)`` per level was one host sync per level).

    Read from the buffers on construction and after ``load_state_dict`` (not hot paths); set after
    every library forward (which initialises the codebook, by k-means when configured, in any mode).
    Buffers on the meta device (a model built for its shapes only) cannot be read: they count as
    initialised, as a loaded checkpoint's are.
    """

    def __init__(self, owner: torch.nn.Module, layers: list[VectorQuantize]):
        self.layers = layers
        self.flags = self._read()
        owner.register_load_state_dict_post_hook(_refresh_init_flags)

    def _read(self) -> list[bool]:
        flags = []
        for vq in self.layers:
            initted = vq._codebook.initted
            flags.append(True if initted.is_meta else bool(initted))
        return flags

    def refresh(self) -> None:
        self.flags = self._read()

    def ran_library(self) -> None:
        self.flags = [True] * len(self.layers)

    def fast_ok(self) -> bool:
        return all(fast_eval_ok(vq, flag) for vq, flag in zip(self.layers, self.flags))


def _refresh_init_flags(module: torch.nn.Module, incompatible_keys) -> None:
    """load_state_dict post hook (a module-level function, so copies and pickles of the module work)."""
    module._initted.refresh()


class VectorQuantizer(Quantizer):
    """Nearest-code VQ. x: (B, N, D) -> quantized (B, N, D), ids (B, N) int64 in [0, K)."""

    def __init__(self, config: VQConfig):
        super().__init__(config.dim, config.codebook_size, usage_window=config.usage_window)
        self.config = config
        self.vq = make_vector_quantize(config)
        self.lookup = NearestCode(kernel_backend(config.lookup_backend))
        self._initted = InitFlags(self, [self.vq])

    @property
    def codebook(self) -> torch.Tensor:
        """(K, codebook_dim) code vectors (l2-normalized when ``use_cosine``)."""
        return self.vq.codebook

    def describe(self) -> str:
        c = self.config
        return f"dim={c.dim}, codebook_size={c.codebook_size}, codebook_dim={c.codebook_dim or c.dim}"

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:
        if not self.training and self.config.lookup_backend != "library" and self._initted.fast_ok():
            quantized, ids = eval_lookup(self.vq, x, self.lookup)
            return QuantizerOutput(quantized, ids, QuantizerAux(loss=zero_loss(x), losses={"commitment": zero_loss(x)}))
        quantized, ids, loss, parts = self.vq(x, return_loss_breakdown=True)
        self._initted.ran_library()
        if not self.training:
            loss = zero_loss(x)
        losses = {"commitment": parts.commitment.detach()}
        return QuantizerOutput(quantized, ids, QuantizerAux(loss=loss, losses=losses))

    def ids_to_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        self.check_ids(ids)
        return self.vq.get_output_from_indices(ids.long())
