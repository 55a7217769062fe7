"""The generalisation measures of the literature (Jiang et al. 2020; Dziugaite et al. 2020),
against which compression is ranked (`analysis.generalisation`).

W_k are the weight matrices of the network's convolutions and linear maps (a kernel of shape
(out, in, kh, kw) read as (out, in·kh·kw)); biases and batch-norm parameters are not W_k. w is
every parameter flattened, w⁰ the same at initialisation. Every sum is in float64.

    sum_squared_weights    Σ_k ‖W_k‖²_F
    distance_from_init     ‖w − w⁰‖₂
    log_spectral_product   Σ_k log ‖W_k‖²₂            (log of the product of squared norms)
    path_norm              Σ_j f_{w²}(𝟙)_j: every parameter squared, an all-ones input
    margin_p10             the 10th percentile over the samples of f(x)_y − max_{j≠y} f(x)_j
    pac_bayes_flatness     1/σ², σ the largest noise scale at which u ~ N(0, (σ|w| + ε)²)
                           added to every parameter lowers the accuracy by ≤ `drop` on average
                           (magnitude-aware, Jiang et al.'s eq. 61; bisection, Monte Carlo)

The thesis' networks normalise every batch by its own statistics, which an all-ones input
does not have: `path_norm` first freezes each such batch norm at the statistics of the given
samples (as a network with running statistics is evaluated), then squares the parameters.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from raycompress.sampling import Split, batch_indices
from raycompress.schema import Baseline
from raycompress.seeds import Stream, derive_seed

NOISE_FLOOR = 1e-3  # ε of the magnitude-aware noise: weights at 0 still get some
ACCURACY_DROP = 0.1  # Jiang et al.'s target loss of training accuracy
BISECTION_STEPS = 15
NOISE_DRAWS = 10  # Monte-Carlo draws of the noise per bisection step
SIGMA_HIGH = 2.0  # the bisection's upper end: noise twice each weight's magnitude
MARGIN_QUANTILE = 0.1


def weight_matrices(model: nn.Module) -> list[Tensor]:
    """W_k: every convolution's and linear map's weight as a float64 matrix (out, rest)."""
    layers = (nn.Linear, nn.modules.conv._ConvNd)
    return [m.weight.detach().double().flatten(1) for m in model.modules() if isinstance(m, layers)]


def sum_squared_weights(model: nn.Module) -> float:
    """Σ_k ‖W_k‖²_F."""
    return float(sum((w**2).sum() for w in weight_matrices(model)))


def distance_from_init(model: nn.Module, initial: dict[str, Tensor]) -> float:
    """‖w − w⁰‖₂ over every parameter; `initial` maps parameter names to w⁰."""
    squares = sum(
        ((p.detach().double() - initial[name].double()) ** 2).sum()
        for name, p in model.named_parameters()
    )
    return float(torch.as_tensor(squares).sqrt())


def log_spectral_product(model: nn.Module) -> float:
    """Σ_k log ‖W_k‖²₂, ‖·‖₂ the largest singular value."""
    return float(sum(2 * torch.linalg.matrix_norm(w, ord=2).log() for w in weight_matrices(model)))


def _frozen_batch_norms(
    model: nn.Module, x: Tensor, batch_size: int, generator: torch.Generator
) -> nn.Module:
    """A copy of `model` in evaluation mode whose batch norms without running statistics use
    fixed ones instead: the mean and (biased, as in training) variance of their inputs over
    `x`'s seeded batches, averaged over the batches."""
    frozen = copy.deepcopy(model)
    norms = [
        m for m in frozen.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats
    ]  # fmt: skip
    seen: dict[nn.Module, list[tuple[Tensor, Tensor]]] = {norm: [] for norm in norms}

    def record(norm: nn.Module, args: tuple[Tensor, ...]) -> None:
        dims = [0, *range(2, args[0].dim())]
        seen[norm].append((args[0].mean(dims), args[0].var(dims, unbiased=False)))

    hooks = [norm.register_forward_pre_hook(record) for norm in norms]
    with torch.no_grad():
        for index in batch_indices(len(x), batch_size, generator) if norms else []:
            frozen(x[index])
    for hook in hooks:
        hook.remove()
    for norm, stats in seen.items():
        means, variances = (torch.stack(s).mean(0) for s in zip(*stats, strict=True))
        norm.track_running_stats = True
        norm.register_buffer("running_mean", means)
        norm.register_buffer("running_var", variances)
    return frozen.eval()


def path_norm(model: nn.Module, x: Tensor, batch_size: int, generator: torch.Generator) -> float:
    """Σ_j f_{w²}(𝟙)_j: the network with every parameter squared on one all-ones input, its
    batch norms frozen at the statistics of `x` (samples, as the network takes them)."""
    squared = _frozen_batch_norms(model, x, batch_size, generator).double()
    with torch.no_grad():
        for p in squared.parameters():
            p.pow_(2)
        out = squared(torch.ones_like(x[:1], dtype=torch.float64))
    return float(out.sum())


def logits(model: nn.Module, split: Split, batch_size: int, generator: torch.Generator) -> Tensor:
    """The network's outputs on `split` (evaluation mode), in sample order; computed in seeded
    class-mixed batches, which a batch-statistics batch norm needs."""
    model.eval()
    out = torch.empty(len(split), 0)
    with torch.no_grad():
        for index in batch_indices(len(split), batch_size, generator):
            batch = model(split.x[index])
            if not out.numel():
                out = batch.new_empty(len(split), batch.shape[1])
            out[index] = batch
    return out


def margins(out: Tensor, y: Tensor) -> Tensor:
    """f(x)_y − max_{j≠y} f(x)_j per sample (float64)."""
    out = out.double()
    correct = out.gather(1, y[:, None]).squeeze(1)
    others = out.scatter(1, y[:, None], -torch.inf).amax(1)
    return correct - others


def margin_p10(
    model: nn.Module, split: Split, batch_size: int, generator: torch.Generator
) -> float:
    """The 10th percentile of the margins over `split`'s samples."""
    out = logits(model, split, batch_size, generator)
    return float(torch.quantile(margins(out, split.y), MARGIN_QUANTILE))


def accuracy(model: nn.Module, split: Split, batch_size: int, generator: torch.Generator) -> float:
    out = logits(model, split, batch_size, generator)
    return float((out.argmax(1) == split.y).double().mean())


@dataclass(frozen=True)
class Flatness:
    """The PAC-Bayes flatness found: 1/σ², σ, and how the bisection got there."""

    value: float
    sigma: float
    clean_accuracy: float
    steps: int
    draws: int

    def note(self) -> str:
        # σ within one bisection step of the upper end: any noise tried left the accuracy
        censored = self.sigma >= SIGMA_HIGH * (1 - 2.0**-self.steps)
        bound = f" (the search's upper end: flatness ≤ {1 / SIGMA_HIGH**2:g} is a bound)"
        return (
            f"sigma {self.sigma:.4g}{bound if censored else ''}; "
            f"accuracy {self.clean_accuracy:.4f} without noise; "
            f"{self.steps} bisection steps x {self.draws} draws, drop {ACCURACY_DROP}, "
            f"noise std sigma*|w| + {NOISE_FLOOR}"
        )


def pac_bayes_flatness(
    model: nn.Module,
    split: Split,
    batch_size: int,
    generator: torch.Generator,
    steps: int = BISECTION_STEPS,
    draws: int = NOISE_DRAWS,
) -> Flatness:
    """Magnitude-aware PAC-Bayes flatness 1/σ²: bisection over σ ∈ (0, SIGMA_HIGH] for the
    largest σ whose mean accuracy over `draws` noisy copies is ≥ clean − ACCURACY_DROP."""
    clean = accuracy(model, split, batch_size, generator)
    noisy = copy.deepcopy(model)
    weights = [p.detach().clone() for p in model.parameters()]
    low, high = 0.0, SIGMA_HIGH
    for _ in range(steps):
        sigma = (low + high) / 2
        total = 0.0
        for _ in range(draws):
            with torch.no_grad():
                for p, w in zip(noisy.parameters(), weights, strict=True):
                    noise = torch.randn(w.shape, generator=generator, dtype=w.dtype)
                    p.copy_(w + noise.to(w.device) * (sigma * w.abs() + NOISE_FLOOR))
            total += accuracy(noisy, split, batch_size, generator)
        if clean - total / draws > ACCURACY_DROP:
            high = sigma
        else:
            low = sigma
    sigma = (low + high) / 2
    return Flatness(1 / sigma**2, sigma, clean, steps, draws)


def subset(split: Split, size: int, generator: torch.Generator) -> Split:
    """`size` samples of `split` drawn without replacement (all of it when it is smaller)."""
    if size >= len(split):
        return split
    return split.subset(torch.randperm(len(split), generator=generator)[:size])


FLATNESS_SAMPLES = 2_000  # training samples behind each noisy accuracy: 150 passes per run


def measure_baselines(
    model: nn.Module, initial: dict[str, Tensor], train: Split, batch_size: int, seed: int
) -> dict[Baseline, tuple[float, str]]:
    """Every baseline of `schema.Baseline` on the training split: (value, note) each. `seed`
    (the run's) seeds the batch orders and the noise (`seeds.Stream.FLATNESS`)."""
    generator = torch.Generator().manual_seed(derive_seed(seed, Stream.FLATNESS))
    flat = pac_bayes_flatness(model, subset(train, FLATNESS_SAMPLES, generator), batch_size,
                              generator)  # fmt: skip
    return {
        Baseline.SUM_SQUARED_WEIGHTS: (sum_squared_weights(model), ""),
        Baseline.DISTANCE_FROM_INIT: (distance_from_init(model, initial), ""),
        Baseline.LOG_SPECTRAL_PRODUCT: (log_spectral_product(model), ""),
        Baseline.PATH_NORM: (path_norm(model, train.x, batch_size, generator), ""),
        Baseline.MARGIN: (margin_p10(model, train, batch_size, generator), ""),
        Baseline.PAC_BAYES_FLATNESS: (flat.value, flat.note()),
    }
