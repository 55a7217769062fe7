"""Every random stream of a run is named in `seeds.Stream` and derived from the run's seed:
no two start in the same state, and the run draws from exactly these."""

from __future__ import annotations

import itertools

import torch

from raycompress import data as data_module
from raycompress.data import Imbalance
from raycompress.models import build_model
from raycompress.plan import measurement_seed
from raycompress.sampling import stratified_subset
from raycompress.seeds import MEASUREMENT_STREAMS, RUN_STREAMS, Stream, derive_seed
from raycompress.training import Run
from raycompress.trial import Trial


def test_no_two_streams_of_a_run_start_in_the_same_state() -> None:
    states = []
    for run_seed in range(4):  # neighbouring seeds, as a sweep over seeds uses
        states += [derive_seed(run_seed, s) for s in RUN_STREAMS if s != Stream.VINFO]
        states.append(derive_seed(run_seed, Stream.HALVES))  # converged: the run's fixed halves
        for epoch, layer, split in itertools.product((1, 2), (0, 1, 2), ("train", "test")):
            seed = measurement_seed(run_seed, epoch, layer, split)
            states.append(seed)
            states += [derive_seed(seed, s) for s in MEASUREMENT_STREAMS if s != Stream.RELABELLING]
            states += [derive_seed(seed, Stream.RELABELLING, m) for m in range(3)]
    generators = {bytes(torch.Generator().manual_seed(s).get_state().tolist()) for s in states}
    assert len(generators) == len(states) == 4 * (8 + 12 * (1 + 7 + 3))
    assert set(RUN_STREAMS) | set(MEASUREMENT_STREAMS) == set(Stream)


def test_a_run_draws_from_its_named_streams() -> None:
    seed = 5
    trial = Trial.from_config({"seed": seed, "train_size": 300, "imbalance": "step:0.5"})
    data, model = trial.build()
    # the initialisation: its own stream, not the raw run seed
    named = build_model(model.spec, seed=derive_seed(seed, Stream.MODEL_INIT))
    raw = build_model(model.spec, seed=seed)
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), named.parameters(), strict=True)
    )
    assert not torch.equal(next(model.parameters()), next(raw.parameters()))
    # the training subset, then the imbalance, each from a stream of its own
    full = data_module._load_demo().train
    subset = torch.Generator().manual_seed(derive_seed(seed, Stream.TRAIN_SUBSET))
    chosen = full.subset(stratified_subset(full.y, 300, subset))
    kept = torch.Generator().manual_seed(derive_seed(seed, Stream.IMBALANCE))
    expected = Imbalance("step", 0.5).apply(chosen, 10, kept)
    assert torch.equal(data.train.x, expected.x) and torch.equal(data.train.y, expected.y)
    # the training order and the neural-collapse passes' order
    run = Run(model, data, trial.train, trial.collapse)
    order = torch.Generator().manual_seed(derive_seed(seed, Stream.TRAIN_ORDER))
    assert torch.equal(run.generator.get_state(), order.get_state())
    assert trial.collapse.seed == derive_seed(seed, Stream.NC_ORDER)
    assert Run(model, data, trial.train).collapse.seed == trial.collapse.seed
