"""The transforms, in apply order: the one list sampling, apply_clip, provenance, the dataset card
and the README's parameter table iterate over.

The names and their order are the API's (`TRANSFORMS`, `APPLY_ORDER` in
`roboaug.api.models.spec`: the gateway and the operator need them and must not import the
worker); this module fails at import when the two disagree.
"""

from __future__ import annotations

from typing import Iterable

from roboaug.api.models.spec import APPLY_ORDER, TRANSFORMS

from .base import Transform
from .blur import Blur
from .lighting import Lighting
from .noise import Noise
from .occlusion import Occlusion


def in_apply_order(transforms: Iterable[Transform]) -> tuple[Transform, ...]:
    """`transforms` ordered by APPLY_ORDER; one per name of TRANSFORMS, each on its own streams."""
    transforms = tuple(transforms)
    by_name = {t.name: t for t in transforms}
    if len(by_name) != len(transforms) or set(by_name) != set(TRANSFORMS):
        raise RuntimeError(
            f"transform registry {sorted(t.name for t in transforms)} does not match the API's "
            f"TRANSFORMS {sorted(TRANSFORMS)}"
        )
    if set(APPLY_ORDER) != set(TRANSFORMS):
        raise RuntimeError(f"APPLY_ORDER {APPLY_ORDER} does not name every transform of {TRANSFORMS}")
    purposes = [int(t.purpose) for t in transforms]
    if len(set(purposes)) != len(purposes):
        raise RuntimeError(f"transforms share a random stream purpose: {purposes}")
    return tuple(by_name[name] for name in APPLY_ORDER)


REGISTRY: tuple[Transform, ...] = in_apply_order((Lighting(), Occlusion(), Blur(), Noise()))
BY_NAME: dict[str, Transform] = {t.name: t for t in REGISTRY}


def chosen(transforms: Iterable[str]) -> tuple[Transform, ...]:
    """The named transforms (case and spaces tolerated), in apply order; unknown or repeated
    names are an error."""
    names = [str(t).strip().lower() for t in transforms]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"transforms: unknown {unknown}; allowed: {', '.join(TRANSFORMS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"transforms: duplicates in {names}")
    return tuple(t for t in REGISTRY if t.name in names)
