"""Seed streams: every random stream of a run derived from the run's seed by name.

    derive_seed(seed, *names) = the first 48 bits of sha256("seed/name/…"), little-endian

Hashed, so that two streams never meet: neighbouring seeds (seed + 1, seed + 2, …), which a
sweep over seeds uses, give unrelated streams, and a measurement's streams stay apart from
every other measurement's. One owner: the library and the benchmarks derive through here, by
the names of `Stream` (a run's and a measurement's streams) and `BenchmarkStream` (the few that
a benchmark draws and no run does).
"""

from __future__ import annotations

import hashlib
from enum import StrEnum


class Stream(StrEnum):
    """Every random stream, by the name it is derived under."""

    # A run's, from the run's seed.
    MODEL_INIT = "model_init"  # the network's initialisation
    TRAIN_ORDER = "train_order"  # the training batch order, one permutation per epoch
    TRAIN_SUBSET = "train_subset"  # the stratified training subset (thesis §2.3)
    TEST_SUBSET = "test_subset"  # the stratified test subset, when test_size is set
    IMBALANCE = "imbalance"  # which training samples an imbalance profile keeps
    NC_ORDER = "nc_order"  # the batch order of the neural-collapse passes
    FLATNESS = "flatness"  # the baselines' batch orders, flatness subset and weight noise
    VINFO = "vinfo"  # (epoch, layer, split): the seed of one 𝒱-information measurement
    # A 𝒱-information measurement's, from its seed.
    ENCODE_ORDER = "encode_order"  # the batch order in which the frozen encoder runs once
    HEAD_INIT = "head_init"  # the decoders' initialisations
    DECODER_ORDER = "decoder_order"  # the decoders' training batch orders
    SCORE_ORDER = "score_order"  # the batch order of the scoring passes
    RELABELLING = "relabelling"  # (m): Monte-Carlo relabelling m's within-class orders
    HALVES = "held_out_halves"  # the stratified half a held-out decoder fits on
    HELD_OUT_FIT = "held_out_fit"  # the seed of the held-out decoder's own streams
    VALIDATION = "held_out_validation"  # the part of that half that early-stops it (converged)


RUN_STREAMS = tuple(Stream)[: tuple(Stream).index(Stream.VINFO) + 1]
MEASUREMENT_STREAMS = tuple(Stream)[len(RUN_STREAMS) :]


class BenchmarkStream(StrEnum):
    """Every random stream that a benchmark draws and no run does, by the name it is derived
    under; a benchmark draws what a run draws too (initialisation, orders) from `Stream`."""

    # A benchmark's, from its seed.
    SYNTHETIC = "synthetic"  # random inputs, labels, features or values standing in for data
    TIMED_ORDER = "timed_order"  # (i): the batch order of a benchmark's timed epoch i
    AUDIT_SAMPLE = "audit_sample"  # which decoders an audit of the certificate re-runs


def derive_seed(seed: int, *names: str | int) -> int:
    """The seed of the stream `names` under `seed` (an integer in [0, 2**48))."""
    digest = hashlib.sha256("/".join(map(str, (seed, *names))).encode()).digest()
    return int.from_bytes(digest[:6], "little")
