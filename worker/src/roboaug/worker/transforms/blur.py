"""Blur: the lens of one camera, motion or defocus, drawn once per copy and held for its frames.

Keyed per camera. The motion kernel length is uniform over the odd integers of its range and
its angle uniform in [0, 180) degrees; the defocus sigma is uniform over its range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from roboaug.api.models.spec import DEFOCUS_SIGMA, MOTION_KERNEL

from . import functional as F
from .base import Range, RequestView, Transform, reads
from .keyed import Purpose, int_between, uniform


@dataclass(frozen=True)
class BlurView(RequestView):
    kind: str = reads("blur_type")
    motion_kernel: Range = reads(MOTION_KERNEL)  # pixels, odd
    defocus_sigma: Range = reads(DEFOCUS_SIGMA)  # pixels


@dataclass(frozen=True)
class BlurParams:
    kind: str  # "motion" | "defocus"
    length: Optional[int] = None  # motion: odd kernel length, pixels
    angle_deg: Optional[float] = None  # motion: 0 = horizontal, 90 = vertical
    sigma: Optional[float] = None  # defocus: gaussian sigma, pixels


class Blur(Transform):
    name = "blur"
    summary = "lens blur of each camera: one draw per copy and camera"
    view = BlurView
    purpose = Purpose.BLUR
    kinds = {
        "motion": "a line of odd length (pixels) at a uniform angle in [0, 180) degrees",
        "defocus": "a gaussian point-spread function of sigma pixels",
    }

    def sample(self, view: BlurView, gen, *, width: int, height: int) -> BlurParams:
        kind = self.pick_kind(view.kind, gen)
        if kind == "motion":
            lo, hi = int(view.motion_kernel.lo), int(view.motion_kernel.hi)
            length = lo + 2 * int_between(gen, 0, (hi - lo) // 2)
            return BlurParams(kind="motion", length=length, angle_deg=uniform(gen, 0.0, 180.0))
        return BlurParams(kind="defocus", sigma=uniform(gen, view.defocus_sigma.lo, view.defocus_sigma.hi))

    def apply(self, state: BlurParams, block, rows) -> None:
        if state.kind == "motion":
            F.motion_blur(block, state.length, state.angle_deg, out=block)
        else:
            F.defocus_blur(block, state.sigma, out=block)

    def card_text(self, view: BlurView) -> str:
        return f"blur ({view.kind}): motion kernel {view.motion_kernel} px, defocus sigma {view.defocus_sigma} px"
