"""What every transform module provides, and the typed view of the request fields it reads.

A transform is one module (`lighting`, `occlusion`, `blur`, `noise`) holding:
- `view`: a `RequestView` dataclass whose fields name their request field (or `RangePair`) once;
  sampling, the card and the README's parameter table read the request only through it;
- `sample`: the parameters of one copy (of one camera) from the view and a keyed generator;
- `prepare` / `apply`: the parameters applied to a clip, block by block, with the RNG-free
  kernels of `functional`;
- `card_text`: its line of the dataset card; `provenance`: its record in meta/augmentation.json.
`registry.REGISTRY` lists them in apply order; everything that iterates over transforms
(sampling, apply_clip, provenance, card, README) iterates over it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Union

import numpy as np

from roboaug.api.models.spec import RangePair

from .keyed import choice

if TYPE_CHECKING:
    from .clip import CopyParams

Source = Union[str, RangePair]


@dataclass(frozen=True)
class Range:
    """The [lo, hi] a request allows for one parameter, values as the request holds them."""

    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.lo}..{self.hi}"


def reads(field: Source):
    """A `RequestView` field read from the request field `field` (a name, or both ends of a pair)."""
    return dataclasses.field(metadata={"source": field})


@dataclass(frozen=True)
class RequestView:
    """Typed parameters of one transform, mapped once from the request (see `reads`)."""

    @classmethod
    def sources(cls) -> tuple[Source, ...]:
        return tuple(f.metadata["source"] for f in dataclasses.fields(cls))

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The request fields this view reads, in declaration order."""
        names: list[str] = []
        for src in cls.sources():
            names.extend((src.min_field, src.max_field) if isinstance(src, RangePair) else (src,))
        return tuple(names)

    @classmethod
    def of(cls, spec) -> "RequestView":
        values = {}
        for f in dataclasses.fields(cls):
            src = f.metadata["source"]
            if isinstance(src, RangePair):
                values[f.name] = Range(getattr(spec, src.min_field), getattr(spec, src.max_field))
            else:
                values[f.name] = getattr(spec, src)
        return cls(**values)


def clean(value):
    """JSON-ready: dicts without None values, tuples as lists, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


class Transform(ABC):
    """One deterministic transform. Subclasses set the class attributes and the four methods."""

    name: ClassVar[str]
    """Its name in `augment_transforms` (one of `roboaug.api.models.spec.TRANSFORMS`)."""
    summary: ClassVar[str]
    """One line for the README: what it does and how often it is drawn."""
    view: ClassVar[type[RequestView]]
    purpose: ClassVar[int]
    """`keyed.Purpose` of its per-copy draw."""
    per_camera: ClassVar[bool] = True
    """Whether each camera of a copy draws its own parameters (False: the scene's, shared)."""
    per_frame: ClassVar[bool] = False
    """Whether its values change from frame to frame (sensor noise) rather than per copy."""
    kinds: ClassVar[Mapping[str, str]] = {}
    """Sub-kinds (the request's `<name>_type` values but `mixed`) and one line on each. `mixed`
    picks one per copy (and camera) with equal odds, in this order."""

    def pick_kind(self, requested: str, gen: np.random.Generator) -> str:
        """The request's kind, or for `mixed` one of `kinds` drawn from `gen` (its first draw)."""
        return requested if requested != "mixed" else choice(gen, tuple(self.kinds))

    @abstractmethod
    def sample(self, view: RequestView, gen: np.random.Generator, *, width: int, height: int) -> Any:
        """This copy's parameters (a frozen dataclass), drawn from `gen` alone."""

    def prepare(self, params: Any, copy: "CopyParams", frame_indices: np.ndarray, frame_shape: tuple) -> Any:
        """Work done once per clip before its blocks (tables, textures, per-frame draws)."""
        return params

    @abstractmethod
    def apply(self, state: Any, block: np.ndarray, rows: slice) -> None:
        """Transform `block` (frames `rows` of the clip) in place; `state` is `prepare`'s."""

    def apply_from(self, state: Any, source: np.ndarray, block: np.ndarray, rows: slice) -> None:
        """Write the transform of `source` into `block` (the first transform of a clip).
        A transform whose kernel maps out of place overrides this and saves the copy."""
        np.copyto(block, source)
        self.apply(state, block, rows)

    @abstractmethod
    def card_text(self, view: RequestView) -> str:
        """Its entry in the card's "Parameter ranges" list."""

    def provenance(self, params: Any) -> dict[str, Any]:
        """Its record in meta/augmentation.json: the sampled values, None fields left out."""
        return clean(dataclasses.asdict(params))
