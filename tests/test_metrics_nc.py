"""Neural-collapse statistics against dense float64 references, closed forms and invariances."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from reference import clustered, dense_reference

from raycompress.metrics import (
    ClassSums,
    DegenerateBetweenClassWarning,
    WithinClassPass,
    WithinScatter,
    between_class,
    nc_stats,
    nc_trace,
)
from raycompress.metrics.nc import nc_trace_from_covariance
from raycompress.schema import NC

CASES = {
    "balanced": ([100] * 10, 50),
    "imbalanced": ([400, 200, 120, 60, 30, 15, 9, 5], 40),
    "dim_below_classes": ([50] * 10, 3),  # D < C − 1: rank Σ_B = D
    "dim_far_above_classes": ([40, 60, 30, 80], 700),  # D ≫ C (and N < D)
}


def scatter_stats(h: torch.Tensor, y: torch.Tensor, num_classes: int, batch: int = 64):
    acc = WithinScatter(num_classes, h[0].numel())
    for hb, yb in zip(h.split(batch), y.split(batch), strict=True):
        acc.update(hb, yb)
    between = between_class(acc.result())
    return nc_trace_from_covariance(acc.within_covariance(), between), acc, between


@pytest.mark.parametrize("case", CASES)
def test_two_pass_matches_dense_reference(case: str) -> None:
    counts, dim = CASES[case]
    h, y = clustered(counts, dim)
    ours = nc_stats(h, y, len(counts))
    ref = dense_reference(h, y, len(counts))
    assert ours.nc_trace == pytest.approx(ref["nc_trace"], rel=1e-8)
    assert ours.nc_within_trace == pytest.approx(ref["within_trace"], rel=1e-10)
    assert ours.nc_between_trace == pytest.approx(ref["between_trace"], rel=1e-10)
    assert ours.nc_rank == ref["rank"] == min(dim, len(counts) - 1)
    assert nc_trace(h, y, len(counts)) == ours.nc_trace


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1] <= 100])
def test_single_pass_scatter_matches_dense_reference(case: str) -> None:
    counts, dim = CASES[case]
    h, y = clustered(counts, dim)
    value, acc, between = scatter_stats(h, y, len(counts))
    ref = dense_reference(h, y, len(counts))
    assert value == pytest.approx(ref["nc_trace"], rel=1e-8)
    assert float(acc.class_sq_dist.sum()) / len(y) == pytest.approx(ref["within_trace"], rel=1e-10)
    assert between.rank == ref["rank"]


def test_scatter_is_stable_where_raw_moments_cancel() -> None:
    # Nearly collapsed representations far from the origin: Σ h hᵀ/N − μ̄μ̄ᵀ loses every digit.
    h, y = clustered([200] * 5, 8, spread=1.0)
    offsets = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h = (1e4 + h.double() * 1e-3 + offsets[y] * 10).float()
    h = h.double()  # keep exact inputs for the reference
    value, acc, _ = scatter_stats(h, y, 5)
    ref = dense_reference(h, y, 5)
    assert value == pytest.approx(ref["nc_trace"], rel=1e-8)
    naive_w = h.T @ h / len(y) - torch.stack([h[y == c].mean(0) for c in range(5)]).pow(2).mean(0)
    naive_within = float(naive_w.sum())
    assert (
        abs(naive_within - ref["within_trace"]) > 1e-3 * ref["within_trace"]
    )  # the hazard is real
    assert float(acc.class_sq_dist.sum()) / len(y) == pytest.approx(ref["within_trace"], rel=1e-8)


def test_scatter_merge_is_associative() -> None:
    h, y = clustered([30, 50, 20], 6)
    whole = WithinScatter.from_batch(h, y, 3)
    left, right = (
        WithinScatter.from_batch(h[:37], y[:37], 3),
        WithinScatter.from_batch(h[37:], y[37:], 3),
    )
    left.merge(right)
    torch.testing.assert_close(left.scatter, whole.scatter, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(left.means, whole.means, rtol=1e-12, atol=1e-12)


def test_perfect_collapse_is_zero() -> None:
    h, y = clustered([20, 30, 40, 10], 12)
    means = torch.stack([h[y == c].mean(0) for c in range(4)])
    collapsed = means[y]
    assert nc_trace(collapsed, y, 4) == pytest.approx(0, abs=1e-20)
    assert scatter_stats(collapsed, y, 4)[0] == pytest.approx(0, abs=1e-20)
    assert nc_stats(collapsed, y, 4).nc_cdnv == pytest.approx(0, abs=1e-20)


def test_equal_class_means_give_a_defined_result_and_a_warning() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(25, 7, generator=g)
    h = torch.cat([base, base.flip(0), base.roll(3, 0)])  # every class: the same 25 points
    y = torch.arange(3).repeat_interleave(25)
    with pytest.warns(DegenerateBetweenClassWarning):
        stats = nc_stats(h, y, 3)
    assert stats.nc_rank == 0 and stats.nc_trace == 0.0
    assert stats.nc_trace_ratio == math.inf
    assert dense_reference(h, y, 3)["nc_trace"] == pytest.approx(0, abs=1e-12)


def test_invariances() -> None:
    counts, dim, c = [60, 90, 30, 120, 45], 16, 5
    h, y = clustered(counts, dim)
    base = nc_stats(h, y, c)
    g = torch.Generator().manual_seed(2)
    order = torch.randperm(len(y), generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    relabel = torch.tensor([3, 0, 4, 1, 2])
    variants = {
        "sample order": nc_stats(h[order], y[order], c),
        "rotation": nc_stats((h.double() @ rotation), y, c),
        "class ids": nc_stats(h, relabel[y], c),
    }
    for name, stats in variants.items():
        for field in (
            NC.TRACE,
            NC.WITHIN_TRACE,
            NC.BETWEEN_TRACE,
            NC.CDNV,
            NC.EQUINORM,
            NC.EQUIANGULARITY,
        ):
            assert getattr(stats, field) == pytest.approx(getattr(base, field), rel=1e-9), (
                name,
                field,
            )


@pytest.mark.parametrize("batch", [1, 7, 64, 10_000])
def test_batch_size_does_not_change_the_passes(batch: int) -> None:
    h, y = clustered([70, 40, 90], 10)
    ref = nc_stats(h, y, 3)
    first = ClassSums(3, 10)
    for hb, yb in zip(h.split(batch), y.split(batch), strict=True):
        first.update(hb, yb)
    second = WithinClassPass(first.result(), between_class(first.result()))
    for hb, yb in zip(h.split(batch), y.split(batch), strict=True):
        second.update(hb, yb)
    assert second.nc_trace == pytest.approx(ref.nc_trace, rel=1e-12)
    if batch > 1:
        assert scatter_stats(h, y, 3, batch)[0] == pytest.approx(ref.nc_trace, rel=1e-9)


def test_second_pass_must_cover_the_first() -> None:
    h, y = clustered([10, 10], 4)
    first = ClassSums(2, 4)
    first.update(h, y)
    second = WithinClassPass(first.result(), between_class(first.result()))
    second.update(h[:5], y[:5])
    with pytest.raises(RuntimeError, match="pass 2 saw 5 samples but pass 1 saw 20"):
        _ = second.nc_trace


def test_second_pass_must_see_the_first_passes_representations() -> None:
    h, y = clustered([30, 30, 30], 6)
    first = ClassSums(3, 6)
    first.update(h, y)
    stats = first.result()
    exact = WithinClassPass(stats, between_class(stats))
    exact.update(h, y)
    assert exact.nc_trace == pytest.approx(nc_stats(h, y, 3).nc_trace, rel=1e-12)
    rounded = WithinClassPass(stats, between_class(stats))
    rounded.update(h * (1 + 1e-7), y)  # a rounding-sized difference passes
    assert math.isfinite(rounded.nc_trace)
    moved = WithinClassPass(stats, between_class(stats))
    moved.update(h + 1e-3 * h.abs().max(), y)  # as a model changed between the passes
    with pytest.raises(RuntimeError, match="the representations changed between the passes"):
        _ = moved.nc_trace
    swapped = WithinClassPass(stats, between_class(stats))
    swapped.update(h, y.roll(1))  # the same class counts, samples in other classes
    with pytest.raises(RuntimeError, match="the representations changed between the passes"):
        _ = swapped.nc_trace


def test_other_statistics_match_their_formulas() -> None:
    counts = [50, 80, 65, 30]
    h, y = clustered(counts, 9)
    h64 = h.double()
    means = torch.stack([h64[y == c].mean(0) for c in range(4)])
    mu = h64.mean(0)
    var = [float((h64[y == c] - means[c]).pow(2).sum(1).mean()) for c in range(4)]
    pairs = list(itertools.combinations(range(4), 2))
    cdnv = sum(
        (var[a] + var[b]) / (2 * float((means[a] - means[b]).pow(2).sum())) for a, b in pairs
    )
    norms = [float((means[c] - mu).norm()) for c in range(4)]
    mean_norm = sum(norms) / 4
    equinorm = math.sqrt(sum((n - mean_norm) ** 2 for n in norms) / 4) / mean_norm
    cos = [float((means[a] - mu) @ (means[b] - mu)) / (norms[a] * norms[b]) for a, b in pairs]
    equiangularity = sum(abs(x + 1 / 3) for x in cos) / len(pairs)
    weight = torch.randn(4, 9, dtype=torch.float64)
    m = means - mu
    duality = float((weight / weight.norm() - m / m.norm()).pow(2).sum())
    predictions = torch.randint(0, 4, (len(y),))
    nearest = torch.cdist(h64, means).argmin(1)
    stats = nc_stats(h, y, 4, predictions=predictions, classifier_weight=weight)
    assert stats.nc_cdnv == pytest.approx(cdnv / len(pairs), rel=1e-10)
    assert stats.nc_equinorm == pytest.approx(equinorm, rel=1e-10)
    assert stats.nc_equiangularity == pytest.approx(equiangularity, rel=1e-10)
    assert stats.nc_self_duality == pytest.approx(duality, rel=1e-10)
    assert stats.nc_ncc_agreement == float((nearest == predictions).double().mean())
    assert stats.nc_trace_ratio == pytest.approx(stats.nc_within_trace / stats.nc_between_trace)


def test_simplex_etf_has_zero_nc2() -> None:
    c = 4
    etf = torch.eye(c) - 1 / c  # centred simplex vertices: equal norms, cos = −1/(C−1)
    y = torch.arange(c).repeat(5)
    stats = nc_stats(etf[y] + 0.01 * torch.randn(len(y), c), y, c)
    exact = nc_stats(etf[y], y, c)
    assert exact.nc_equinorm == pytest.approx(0, abs=1e-12)
    assert exact.nc_equiangularity == pytest.approx(0, abs=1e-12)
    assert stats.nc_equiangularity > exact.nc_equiangularity


def test_bad_input_is_rejected_with_one_line() -> None:
    h, y = clustered([5, 5], 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\), found values in \[0, 5\]"):
        nc_trace(h, torch.where(y == 1, 5, 0), 2)
    with pytest.raises(ValueError, match="1-D integer"):
        nc_trace(h, y.float(), 2)
    with pytest.raises(ValueError, match="different lengths") as info:
        nc_trace(h, y[:-1], 2)
    assert "\n" not in str(info.value)


def test_inputs_are_not_modified() -> None:
    h, y = clustered([30, 30], 5)
    h = h.double()
    before = h.clone()
    nc_stats(h, y, 2, predictions=y)
    scatter_stats(h, y, 2)
    assert torch.equal(h, before)
