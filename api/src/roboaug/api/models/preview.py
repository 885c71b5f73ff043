"""The preview contract: `POST /v1/augmentation/preview` (gateway) and the preview service
(worker image) that renders it.

A preview request is a create request plus which frames to show; the answer is, per picked
(episode, frame, camera), the source frame and each augmented copy of it as the job would
produce it, before encoding. No job is created.
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .spec import AugmentationJobCreateRequest

MAX_PREVIEW_EPISODES = 4
"""Episodes one preview may pick: each may mean one more video file to fetch and open."""
MAX_PREVIEW_FRAMES = 8
"""Frames per picked episode."""
MAX_PREVIEW_IMAGES = 64
"""Images one answer may hold: picks x cameras x (1 original + copies)."""
MAX_PREVIEW_PIXELS = 24_000_000
"""Pixels of all images of one answer together (about 69 MB as RGB; 78 frames of 640x480):
bounds the service's memory and the answer's size whatever the source's frame size."""


class PreviewFormat(str, Enum):
    png = "png"
    json = "json"


class AugmentationPreviewRequest(AugmentationJobCreateRequest):
    """A create request plus the frames to show. Project defaults and policy apply as on create."""

    episodes: Optional[list[int]] = Field(
        None, min_length=1, max_length=MAX_PREVIEW_EPISODES,
        description=f"Source episode indices to show (default: [0]); at most {MAX_PREVIEW_EPISODES}, "
                    "no repeats. Image datasets: row indices.",
    )
    frames: Optional[list[int]] = Field(
        None, min_length=1, max_length=MAX_PREVIEW_FRAMES,
        description=f"Frame indices within each picked episode (default: the episode's middle frame); at most "
                    f"{MAX_PREVIEW_FRAMES}, no repeats. Ignored for image datasets (a row is one frame).",
    )
    format: PreviewFormat = Field(
        PreviewFormat.png,
        description="'png': one PNG grid (a row per episode, frame and camera: the original, then each copy). "
                    "'json': every frame as a base64 PNG.",
    )

    @model_validator(mode="after")
    def _picks(self):
        for name in ("episodes", "frames"):
            values = getattr(self, name) or []
            if any(v < 0 for v in values):
                raise ValueError(f"{name}: indices must be >= 0, got {values}")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: repeated index in {values}")
        return self

    def job_request(self) -> AugmentationJobCreateRequest:
        """The create request inside, with the fields the caller set still marked as set (the
        project's defaults fill only the others, as on create: `policy.effective_spec`)."""
        own = set(AugmentationJobCreateRequest.model_fields)
        data = self.model_dump(include=own & self.model_fields_set)
        return AugmentationJobCreateRequest.model_validate(data)


class PreviewImage(BaseModel):
    copy_index: int = Field(alias="copy", description="The copy's index among the episode's augmented copies.")
    transforms: list[str] = Field(description="The copy's transforms, in apply order.")
    png: str = Field(description="The augmented frame before encoding, as base64 PNG.")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class PreviewPair(BaseModel):
    episode: int = Field(description="Source episode index (image datasets: row index).")
    frame: int = Field(description="Frame index within the episode.")
    camera: str = Field(description="The camera feature (image datasets: the image column).")
    original_png: str = Field(description="The decoded source frame, as base64 PNG.")
    augmented: list[PreviewImage]


class AugmentationPreviewResponse(BaseModel):
    """`format: json`. `source` names what was read: a Hub source pinned to its commit."""

    source: str
    pairs: list[PreviewPair]
