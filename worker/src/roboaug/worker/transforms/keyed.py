"""Keyed randomness: every draw of a transform comes from a generator seeded with a tuple.

The key is (seed, purpose, episode, copy[, camera][, frame]) through numpy's SeedSequence, so a
value does not depend on which process handles an episode, on how a clip is cut into chunks, or
on what was drawn before it. `Purpose` is part of every key, so two purposes never share a stream.

Only uniform doubles (`Generator.random`) and raw generator words (`random_raw`) are used, the
parts of numpy's random API whose streams are fixed for a given bit generator.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Purpose(IntEnum):
    """Stream tags. The numbers are part of the output's bytes: never renumber, only append."""

    LIGHTING = 1
    OCCLUSION = 2
    BLUR = 3
    NOISE = 4
    NOISE_FRAME = 5
    TEXTURE = 6
    NOISE_ROWS = 7
    NOISE_BANK = 8


def bits(*key: int) -> np.random.PCG64DXSM:
    """The bit generator of one key (for `advance` and `random_raw`)."""
    return np.random.PCG64DXSM(np.random.SeedSequence([int(k) for k in key]))


def rng(*key: int) -> np.random.Generator:
    return np.random.Generator(bits(*key))


def uniform(gen: np.random.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * gen.random())


def choice(gen: np.random.Generator, options: tuple):
    return options[min(int(gen.random() * len(options)), len(options) - 1)]


def int_between(gen: np.random.Generator, lo: int, hi: int) -> int:
    return int(lo) + min(int(gen.random() * (int(hi) - int(lo) + 1)), int(hi) - int(lo))


def check_index(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)
