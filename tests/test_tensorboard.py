"""Live curves: Tune's TensorBoard files hold every value of a trial's per-epoch summary
(`record.summary_metrics`) at every epoch, under Tune's own prefix (README, "Watching a running
sweep"). Read with a reader of its own: TensorBoard itself is not a dependency."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.record_writer import masked_crc32c

from raycompress import record
from raycompress.schema import NC, SPLITS, Quantity
from raycompress.sweeps import demo as demo_sweep

PREFIX = "ray/tune/"  # Tune's TBXLoggerCallback: ray/tune/<summary key>
EVENT_FILES = "events.out.tfevents.*"


def events(path: Path) -> list[Event]:
    """The events of one file: TFRecords of a uint64 length, its masked CRC-32C (uint32), the
    serialised Event and its masked CRC-32C, little-endian."""
    data, at, out = path.read_bytes(), 0, []
    while at < len(data):
        header = data[at : at + 8]
        (length,), (header_crc,) = (
            struct.unpack("<Q", header),
            struct.unpack_from("<I", data, at + 8),
        )
        body = data[at + 12 : at + 12 + length]
        (body_crc,) = struct.unpack_from("<I", data, at + 12 + length)
        assert header_crc == masked_crc32c(header) and body_crc == masked_crc32c(body), path
        out.append(Event.FromString(body))
        at += 12 + length + 4
    return out


def scalars(trial: Path) -> dict[str, dict[int, float]]:
    """tag → {step: value} of every scalar in a trial folder's event files."""
    curves: dict[str, dict[int, float]] = {}
    for path in sorted(trial.rglob(EVENT_FILES)):
        for event in events(path):
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    steps = curves.setdefault(value.tag, {})
                    assert event.step not in steps, (value.tag, event.step)  # once per epoch
                    steps[event.step] = value.simple_value
    return curves


FAMILY = demo_sweep.PARAM_SPACE["decoder_family"]  # the demo's one decoder family: "linear"


def test_every_summary_value_is_a_tensorboard_curve_at_every_epoch(demo) -> None:
    code, storage = demo
    assert code == 0
    trials = sorted((storage / "demo").glob("train_trial_*"))
    assert len(trials) == 2
    for trial in trials:
        assert list(trial.glob(EVENT_FILES)), f"no event files in {trial}"  # beside params.json
        history = record.newest_history(trial)
        depth = len(record.newest_model(trial)["stages"])
        curves = scalars(trial)
        key = record.summary_key
        named = {record.EPOCH, "train_step_loss"}
        named |= {key(split, metric) for split in SPLITS for metric in ("loss", "accuracy")}
        named |= {
            key(split, stat, layer)
            for split in SPLITS
            for stat in record.NC_SUMMARY
            for layer in range(1, depth + 1)
        }
        named |= {
            key(split, q, layer, FAMILY)
            for split in SPLITS
            for q in record.VINFO_SUMMARY
            for layer in range(depth)
        }
        assert {key(s, NC.TRACE, layer) for s in SPLITS for layer in range(1, depth + 1)} <= named
        assert {
            key(s, Quantity.MINIMALITY, layer, FAMILY) for s in SPLITS for layer in range(depth)
        } <= named
        assert [epoch.epoch for epoch in history] == [1, 2]
        for epoch in history:
            summary = record.summary_metrics(epoch, depth, (FAMILY,))
            numbers = {k for k, v in summary.items() if not isinstance(v, str)}
            assert numbers == named  # what the test names is the whole numeric summary
            for name in sorted(named):
                value = summary[name]
                assert math.isfinite(value), (trial.name, name, epoch.epoch)  # the demo's are
                points = curves.get(PREFIX + name, {})
                assert points.get(epoch.epoch) == np.float32(value), (trial.name, name, epoch.epoch)
        for name in named:
            assert sorted(curves[PREFIX + name]) == [1, 2]  # one point per epoch, step = epoch
