"""The one call between the pipeline and a dataset format.

Each format module (`lerobot`, `image_dataset`) has one entry, `augment(source, stage, job) ->
Augmented`: read the dataset at `source`, write the whole augmented dataset into the empty folder
`stage` (data, metadata, card, provenance and preview), and report progress on the way. Finding the
source, checking the output and publishing it are the pipeline's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .progress import ProgressReporter

PREVIEW_ROWS = 4
"""Original/augmented pairs in the card's preview picture."""


@dataclass(frozen=True)
class FormatJob:
    spec: Any  # AugmentationJobSpec
    workdir: Path  # scratch space; what a handler puts there it removes
    processes: int
    reporter: "ProgressReporter"
    source_revision: Optional[str] = None  # the commit a Hub source was read at (pipeline.resolve_source)

    @property
    def source_id(self) -> str:
        """The source as provenance and the card name it: the request's dataset id, pinned to the
        commit that was read for a Hub source (`hf://org/name@<sha>`, itself a valid dataset_id)."""
        if self.source_revision is None:
            return self.spec.dataset_id
        from roboaug.api.models import DatasetRef

        return f"hf://{DatasetRef.parse(self.spec.dataset_id).repo_id}@{self.source_revision}"


@dataclass
class Augmented:
    format: str  # e.g. "lerobot-v3.0", "image"
    episodes_written: int  # augmented episodes (image datasets: augmented rows)
    frames_written: int
    timings: dict[str, float] = field(default_factory=dict)
    episode_cpu: list[float] = field(default_factory=list)  # CPU seconds of each episode task, task order
