"""SEANet encoder/decoder for audio codecs (SoundStream / EnCodec / DAC / SpeechTokenizer style).

Waveforms (B, C, T) go through strided 1D convolutions with residual units to latents (B, D, T / hop)
and back. Everything the codec families differ in is a config field (:class:`SEANetConfig`): filters,
strides, residual kernel and dilations, bottleneck ``compress``, 1x1 or identity shortcut, ELU or
Snake, weight norm / time group norm / none, optional (Bi)LSTM with skip, causal or centred padding,
reflect or zero padding, final tanh.

Padding follows one rule for every conv: a conv of effective kernel ``k`` and stride ``s`` pads
``k - s`` samples (all on the left when causal, split with the extra sample on the left otherwise)
plus, on the right, whatever completes the last frame. A transposed conv trims ``k - s`` samples the
same way. With inputs whose length is a multiple of the hop no right padding is ever needed, so a
causal stack run chunk by chunk with the :meth:`step` API (each conv keeps its left context, each
transposed conv its overlap tail, each LSTM its state) gives exactly the whole-file output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError

NORMS = ("none", "weight_norm", "time_group_norm")
ACTIVATIONS = ("elu", "snake")
PAD_MODES = ("reflect", "constant")

#: per-module streaming state: module -> buffer / LSTM state (created by :func:`new_stream_state`)
StreamState = dict


def new_stream_state() -> StreamState:
    """An empty streaming state for :meth:`SEANetEncoder.step` / :meth:`SEANetDecoder.step`."""
    return {}


# -- convolutions --------------------------------------------------------------------------------
class NormConv1d(nn.Module):
    """A 1D conv (or transposed conv) whose weight is plain or weight-normed.

    With weight norm the parameters are ``weight_g`` (out, 1, 1) (``(in, 1, 1)`` for a transposed conv,
    norm over every dim but 0, as ``torch.nn.utils.weight_norm``) and ``weight_v``, plus ``bias``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 *, weight_norm: bool = True, transpose: bool = False, bias: bool = True):
        super().__init__()
        self.stride, self.dilation, self.transpose = stride, dilation, transpose
        ref = (nn.ConvTranspose1d if transpose else nn.Conv1d)(in_ch, out_ch, kernel_size, stride,
                                                                dilation=dilation, bias=bias)
        self.kernel_size = kernel_size
        self.weight_norm = weight_norm
        if weight_norm:
            w = ref.weight.detach()
            self.weight_g = nn.Parameter(w.flatten(1).norm(dim=1).reshape(-1, 1, 1).clone())
            self.weight_v = nn.Parameter(w.clone())
        else:
            self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone()) if bias else None

    def effective_weight(self) -> torch.Tensor:
        if self.weight_norm:
            return torch._weight_norm(self.weight_v, self.weight_g, 0)
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.effective_weight()
        if self.transpose:
            return F.conv_transpose1d(x, w, self.bias, self.stride, dilation=self.dilation)
        return F.conv1d(x, w, self.bias, self.stride, dilation=self.dilation)


def pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """F.pad that also reflect-pads inputs shorter than the padding (zero-extends them first)."""
    if mode == "reflect":
        length, max_pad = x.shape[-1], max(left, right)
        extra = max_pad - length + 1 if length <= max_pad else 0
        if extra:
            x = F.pad(x, (0, extra))
        y = F.pad(x, (left, right), mode="reflect")
        return y[..., : y.shape[-1] - extra]
    return F.pad(x, (left, right))


class SConv1d(nn.Module):
    """Conv1d with SEANet's padding (causal or centred) and norm. (B, Cin, T) -> (B, Cout, ceil(T / s))."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1, *,
                 causal: bool = False, norm: str = "weight_norm", pad_mode: str = "reflect"):
        super().__init__()
        self.conv = NormConv1d(in_ch, out_ch, kernel_size, stride, dilation, weight_norm=norm == "weight_norm")
        self.norm = nn.GroupNorm(1, out_ch) if norm == "time_group_norm" else nn.Identity()
        self.causal, self.pad_mode = causal, pad_mode
        self.stride = stride
        self.k_eff = (kernel_size - 1) * dilation + 1
        self.padding_total = self.k_eff - stride

    def _extra_padding(self, length: int) -> int:
        n_frames = (length - self.k_eff + self.padding_total) / self.stride + 1
        ideal = (math.ceil(n_frames) - 1) * self.stride + (self.k_eff - self.padding_total)
        return ideal - length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = self._extra_padding(x.shape[-1])
        if self.causal:
            left, right = self.padding_total, extra
        else:
            right = self.padding_total // 2
            left, right = self.padding_total - right, right + extra
        return self.norm(self.conv(pad1d(x, left, right, self.pad_mode)))

    def step(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        """Causal streaming: (B, Cin, n * stride) -> (B, Cout, n), exactly the whole-file frames."""
        buf = state.get(self)
        if buf is None:
            first = state.pop((self, "first"), None)  # reflect padding needs more than padding_total samples
            if first is not None:
                x = torch.cat([first, x], dim=-1)
            if self.pad_mode == "reflect" and x.shape[-1] <= self.padding_total:
                state[(self, "first")] = x
                return x.new_zeros(x.shape[0], self.norm_channels, 0)
            x = pad1d(x, self.padding_total, 0, self.pad_mode)
        else:
            x = torch.cat([buf, x], dim=-1)
        n = (x.shape[-1] - self.k_eff) // self.stride + 1 if x.shape[-1] >= self.k_eff else 0
        state[self] = x[..., n * self.stride:]
        if n == 0:
            return x.new_zeros(x.shape[0], self.norm_channels, 0)
        return self.norm(self.conv(x[..., : (n - 1) * self.stride + self.k_eff]))

    @property
    def norm_channels(self) -> int:
        w = self.conv.weight_v if self.conv.weight_norm else self.conv.weight
        return w.shape[0]


class SConvTranspose1d(nn.Module):
    """ConvTranspose1d trimming ``k - s`` samples (right when causal, centred otherwise): T -> T * s.

    ``trim="symmetric"`` trims ceil((k - s) / 2) on both sides instead (DAC's ``padding=ceil(s / 2)``),
    which gives T * s - 1 samples for odd strides.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, *, causal: bool = False,
                 norm: str = "weight_norm", trim: str = "centred"):
        super().__init__()
        self.conv = NormConv1d(in_ch, out_ch, kernel_size, stride, weight_norm=norm == "weight_norm", transpose=True)
        self.norm = nn.GroupNorm(1, out_ch) if norm == "time_group_norm" else nn.Identity()
        self.causal, self.stride, self.trim = causal, stride, trim
        self.padding_total = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))  # the norm sees the untrimmed output (EnCodec's time group norm does)
        if self.causal:
            left, right = 0, self.padding_total
        elif self.trim == "symmetric":  # ceil((k - s) / 2) on both sides: one sample less for odd strides
            left = right = -(-self.padding_total // 2)
        else:
            right = self.padding_total // 2
            left = self.padding_total - right
        return y[..., left: y.shape[-1] - right]

    def step(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        """Causal streaming: (B, Cin, n) -> (B, Cout, n * stride); the overlap tail waits in ``state``."""
        y = self.conv(x)
        tail = state.get(self)
        if tail is not None:
            y = torch.cat([y[..., : tail.shape[-1]] + tail, y[..., tail.shape[-1]:]], dim=-1)
        n = x.shape[-1] * self.stride
        rest = y[..., n:]
        if self.conv.bias is not None:  # the bias is added once, when the samples are final
            rest = rest - self.conv.bias[:, None]
        state[self] = rest
        return self.norm(y[..., :n])


# -- activations, residual units, LSTM -----------------------------------------------------------
class Snake1d(nn.Module):
    """Snake activation x + sin²(αx)/α with a learned α per channel: (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def make_activation(name: str, channels: int) -> nn.Module:
    if name == "elu":
        return nn.ELU(alpha=1.0)
    if name == "snake":
        return Snake1d(channels)
    raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def _step(module: nn.Module, x: torch.Tensor, state: StreamState) -> torch.Tensor:
    step = getattr(module, "step", None)
    return step(x, state) if step is not None else module(x)


class ResidualUnit(nn.Module):
    """act -> conv(k, dilation) -> act -> conv(1) plus a 1x1-conv or identity shortcut."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, *, compress: int, true_skip: bool,
                 activation: str, causal: bool, norm: str, pad_mode: str):
        super().__init__()
        hidden = dim // compress
        conv = dict(causal=causal, norm=norm, pad_mode=pad_mode)
        self.block = nn.Sequential(make_activation(activation, dim), SConv1d(dim, hidden, kernel_size, 1, dilation, **conv),
                                   make_activation(activation, hidden), SConv1d(hidden, dim, 1, **conv))
        self.shortcut = nn.Identity() if true_skip else SConv1d(dim, dim, 1, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)

    def step(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        y = x
        for m in self.block:
            y = _step(m, y, state)
        return _step(self.shortcut, x, state) + y


class SLSTM(nn.Module):
    """LSTM over time with a skip connection: (B, C, T) -> (B, C, T) ((B, 2C, T) when bidirectional,
    the input repeated twice as the skip)."""

    def __init__(self, dim: int, num_layers: int, bidirectional: bool = False):
        super().__init__()
        self.bidirectional = bidirectional
        self.lstm = nn.LSTM(dim, dim, num_layers, bidirectional=bidirectional)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1)
        y, _ = self.lstm(x)
        if self.bidirectional:
            x = x.repeat(1, 1, 2)
        return (y + x).permute(1, 2, 0)

    def step(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        if self.bidirectional:
            raise ConfigError("a bidirectional LSTM cannot stream")
        x = x.permute(2, 0, 1)
        y, state[self] = self.lstm(x, state.get(self))
        return (y + x).permute(1, 2, 0)


# -- encoder / decoder -----------------------------------------------------------------------------
@dataclass
class SEANetConfig:
    """One SEANet stack. ``strides`` in the order applied (encoder: e.g. (2, 4, 5, 8); decoder: (8, 5, 4, 2)).

    Encoder channels: n_filters, doubling at each stride, to ``dimension``; decoder channels:
    ``dimension`` -> n_filters * 2**len(strides), halving at each stride, to ``channels``.
    Each stage has one residual unit per entry of ``dilations`` (kernel ``residual_kernel_size``,
    hidden width dim // compress). ``first_kernel_size``/``last_kernel_size``: the in/out convs.
    """

    channels: int = 1
    dimension: int = 128
    n_filters: int = 32
    strides: tuple[int, ...] = (2, 4, 5, 8)
    first_kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilations: tuple[int, ...] = (1,)
    compress: int = 2
    true_skip: bool = False
    activation: str = "elu"
    norm: str = "weight_norm"
    causal: bool = False
    pad_mode: str = "reflect"
    lstm_layers: int = 0
    bidirectional: bool = False
    final_activation: str | None = None  # decoder only: None or "tanh"
    transpose_trim: str = "centred"  # decoder only: "centred" (EnCodec) or "symmetric" (DAC)

    def __post_init__(self) -> None:
        self.strides = tuple(int(s) for s in self.strides)
        self.dilations = tuple(int(d) for d in self.dilations)
        if not self.strides or any(s < 1 for s in self.strides):
            raise ConfigError(f"strides must be a non-empty list of ints >= 1, got {list(self.strides)}")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.pad_mode not in PAD_MODES:
            raise ConfigError(f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        if self.transpose_trim not in ("centred", "symmetric"):
            raise ConfigError(f"transpose_trim must be 'centred' or 'symmetric', got {self.transpose_trim!r}")
        if self.final_activation not in (None, "tanh"):
            raise ConfigError(f"final_activation must be None or 'tanh', got {self.final_activation!r}")
        if self.causal and self.bidirectional:
            raise ConfigError("a causal SEANet cannot use a bidirectional LSTM")

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    def conv_kwargs(self) -> dict[str, Any]:
        return dict(causal=self.causal, norm=self.norm)

    def residual_units(self, dim: int) -> list[nn.Module]:
        return [ResidualUnit(dim, self.residual_kernel_size, d, compress=self.compress, true_skip=self.true_skip,
                             activation=self.activation, causal=self.causal, norm=self.norm, pad_mode=self.pad_mode)
                for d in self.dilations]


class _Stack(nn.Module):
    model: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def step(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        """Run one chunk causally, keeping what the next chunk needs in ``state``."""
        if not self.config.causal or self.config.norm == "time_group_norm":
            raise ConfigError("streaming needs a causal SEANet without time_group_norm")
        for m in self.model:
            if x.shape[-1] == 0:  # nothing complete yet (the first chunks fill the convs' left context)
                return x.new_zeros(x.shape[0], self.out_channels, 0)
            x = _step(m, x, state)
        return x


class SEANetEncoder(_Stack):
    """(B, channels, T) -> (B, dimension, T / hop) with T a multiple of hop (else ceil)."""

    def __init__(self, config: SEANetConfig):
        super().__init__()
        c = self.config = config
        conv = dict(c.conv_kwargs(), pad_mode=c.pad_mode)
        layers: list[nn.Module] = [SConv1d(c.channels, c.n_filters, c.first_kernel_size, **conv)]
        dim = c.n_filters
        for s in c.strides:
            layers += c.residual_units(dim)
            layers += [make_activation(c.activation, dim), SConv1d(dim, dim * 2, 2 * s, s, **conv)]
            dim *= 2
        if c.lstm_layers:
            layers.append(SLSTM(dim, c.lstm_layers, c.bidirectional))
            dim = dim * 2 if c.bidirectional else dim
        layers += [make_activation(c.activation, dim), SConv1d(dim, c.dimension, c.last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)
        self.out_channels = c.dimension


class SEANetDecoder(_Stack):
    """(B, dimension, N) -> (B, channels, N * hop)."""

    def __init__(self, config: SEANetConfig):
        super().__init__()
        c = self.config = config
        conv = dict(c.conv_kwargs(), pad_mode=c.pad_mode)
        dim = c.n_filters * 2 ** len(c.strides)
        layers: list[nn.Module] = [SConv1d(c.dimension, dim, c.first_kernel_size, **conv)]
        if c.lstm_layers:
            layers.append(SLSTM(dim, c.lstm_layers, c.bidirectional))
            if c.bidirectional:
                raise ConfigError("the decoder's LSTM must be unidirectional")
        for s in c.strides:
            layers += [make_activation(c.activation, dim), SConvTranspose1d(dim, dim // 2, 2 * s, s, **c.conv_kwargs(),
                                                                        trim=c.transpose_trim)]
            dim //= 2
            layers += c.residual_units(dim)
        layers += [make_activation(c.activation, dim), SConv1d(dim, c.channels, c.last_kernel_size, **conv)]
        if c.final_activation == "tanh":
            layers.append(nn.Tanh())
        self.model = nn.Sequential(*layers)
        self.out_channels = c.channels


def as_seanet_config(value: SEANetConfig | dict[str, Any]) -> SEANetConfig:
    """A config from a dataclass or the dict ``config.json`` holds."""
    if isinstance(value, SEANetConfig):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"expected a SEANet config (dict), got {type(value).__name__}")
    names = set(SEANetConfig.__dataclass_fields__)
    unknown = sorted(set(value) - names)
    if unknown:
        raise ConfigError(f"unknown SEANet config field(s) {unknown}; valid: {sorted(names)}")
    return SEANetConfig(**value)


__all__ = ["NormConv1d", "ResidualUnit", "SConv1d", "SConvTranspose1d", "SEANetConfig", "SEANetDecoder",
           "SEANetEncoder", "SLSTM", "Snake1d", "StreamState", "as_seanet_config", "new_stream_state", "pad1d"]
