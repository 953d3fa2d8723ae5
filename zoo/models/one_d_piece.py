"""One-D-Piece: "Image Tokenizer Meets Quality-Controllable Compression" (Miwa et al., 2025).

TiTok (see :mod:`zoo.models.titok`) trained with **Tail Token Drop**: at every training step the
quantized token sequence is cut to its first k tokens, k ~ Uniform{1..N}, before the decoder (whose
latent position embeddings are sliced to k). The tokens end up ordered coarse to fine, so one model
encodes an image into any number of tokens 1..N:

- ``encode(images, num_tokens=k)`` -> the first k ids (B, k) of the full encoding;
- ``decode(ids)`` takes any length 1..N; ``decode(padded, lengths=...)`` decodes a batch of mixed
  lengths at once (the dropped tail is masked out of the decoder's attention);
- ``encode(images, target="psnr>=25")`` picks per image the shortest prefix that meets a quality
  target (:mod:`zoo.models.adaptive`) and returns :class:`~zoo.models.adaptive.RaggedIds`.

The official encoder uses TiTok's legacy layout (``legacy_layout=True``), and the official
checkpoints are TiTok's two-stage ones with 256 latent tokens (proxy head + MaskGIT-VQGAN decoder).
The tail drop itself is a training option: ``token_drop`` of
:class:`zoo.training.module.ImageTokenizerModule`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from zoo.errors import InputError
from zoo.models.adaptive import RaggedIds, Target, encode_adaptive, ragged_to_padded
from zoo.models.base import _frozen
from zoo.models.titok import TiTok, TiTokConfig, _titok
from zoo.registry import register_model
from zoo.validation import check_ids, check_images


@dataclass
class OneDPieceConfig(TiTokConfig):
    """A TiTok config; One-D-Piece adds no architecture field (the tail drop is a training option)."""


class OneDPiece(TiTok):
    """images (B, 3, H, W) in [0, 1] <-> ids (B, k) in [0, codebook_size), any k in 1..num_tokens."""

    family = "one_d_piece"
    config_class = OneDPieceConfig
    variable_length = True
    #: decode() accepts ``lengths`` for a batch of mixed prefix lengths (used by the adaptive search)
    ragged_decode = True

    @property
    def card_note(self) -> str:
        """The model card's paragraph on variable length (and the two-stage pixel decoder)."""
        n = self.num_tokens
        note = (f"Variable length (Tail Token Drop): `model.encode(images, num_tokens=k)` keeps the first k of the "
                f"{n} tokens (ordered coarse to fine), `model.decode(ids)` takes any k in 1..{n}, and "
                "`model.encode(images, target=\"psnr>=25\")` keeps per image the shortest prefix that meets a "
                "quality target (a `RaggedIds`; `.pad(pad_id)` gives a (B, N) batch plus lengths).")
        if self.config.decoder_head == "proxy":
            note += (" Two-stage design: the parameter count includes the 30.5M-parameter MaskGIT-VQGAN pixel "
                     "decoder and its 1024x256 codebook.")
        return note

    def token_lengths(self) -> range:
        """Every prefix length decodes: range(1, num_tokens + 1)."""
        return range(1, self.num_tokens + 1)

    def check_num_tokens(self, num_tokens: int | None) -> int:
        """``num_tokens`` (None = all) as an int in 1..num_tokens, else :class:`InputError`."""
        if num_tokens is None:
            return self.num_tokens
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or not 1 <= num_tokens <= self.num_tokens:
            raise InputError(f"num_tokens must be an int in [1, {self.num_tokens}] for {self.name}, got {num_tokens!r}")
        return num_tokens

    @torch.no_grad()
    def encode(self, images: torch.Tensor, num_tokens: int | None = None, *,
               target: str | dict[str, Any] | Target | None = None, **search: Any) -> torch.Tensor | RaggedIds:
        """images (B, 3, H, W) in [0, 1] -> ids (B, num_tokens) int64: the first ``num_tokens``
        (default all N) tokens of the full encoding.

        With ``target`` (e.g. ``"psnr>=25"``, ``"ssim>=0.8"``, ``"lpips<=0.2"``), the shortest prefix
        per image meeting it: a :class:`RaggedIds` (see :func:`zoo.models.adaptive.encode_adaptive`,
        which also takes the ``search`` keywords).
        """
        if target is not None:
            if num_tokens is not None:
                raise InputError("give num_tokens (a fixed length) or target (a quality per image), not both")
            return encode_adaptive(self, images, target, **search)
        if search:
            raise InputError(f"unexpected keyword(s) {sorted(search)}: they only apply with target=")
        k = self.check_num_tokens(num_tokens)
        check_images(images, self.input_size)
        with _frozen(self.quantizer):
            ids = self.quantizer(self.encode_latents(images)).ids
        return ids[:, :k]

    @torch.no_grad()
    def decode(self, ids: torch.Tensor | RaggedIds | list[torch.Tensor],
               lengths: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, n), 1 <= n <= N -> images (B, 3, H, W) in [0, 1].

        ``lengths`` (B,): sample b uses only ``ids[b, :lengths[b]]`` (the rest, e.g. the padding of
        :meth:`RaggedIds.pad`, is ignored), so a padded batch of mixed lengths decodes in one call.
        A :class:`RaggedIds` or a list of 1-D id tensors (mixed lengths allowed) is padded first.
        """
        if isinstance(ids, (RaggedIds, list, tuple)):
            ids, lengths = ragged_to_padded(ids, lengths)
        if lengths is None:
            try:
                return super().decode(ids)
            except InputError as e:
                raise InputError(f"{e} (ids padded to mixed lengths, e.g. by RaggedIds.pad, need "
                                 "decode(ids, lengths=lengths))") from None
        lengths = self._check_lengths(ids, lengths)
        ids = torch.where(torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None].to(ids.device),
                          ids, torch.zeros_like(ids))  # padding -> any valid id; it is masked out
        check_ids(ids, self.vocab_size, self.token_lengths())
        ids = ids.to(device=self._device(), dtype=torch.long)
        lengths = lengths.to(self._device())
        return self.decode_latents(self.quantizer.ids_to_vectors(ids), lengths).clamp(0.0, 1.0)

    def decode_latents(self, latents: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """quantized latents (B, n, D) -> images (B, 3, H, W), unclamped; ``lengths`` (B,) masks each
        sample's tail beyond its length (see :class:`zoo.blocks.LatentTokenDecoder`)."""
        return self.render(self.decoder(latents, lengths))

    def render(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder head's output -> pixels (the proxy head goes through the MaskGIT-VQGAN)."""
        if self.config.decoder_head != "proxy":
            return x
        x = torch.einsum("bchw,cd->bdhw", x.softmax(dim=1), self.pixel_quantize.weight)
        return self.pixel_decoder(x)

    def _check_lengths(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
            raise InputError(f"ids must be a (B, n) tensor with lengths, got "
                             f"{tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__}")
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (ids.shape[0],) or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise InputError(f"lengths must be an integer tensor of shape ({ids.shape[0]},) (one per sample), "
                             f"got {lengths.dtype} of shape {tuple(lengths.shape)}")
        if lengths.device.type == "cpu" and lengths.numel():
            lo, hi = int(lengths.min()), int(lengths.max())
            if lo < 1 or hi > ids.shape[1]:
                raise InputError(f"lengths must be in [1, {ids.shape[1]}] (the ids' width), got values in [{lo}, {hi}]")
        return lengths.long()


def _one_d_piece(size: str, **kwargs: Any) -> OneDPieceConfig:
    return OneDPieceConfig(**asdict(_titok(size, size, **kwargs)))


# -- named variants: numbers only ---------------------------------------------------------------
# The official checkpoints (turing-motors/One-D-Piece-*-256): TiTok-S/B/L two-stage with 256 tokens,
# 4,096 l2-normalized codes of dim 12, legacy encoder layout, MaskGIT-VQGAN pixel decoder.
@register_model(OneDPiece, paper="One-D-Piece-S-256", params_official=83_871_247, pixel_decoder=True,
                official_repo="turing-motors/One-D-Piece-S-256")
def one_d_piece_s_256() -> OneDPieceConfig:
    return _one_d_piece("small", num_tokens=256, decoder_head="proxy", legacy_layout=True)


@register_model(OneDPiece, paper="One-D-Piece-B-256", params_official=205_256_463, pixel_decoder=True,
                official_repo="turing-motors/One-D-Piece-B-256")
def one_d_piece_b_256() -> OneDPieceConfig:
    return _one_d_piece("base", num_tokens=256, decoder_head="proxy", legacy_layout=True)


@register_model(OneDPiece, paper="One-D-Piece-L-256", params_official=641_742_863, pixel_decoder=True,
                official_repo="turing-motors/One-D-Piece-L-256")
def one_d_piece_l_256() -> OneDPieceConfig:
    return _one_d_piece("large", num_tokens=256, decoder_head="proxy", legacy_layout=True)


# CPU-sized: 64x64 images, 32 tokens, single-stage pixel head (as titok_nano_32), for tests and demos.
@register_model(OneDPiece, paper=None)
def one_d_piece_nano_32() -> OneDPieceConfig:
    return _one_d_piece("nano", image_size=64, patch_size=8, num_tokens=32, codebook_size=1024,
                        dead_code_threshold=2.0)
