"""Which node pool runs a job: decided by its augmentation type through `config.routing`."""

from __future__ import annotations

from dataclasses import dataclass

from roboaug.api.models import AugmentationType

from .config import OperatorConfig, Pool


class NoPoolError(LookupError):
    """The configuration routes this augmentation type nowhere."""


@dataclass(frozen=True)
class PoolChoice:
    name: str
    pool: Pool


def select_pool(config: OperatorConfig, augmentation_type: str | AugmentationType) -> PoolChoice:
    """The pool configured for `augmentation_type` (`deterministic` -> `cpu` by default)."""
    try:
        kind = AugmentationType(augmentation_type)
    except ValueError:
        raise NoPoolError(f"augmentation_type {augmentation_type!r} is not one of "
                          f"{', '.join(t.value for t in AugmentationType)}") from None
    name = config.routing.get(kind)
    if name is None:
        raise NoPoolError(f"no pool is configured for augmentation_type {kind.value!r} "
                          f"(operator config `routing.{kind.value}`)")
    return PoolChoice(name=name, pool=config.pools[name])
