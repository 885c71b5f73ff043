"""Deterministic transforms: one module per transform, listed by `registry`, over the pure
RNG-free kernels of `functional`.

    params = sample_copy_params(spec, ("lighting", "noise"), seed=spec.augment_seed,
                                episode=3, copy=0, camera=0, width=640, height=480)
    out = apply_clip(frames, params, np.arange(first, first + len(frames)))
    provenance = params.to_dict()

`base` says what a transform module holds; `keyed` is the keyed randomness they draw from;
`docs` writes the README's request table from the models and the registry.
"""

from . import functional
from .blur import BlurParams
from .clip import BLOCK_BYTES, CopyParams, apply_clip, sample_copy_params
from .lighting import LightingParams
from .noise import NoiseParams
from .occlusion import OcclusionParams, Patch
from .registry import REGISTRY

__all__ = [
    "BLOCK_BYTES",
    "BlurParams",
    "CopyParams",
    "LightingParams",
    "NoiseParams",
    "OcclusionParams",
    "Patch",
    "REGISTRY",
    "apply_clip",
    "functional",
    "sample_copy_params",
]
