"""Lighting: brightness, contrast and colour temperature as one per-channel affine map.

Keyed without the camera, so all cameras of one copy see the same light. Brightness and
contrast are uniform over their ranges; colour temperature is uniform in mireds (1e6 / K), the
photographic unit in which equal steps look like equal shifts. The map itself is
`functional.lighting_affine` (see its module for the definitions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roboaug.api.models.spec import BRIGHTNESS, COLOR_TEMP, CONTRAST

from . import functional as F
from .base import Range, RequestView, Transform, reads
from .keyed import Purpose, uniform


@dataclass(frozen=True)
class LightingView(RequestView):
    brightness: Range = reads(BRIGHTNESS)  # percent of full scale
    contrast: Range = reads(CONTRAST)  # percent
    temperature_k: Range = reads(COLOR_TEMP)  # kelvin


@dataclass(frozen=True)
class LightingParams:
    brightness: float  # percent of full scale
    contrast: float  # percent
    temperature_k: float  # kelvin, 6500 = neutral

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        return F.lighting_affine(self.brightness, self.contrast, self.temperature_k)


class Lighting(Transform):
    name = "lighting"
    summary = "scene light (brightness, contrast, colour temperature): one draw per copy, shared by its cameras"
    view = LightingView
    purpose = Purpose.LIGHTING
    per_camera = False

    def sample(self, view: LightingView, gen, *, width: int, height: int) -> LightingParams:
        lo_k, hi_k = float(view.temperature_k.lo), float(view.temperature_k.hi)
        mired = uniform(gen, 1e6 / hi_k, 1e6 / lo_k)
        kelvin = min(max(1e6 / mired, lo_k), hi_k)  # guard float round-off at the ends
        return LightingParams(
            brightness=uniform(gen, view.brightness.lo, view.brightness.hi),
            contrast=uniform(gen, view.contrast.lo, view.contrast.hi),
            temperature_k=kelvin,
        )

    def prepare(self, params: LightingParams, copy, frame_indices, frame_shape):
        return params.affine()

    def apply(self, state, block, rows) -> None:
        F.apply_affine(block, *state, out=block)

    def apply_from(self, state, source, block, rows) -> None:
        # the affine pass copies the frames into the block as it maps them
        F.apply_affine(source, *state, out=block)

    def card_text(self, view: LightingView) -> str:
        return (f"lighting: brightness {view.brightness} %, contrast {view.contrast} %, "
                f"colour temperature {view.temperature_k} K")
