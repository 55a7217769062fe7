"""How training arithmetic runs: precision, memory format and compilation (one `Compute`).

    precision      "fp32" (default); "bf16": bfloat16 autocast over the forward pass, with
                   float32 master weights, gradients and optimiser state; "bf16-true": the
                   thesis' code's convention, weights, gradients and optimiser state in
                   bfloat16 (an update smaller than a weight's 2⁻⁸ is dropped). Decoders, the
                   measuring instrument, never hold bfloat16 weights: under "bf16-true" they
                   train as under "bf16" (`for_decoders`).
    channels_last  convolutions read and write NHWC: the same values up to rounding, faster
                   on the CPU and on GPUs (docs/benchmarks.md, "Precision")
    compile        torch.compile the training forward; code is shared by the fresh decoders
                   of one architecture, and a model that fails to compile runs eagerly, with
                   the reason recorded

Only training is affected. Neural collapse passes and decoder scoring always run in float32
(and accumulate in float64), on a float32 copy of bf16-true weights (`float32`): what the
product reports is never rounded to bfloat16 beyond the trained weights themselves.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from raycompress.models import error_line

NAMES = {  # each precision, as `Compute.describe` records it
    "fp32": "fp32",
    "bf16": "bf16 autocast",
    "bf16-true": "bf16-true (bf16 weights and optimiser state)",
}
PRECISIONS = tuple(NAMES)


@dataclass(frozen=True)
class Compute:
    precision: str = "fp32"
    channels_last: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}"
            )

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the trained weights (and of the inputs fed to them)."""
        return torch.bfloat16 if self.precision == "bf16-true" else torch.float32

    def describe(self) -> str:
        """A short record of what ran, e.g. 'bf16 autocast, channels_last'."""
        parts = [NAMES[self.precision]]
        parts += ["channels_last"] * self.channels_last + ["compiled"] * self.compile
        return ", ".join(parts)

    def for_decoders(self) -> Compute:
        """How decoders train: as this, but autocast in place of bfloat16 weights."""
        bf16_true = self.precision == "bf16-true"
        return dataclasses.replace(self, precision="bf16") if bf16_true else self


DEFAULT = Compute()


def bf16_support(device: torch.device | str) -> str:
    """Why bfloat16 cannot train on `device`, or "" when it can: CUDA needs a GPU with bf16
    (Ampere or newer), the CPU needs AVX-512 BF16 or AMX (elsewhere it is emulated, slower
    than float32)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return "" if torch.cuda.is_bf16_supported() else "this GPU has no bfloat16 support"
    if kind == "cpu":
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return "" if native else "this CPU has no native bfloat16 (AVX-512 BF16 or AMX)"
    return f"bf16 is supported on cpu and cuda devices only, not {kind}"


def check(compute: Compute, device: torch.device | str) -> None:
    """One-line ValueError when `compute` cannot run on `device`: before any training."""
    if compute.precision != "fp32" and (why := bf16_support(device)):
        raise ValueError(
            f"precision {compute.precision!r} cannot run here: {why}; use precision 'fp32'"
        )


def autocast(compute: Compute, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The training forward's context: bfloat16 autocast for "bf16", nothing for "fp32"."""
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=compute.precision == "bf16")


def memory_format(x: Tensor, compute: Compute) -> Tensor:
    """x in the memory format convolutions run fastest in: NHWC for images (B, C, H, W)."""
    if compute.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def prepare(model: nn.Module, compute: Compute) -> nn.Module:
    """The model's weights in `compute`'s dtype, its 4-d ones in its memory format (in place;
    returns the model). Before the optimiser is made: its state takes the weights' dtype."""
    model.to(compute.dtype)
    return model.to(memory_format=torch.channels_last) if compute.channels_last else model


def inputs(x: Tensor, compute: Compute) -> Tensor:
    """A training batch as the weights take it: their dtype, `compute`'s memory format."""
    return memory_format(x, compute).to(compute.dtype)


def float32(model: nn.Module) -> nn.Module:
    """The model as measurements see it: itself when its weights are float32, else a float32
    copy (bf16-true weights, exactly, evaluated in float32)."""
    if all(p.dtype == torch.float32 for p in model.parameters()):
        return model
    return copy.deepcopy(model).float()


class Compiled:
    """`fn` compiled on first use, or `fn` itself when compiling fails: then `fallback` says
    why and the call runs eagerly (compilation is never worth losing a run over)."""

    def __init__(self, fn: Callable, enabled: bool) -> None:
        self.eager = fn
        self.fn = torch.compile(fn) if enabled else fn
        self.fallback = ""

    def __call__(self, *args, **kwargs):
        if self.fn is self.eager:
            return self.eager(*args, **kwargs)
        try:
            return self.fn(*args, **kwargs)
        except Exception as err:  # dynamo, inductor and the C++ toolchain all raise their own
            self.fn = self.eager
            self.fallback = f"compile failed, ran eagerly: {error_line(err)}"
            return self.eager(*args, **kwargs)
