"""The demo sweep, shortened for tests: two epochs, 300 training samples, and trained decoders
(the held-out ones) certified from 1 → 4 epochs or stopped at 4."""

from __future__ import annotations

from pathlib import Path

from raycompress.sweep import main

FAST = [
    "--epochs", "2", "--set", "decoder_epochs=4", "--set", "decoder_certify_from=1",
    "--set", "decoder_warm_certify_from=1", "--set", "train_size=300", "--num-cpus", "2",
]  # fmt: skip


def run_sweep(storage: Path, *extra: str) -> int:
    """Run it into storage (experiment folder storage/demo); returns the exit status."""
    return main(["demo", "--storage-path", str(storage), *FAST, *extra])
