"""The one call between the pipeline and a dataset format.

Each format module (`lerobot`, `image_dataset`) has two entries: `source_frames(source) -> int`,
the source's frames by its metadata alone (for the project's frame limit, before any work), and
`augment(source, stage, job) -> Augmented`: read the dataset at `source`, write the whole augmented
dataset into the empty folder `stage` (data, metadata, card, provenance and preview), and report
progress on the way. Finding the source, checking the output and publishing it are the pipeline's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from roboaug.api import policy

from .errors import ExitCode, WorkerError

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
    max_frames: Optional[int] = None  # the project's limits.max_frames_per_job (contract.MAX_FRAMES)

    @property
    def source_id(self) -> str:
        """The source as provenance and the card name it: the request's dataset id, pinned to the
        commit that was read for a Hub source (`hf://org/name@<sha>`, itself a valid dataset_id)."""
        if self.source_revision is None:
            return self.spec.dataset_id
        from roboaug.api.models import DatasetRef

        return f"hf://{DatasetRef.parse(self.spec.dataset_id).repo_id}@{self.source_revision}"


def check_frame_limit(spec: Any, source_frames: int, max_frames: Optional[int]) -> None:
    """Refuse (INVALID_SPEC: permanent, the operator does not retry) a job whose output would hold
    more frames than its project's limits.max_frames_per_job; counted by `policy.frames_written`."""
    total = policy.frames_written(source_frames, spec)
    violation = policy.check_frames(total, max_frames)
    if violation is not None:
        copies = len(spec.copies_plan())
        how = (f"{source_frames} source frames kept plus {copies} augmented cop{'y' if copies == 1 else 'ies'} of each"
               if spec.augment_dataset_mode == "copy" else f"{source_frames} source frames augmented in place")
        raise WorkerError(ExitCode.INVALID_SPEC, f"{violation.message}: {how}")


@dataclass
class Augmented:
    format: str  # e.g. "lerobot-v3.0", "image"
    episodes_written: int  # augmented episodes (image datasets: augmented rows)
    frames_written: int
    timings: dict[str, float] = field(default_factory=dict)
    episode_cpu: list[float] = field(default_factory=list)  # CPU seconds of each episode task, task order
