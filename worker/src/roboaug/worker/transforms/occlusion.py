"""Occlusion: patches in front of one camera, drawn once per copy and held for its frames.

Keyed per camera. The patch count is uniform over its integer range; each patch's width and
height are uniform fractions of the frame's, and it lies wholly inside the frame (uniform
position). Rectangles get a uniform random colour; overlays a smooth random texture and an
opacity uniform in OVERLAY_ALPHA_RANGE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from roboaug.api.models.spec import NUM_PATCHES, PATCH_HEIGHT, PATCH_WIDTH

from . import functional as F
from .base import Range, RequestView, Transform, reads
from .keyed import Purpose, bits, int_between, uniform

OVERLAY_ALPHA_RANGE = (0.35, 0.75)
TEXTURE_GRID = 4  # cells per side of an overlay texture before upsampling


@dataclass(frozen=True)
class OcclusionView(RequestView):
    kind: str = reads("occlusion_type")
    patches: Range = reads(NUM_PATCHES)  # count
    width: Range = reads(PATCH_WIDTH)  # fraction of the frame's width
    height: Range = reads(PATCH_HEIGHT)  # fraction of the frame's height


@dataclass(frozen=True)
class Patch:
    x: int  # left edge, pixels
    y: int  # top edge, pixels
    width: int  # pixels
    height: int  # pixels
    colour: tuple[int, int, int]  # rectangle fill (RGB)
    alpha: float = 1.0  # overlay opacity; 1 for rectangles
    texture_seed: Optional[int] = None  # overlay texture; None for rectangles

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)

    def texture(self) -> np.ndarray:
        """The overlay's texture: a TEXTURE_GRID^2 colour grid from its seed, upsampled to the box."""
        words = bits(self.texture_seed, Purpose.TEXTURE).random_raw(math.ceil(TEXTURE_GRID * TEXTURE_GRID * 3 / 8))
        grid = np.asarray(words, dtype="<u8").view(np.uint8)[: TEXTURE_GRID * TEXTURE_GRID * 3]
        return F.smooth_texture(grid.reshape(TEXTURE_GRID, TEXTURE_GRID, 3), self.height, self.width)


@dataclass(frozen=True)
class OcclusionParams:
    kind: str  # "rectangle" | "overlay"
    patches: tuple[Patch, ...]


class Occlusion(Transform):
    name = "occlusion"
    summary = "patches in front of each camera: one draw per copy and camera"
    view = OcclusionView
    purpose = Purpose.OCCLUSION
    kinds = {
        "rectangle": "solid boxes of a random colour",
        "overlay": ("semi-transparent smooth random textures (opacity "
                    f"{OVERLAY_ALPHA_RANGE[0]:g}..{OVERLAY_ALPHA_RANGE[1]:g})"),
    }

    def sample(self, view: OcclusionView, gen, *, width: int, height: int) -> OcclusionParams:
        kind = self.pick_kind(view.kind, gen)
        count = int_between(gen, view.patches.lo, view.patches.hi)
        patches = []
        for _ in range(count):
            pw = min(width, max(1, round(uniform(gen, view.width.lo, view.width.hi) * width)))
            ph = min(height, max(1, round(uniform(gen, view.height.lo, view.height.hi) * height)))
            x = int_between(gen, 0, width - pw)
            y = int_between(gen, 0, height - ph)
            colour = tuple(int_between(gen, 0, 255) for _ in range(3))
            if kind == "overlay":
                alpha = uniform(gen, *OVERLAY_ALPHA_RANGE)
                texture_seed = int_between(gen, 0, 2**32 - 1)
                patches.append(Patch(x, y, pw, ph, colour, alpha, texture_seed))
            else:
                patches.append(Patch(x, y, pw, ph, colour))
        return OcclusionParams(kind=kind, patches=tuple(patches))

    def prepare(self, params: OcclusionParams, copy, frame_indices, frame_shape):
        textures = [p.texture() for p in params.patches] if params.kind == "overlay" else None
        return params, textures

    def apply(self, state, block, rows) -> None:
        params, textures = state
        if textures is None:
            F.fill_rectangles(block, [p.box for p in params.patches], [p.colour for p in params.patches], out=block)
        else:
            for patch, texture in zip(params.patches, textures):
                F.blend_overlay(block, patch.box, texture, patch.alpha, out=block)

    def card_text(self, view: OcclusionView) -> str:
        return (f"occlusion ({view.kind}): {view.patches} patches, "
                f"{view.width} x {view.height} of the frame")
