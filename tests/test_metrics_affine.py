"""The affine decoder's optimum (l = L−1): closed form, an independent solver on trained
features, and what a measurement reports there."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import logsumexp
from torch import nn

from raycompress.data import load_dataset
from raycompress.metrics.affine import MAX_ITER, affine_pre, fit_affine, standardised
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.vinfo import LN2, VInfoConfig, entropy_bits, measure_vinfo
from raycompress.models import Head, build_model, make_spec
from raycompress.sampling import relabel
from raycompress.schema import Quantity
from raycompress.training import TrainConfig, run_epochs

SUFF, MIN = Quantity.SUFFICIENCY, Quantity.MINIMALITY


def conditional_entropy_nats(groups: torch.Tensor, t: torch.Tensor) -> float:
    """H(t | group) of the empirical joint distribution, in nats."""
    joint = torch.zeros(int(groups.max()) + 1, int(t.max()) + 1, dtype=torch.float64)
    joint.index_put_((groups, t), torch.ones(len(t), dtype=torch.float64), accumulate=True)
    p = joint / len(t)
    p_group = p.sum(1, keepdim=True)
    mask = p > 0
    return float(-(p[mask] * (p / p_group.expand_as(p))[mask].log()).sum())


def test_separable_targets_stop_within_the_certified_gap() -> None:
    z = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
    (fit,) = fit_affine(z, torch.tensor([[0], [0], [1], [1]]), 2)
    assert fit.separable and fit.converged and 0 <= fit.ce <= 1e-4


def test_one_hot_groups_reach_the_conditional_entropy() -> None:
    """With z one-hot over groups the affine family is saturated: CE* = H(t | group)."""
    g = torch.Generator().manual_seed(0)
    groups = torch.randint(0, 5, (3000,), generator=g)
    t = (groups + torch.randint(0, 3, (3000,), generator=g)) % 4  # every (group, t) occurs
    (fit,) = fit_affine(nn.functional.one_hot(groups).double(), t[:, None], 4)
    assert fit.converged and fit.grad_max < 1e-6
    assert fit.ce == pytest.approx(conditional_entropy_nats(groups, t), abs=1e-8)


def test_the_optimum_does_not_depend_on_the_features_scales_and_offsets() -> None:
    """The affine family is closed under affine maps of z: rescaling and shifting features
    (over six orders of magnitude) or adding a constant one leaves CE* as it was."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2000, 6, generator=g, dtype=torch.float64)
    t = (z[:, :3] @ torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.7).argmax(1)
    t = torch.where(
        torch.rand(2000, generator=g) < 0.3, torch.randint(0, 4, (2000,), generator=g), t
    )
    scales = torch.logspace(-3, 3, 6, dtype=torch.float64)
    skewed = torch.cat(
        [z * scales + 100 * torch.randn(6, generator=g), torch.full((2000, 1), 7.0)], 1
    )
    (plain,), (fit,) = fit_affine(z, t[:, None], 4), fit_affine(skewed, t[:, None], 4)
    assert plain.converged and fit.converged and not fit.separable
    assert fit.ce == pytest.approx(plain.ce, abs=1e-9)
    assert torch.isfinite(standardised(skewed)).all() and standardised(skewed)[:, -1].eq(0).all()


def scipy_optimum(z: np.ndarray, t: np.ndarray, classes: int) -> float:
    """The same convex problem by scipy's L-BFGS-B with an analytic gradient (nats)."""
    n, d = z.shape
    x = np.hstack([z, np.ones((n, 1))])
    onehot = np.eye(classes)[t]

    def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        logits = x @ w.reshape(d + 1, classes)
        log_p = logits - logsumexp(logits, axis=1, keepdims=True)
        grad = x.T @ (np.exp(log_p) - onehot) / n
        return float(-(onehot * log_p).sum() / n), grad.ravel()

    w0 = np.zeros((d + 1) * classes)
    result = minimize(loss_grad, w0, jac=True, method="L-BFGS-B",
                      options={"maxiter": 20_000, "gtol": 1e-10, "ftol": 1e-16})  # fmt: skip
    return float(result.fun)


@pytest.fixture(scope="module")
def trained():
    """A narrow f₋ (8 penultimate features) trained 2 epochs on the demo subset: features on
    which no affine map separates the classes, so that the optimum is attained."""
    data = load_dataset("fashion-mnist-demo", train_size=1000, test_size=1000)
    spec = make_spec("mnistnet", data.input_shape, data.num_classes, widths=(8, 8, 8))
    model = build_model(spec, seed=0)
    list(run_epochs(model, data, TrainConfig(batch_size=100, max_epochs=2)))
    return model, data


def test_the_optimum_matches_an_independent_solver_on_trained_features(trained) -> None:
    model, data = trained
    layer = model.depth - 1
    with torch.no_grad():
        z = model.head.features(model.encoder(layer)(data.test.x)).double()
    targets = torch.stack([data.test.y, relabel(data.test.y, 10)[:, 1]], 1)
    for ours, t in zip(fit_affine(z, targets, 10), targets.T, strict=True):
        reference = scipy_optimum(z.numpy(), t.numpy(), 10)
        assert ours.converged and not ours.separable
        assert ours.ce == pytest.approx(reference, abs=1e-5)  # 1.4e-5 bits


def lbfgs_optimum(z: torch.Tensor, t: torch.Tensor, classes: int) -> float:
    """The same convex problem by a plain float64 torch L-BFGS on the standardised features,
    from zero, run to its gradient tolerance (nats)."""
    x = standardised(z.double())
    params = torch.zeros(classes, x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [params], max_iter=5_000, max_eval=10_000, tolerance_grad=1e-6, tolerance_change=0,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = nn.functional.cross_entropy(x @ params[:, :-1].T + params[:, -1], t)
        value.backward()
        return value

    optimizer.step(closure)
    assert params.grad is not None and params.grad.abs().max() <= 1e-6
    return float(closure())


@pytest.fixture(scope="module")
def inner(trained):
    """The narrow f₋'s h² (72 features) on the demo test split and its relabelling's two
    digits (y is separable there in part: its optimum is not attained)."""
    model, data = trained
    with torch.no_grad():
        z = model.encoder(2)(data.test.x).flatten(1).double()
    return z, relabel(data.test.y, 10)


def test_an_inner_layer_matches_a_plain_lbfgs_to_a_hundredth_of_a_bit(inner) -> None:
    z, targets = inner
    fits = fit_affine(z, targets, 10)
    for ours, t in zip(fits, targets.T, strict=True):
        assert ours.converged and not ours.separable and ours.form == "primal"
        assert abs(ours.ce - lbfgs_optimum(z, t, 10)) / LN2 <= 0.01


def test_the_primal_and_the_dual_reach_the_same_optimum(inner) -> None:
    z, targets = inner
    primal = fit_affine(z, targets, 10, form="primal")
    dual = fit_affine(z, targets, 10, form="dual")
    for p, d in zip(primal, dual, strict=True):
        assert (p.form, d.form) == ("primal", "dual") and p.rank == d.rank == z.shape[1]
        assert p.converged and d.converged
        assert d.ce == pytest.approx(p.ce, abs=1e-6)
        # the weights on the standardised features give the same logits
        x = standardised(z)
        logits = [x @ f.weights[:, :-1].T + f.weights[:, -1] for f in (p, d)]
        assert torch.allclose(logits[0], logits[1], atol=1e-3)


def test_more_features_than_samples_run_the_dual_on_their_rank() -> None:
    """D = 300 > N = 200 features of rank 20: the dual by default, the Gram matrix's 20
    non-zero eigenvalues kept, the optimum the primal's."""
    g = torch.Generator().manual_seed(2)
    z = torch.randn(200, 20, generator=g, dtype=torch.float64)
    t = (z[:, :4] @ torch.randn(4, 3, generator=g, dtype=torch.float64)).argmax(1)
    t = torch.where(torch.rand(200, generator=g) < 0.3, torch.randint(0, 3, (200,), generator=g), t)
    wide = z @ torch.randn(20, 300, generator=g, dtype=torch.float64)
    (dual,), (primal,) = (
        fit_affine(wide, t[:, None], 3),
        fit_affine(wide, t[:, None], 3, form="primal"),
    )
    assert dual.form == "dual" and primal.form == "primal" and dual.rank == primal.rank == 20
    assert dual.converged and not dual.separable
    assert dual.ce == pytest.approx(primal.ce, abs=1e-8)
    (narrow,) = fit_affine(z, t[:, None], 3)
    assert narrow.form == "primal" and dual.ce == pytest.approx(narrow.ce, abs=1e-8)


def test_a_warm_start_on_changed_features_reaches_their_optimum(inner) -> None:
    """The state is the standardised features' weights: on the same features it starts at
    the optimum; on features mixed and perturbed (an encoder that trained on) it reaches
    what a fresh fit reaches."""
    z, targets = inner
    first = fit_affine(z, targets, 10)
    state = torch.stack([f.weights for f in first])
    for again, fit in zip(fit_affine(z, targets, 10, start=state), first, strict=True):
        assert again.iterations <= 1 and again.ce == pytest.approx(fit.ce, abs=1e-9)
    g = torch.Generator().manual_seed(3)
    mixing = torch.eye(z.shape[1], dtype=torch.float64)
    mixing += 0.1 * torch.randn(z.shape[1], z.shape[1], generator=g, dtype=torch.float64)
    moved = z @ mixing + 0.05 * torch.randn(z.shape, generator=g, dtype=torch.float64)
    fresh = fit_affine(moved, targets, 10)
    warm = fit_affine(moved, targets, 10, start=state)
    for w, f, old in zip(warm, fresh, first, strict=True):
        assert w.converged and w.ce == pytest.approx(f.ce, abs=1e-6)
        assert abs(w.ce - old.ce) > 1e-4  # the features did change the optimum


def test_only_a_head_with_a_fixed_pre_is_affine(trained) -> None:
    model, _ = trained
    last = model.depth - 1
    assert isinstance(affine_pre(model.fresh_decoder(last, 0)), Head)
    assert affine_pre(model.fresh_decoder(last - 1, 0)) is None  # a convolution before it
    assert affine_pre(nn.Sequential(Head(nn.Linear(4, 4), nn.Linear(4, 2)))) is None


def test_the_last_layer_reports_the_optimum_within_a_hundredth_of_a_bit(trained) -> None:
    model, data = trained
    layer = model.depth - 1
    recipe = DecoderConfig(protocol="thesis", batch_size=100, max_epochs=5, budgets=(2, 5))
    config = VInfoConfig(recipe)
    values = measure_vinfo(
        model.encoder(layer), lambda s: model.fresh_decoder(layer, s), data.test, 10, config
    )
    with torch.no_grad():
        z = model.head.features(model.encoder(layer)(data.test.x)).double().numpy()
    y = data.test.y
    optimum = entropy_bits(y, 10) - scipy_optimum(z, y.numpy(), 10) / LN2
    suff, minimality = values.terms[SUFF], values.terms[MIN]
    assert suff.raw == pytest.approx(optimum, abs=0.01)
    digits = relabel(y, 10)
    assert values.num_digits == len(minimality.heads) > 0
    for j, head in enumerate(minimality.heads):
        t = digits[:, j]
        expected = entropy_bits(t, 10) - scipy_optimum(z, t.numpy(), 10) / LN2
        assert head.bits == pytest.approx(expected, abs=0.01)
    assert "optimum" in suff.protocol and ", converged" in minimality.protocol
    # The trained decoders approach the optimum from below; their values stay on the curve.
    for term in (suff, minimality):
        assert term.curve[2] < term.curve[5] <= term.raw + 1e-9
    assert suff.curve[5] < optimum - 0.01  # 5 epochs fall short
    assert math.isfinite(suff.value)


@pytest.fixture(scope="module")
def nearly_separable():
    """f₋ at full width trained 3 epochs on 1 000 demo images: its training split's
    penultimate features separate the labels in part, so the optimum is not attained and
    L-BFGS crawls to its cap without an optimality certificate."""
    data = load_dataset("fashion-mnist-demo", train_size=1000, test_size=1000)
    model = build_model(make_spec("mnistnet", data.input_shape, data.num_classes), seed=0)
    list(run_epochs(model, data, TrainConfig(batch_size=100, max_epochs=3)))
    with torch.no_grad():
        z = model.head.features(model.encoder(model.depth - 1)(data.train.x)).double()
    return z, data.train.y[:, None]


def test_a_partly_separable_fit_is_certified_only_by_the_doubling_rule(nearly_separable) -> None:
    z, t = nearly_separable
    (plain,) = fit_affine(z, t, 10)
    (doubled,) = fit_affine(z, t, 10, tolerance=0.01)
    # without the rule the solve runs to its cap, its gradient still shrinking
    assert plain.iterations == MAX_ITER and plain.doubling_gain is None and not plain.doubled
    assert not doubled.converged and doubled.certified and doubled.doubled
    assert 0 <= doubled.doubling_gain <= 0.01 * LN2
    assert doubled.iterations < plain.iterations
    # what the rule stops at is within its tolerance of the solve that ran to its cap
    assert 0 <= (doubled.ce - plain.ce) / LN2 <= 0.01


def test_an_affine_warm_start_continues_from_its_weights(nearly_separable) -> None:
    z, t = nearly_separable
    (first,) = fit_affine(z, t, 10, tolerance=0.01)
    (again,) = fit_affine(z, t, 10, tolerance=0.01, start=first.weights[None])
    assert again.ce <= first.ce  # a line search never climbs: it starts where the first ended
    (fresh,) = fit_affine(z, t, 10, tolerance=0.01, start=torch.zeros_like(first.weights)[None])
    assert fresh.ce == first.ce and torch.equal(fresh.weights, first.weights)
    with pytest.raises(ValueError, match="an affine warm start of shape"):
        fit_affine(z, t, 10, start=first.weights[None, :, :-1])
