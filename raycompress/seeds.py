"""Seed streams: every random stream of a run derived from the run's seed by name.

    derive_seed(seed, *names) = the first 48 bits of sha256("seed/name/…"), little-endian

Hashed, so that two streams never meet: neighbouring seeds (seed + 1, seed + 2, …), which a
sweep over seeds uses, give unrelated streams, and a measurement's streams stay apart from
every other measurement's. One owner: the library and the benchmarks derive through here.
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *names: str | int) -> int:
    """The seed of the stream `names` under `seed` (an integer in [0, 2**48))."""
    digest = hashlib.sha256("/".join(map(str, (seed, *names))).encode()).digest()
    return int.from_bytes(digest[:6], "little")
