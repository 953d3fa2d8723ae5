"""zoo-quantize: fused Triton kernels for the tokenizer zoo's quantizers (universal Hub kernel).

- ``nearest_code(x, codebook, metric)``: distance + argmin + gather in tiles, O(N + K) memory;
- ``fsq_quantize(z, levels, ...)``: FSQ bound + rounding + id packing;
- ``rfsq_quantize(h, levels, scales)``: residual FSQ, every level in one pass (+ code histogram);
- ``lfq_quantize(x, scale)``: LFQ sign + bit packing;
- ``layers``: ``NearestCode``, ``FSQRound``, ``LFQSign``, ``RFSQRound`` for ``kernels.kernelize``.

Needs only torch and triton. On a CPU the kernels run under ``TRITON_INTERPRET=1`` (slowly).
"""

from . import layers
from ._scalar import fsq_quantize, lfq_quantize, rfsq_quantize
from ._vq import nearest_code

__version__ = "1"
KERNEL_VERSION = 1

__all__ = ["KERNEL_VERSION", "fsq_quantize", "layers", "lfq_quantize", "nearest_code", "rfsq_quantize"]
