"""The demo sweep, shortened for tests: two epochs, one decoder epoch, 300 training samples."""

from __future__ import annotations

from pathlib import Path

from raycompress.sweep import main

FAST = ["--epochs", "2", "--set", "decoder_epochs=1", "--set", "train_size=300", "--num-cpus", "2"]


def run_sweep(storage: Path, *extra: str) -> int:
    """Run it into storage (experiment folder storage/demo); returns the exit status."""
    return main(["demo", "--storage-path", str(storage), *FAST, *extra])
