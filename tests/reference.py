"""Independent float64 references and synthetic data for the metric tests."""

from __future__ import annotations

import torch


def dense_reference(h: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, float]:
    """tr(Σ_W Σ_B⁺) and friends from dense float64 covariances and torch's pseudo-inverse."""
    h = h.reshape(h.shape[0], -1).double()
    n = h.shape[0]
    present = [c for c in range(num_classes) if (y == c).any()]
    means = torch.stack([h[y == c].mean(0) for c in present])
    counts = torch.tensor([(y == c).sum() for c in present], dtype=torch.float64)
    mu = h.mean(0)
    centred = h - means[torch.searchsorted(torch.tensor(present), y)]
    sigma_w = centred.T @ centred / n
    sigma_b = ((means - mu).T * counts) @ (means - mu) / n
    return {
        "nc_trace": float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True))),
        "within_trace": float(torch.trace(sigma_w)),
        "between_trace": float(torch.trace(sigma_b)),
        "rank": int(torch.linalg.matrix_rank(sigma_b, hermitian=True)),
    }


def clustered(
    counts: list[int], dim: int, *, spread: float = 3.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters in random order: counts[c] samples of class c, float32 (N, dim)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    y = y[torch.randperm(y.numel(), generator=g)]
    centres = spread * torch.randn(len(counts), dim, generator=g)
    return centres[y] + torch.randn(y.numel(), dim, generator=g), y
