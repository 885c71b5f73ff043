"""Deterministic transforms: pure kernels (`functional`) and keyed parameter sampling (`sampling`).

    params = sample_copy_params(spec, ("lighting", "noise"), seed=spec.augment_seed,
                                episode=3, copy=0, camera=0, width=640, height=480)
    out = apply_clip(frames, params, np.arange(first, first + len(frames)))
    provenance = params.to_dict()
"""

from . import functional
from .sampling import (
    BlurParams,
    CopyParams,
    LightingParams,
    NoiseParams,
    OcclusionParams,
    Patch,
    apply_clip,
    sample_copy_params,
)

__all__ = [
    "BlurParams",
    "CopyParams",
    "LightingParams",
    "NoiseParams",
    "OcclusionParams",
    "Patch",
    "apply_clip",
    "functional",
    "sample_copy_params",
]
