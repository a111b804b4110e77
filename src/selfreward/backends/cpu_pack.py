"""bf16 linear layers with their weights packed once for oneDNN, for inference on a CPU.

A plain bf16 `nn.Linear` on a CPU goes through oneDNN, which reorders the weight into its blocked layout at every
call: in a decoding step of a small model, where each matrix multiplies a few rows, that reorder is most of the
work. Packing each weight once (what torch.compile's weight freezing does, without the compilation) makes every
projection of SmolLM2-135M 1.5-2.4x faster on an AMX CPU, at any batch, with bit-identical outputs; the measurement
is in docs/benchmarks.md. fp32 and fp16 are left alone: packed, they are not bit-identical, and fp32's plain path
(MKL) is as fast at one row.
"""

from __future__ import annotations

import torch

from selfreward.memory import release


class PackedLinear(torch.nn.Module):
    """An `nn.Linear`'s forward pass (inference only) with its weight packed once."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def can_pack(model: torch.nn.Module) -> bool:
    """A bf16 model on a CPU whose oneDNN runs bf16 (AVX-512 BF16 or AMX)."""
    parameter = next(model.parameters(), None)
    return (parameter is not None and parameter.device.type == "cpu" and parameter.dtype == torch.bfloat16
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def pack_linears(model: torch.nn.Module) -> int:
    """Every plain `nn.Linear` of the model (not a subclass: a quantized or adapter layer keeps its own forward)
    replaced in place by a PackedLinear; the number replaced. A tied output layer gets a packed copy of its own, and
    the embedding keeps the original. The replaced weights' memory goes back to the system (glibc keeps it
    otherwise: 0.26 GB more resident for the default model)."""
    if not can_pack(model):
        return 0
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(module, name, PackedLinear(child))
                replaced += 1
    release()
    return replaced
