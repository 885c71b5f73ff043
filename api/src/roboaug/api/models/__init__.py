"""The contract: one model of the request/spec and of the status (see docs/architecture.md)."""

from .spec import (
    APPLY_ORDER,
    GENERATIVE_DISABLED_MESSAGE,
    RANGE_PAIRS,
    TRANSFORMS,
    AugmentationJobCreateRequest,
    AugmentationJobSpec,
    AugmentationType,
    AugmentMode,
    BlurType,
    DatasetMode,
    DatasetRef,
    NoiseType,
    OcclusionType,
    OutputVisibility,
    SecretKeyRef,
    default_output_dataset_id,
    parse_transforms,
)
from .status import (
    PHASE_ORDER,
    QUEUED_PHASES,
    TERMINAL_PHASES,
    TERMINAL_STATUSES,
    WORKER_PHASES,
    AugmentationJobCreateResponse,
    AugmentationJobStatus,
    AugmentationStatusResponse,
    ErrorResponse,
    JobStatus,
    Phase,
    PhaseEvent,
    PhaseName,
    PhaseStatus,
    Progress,
)

GROUP = "roboaug.dev"
VERSION = "v1alpha1"
KIND = "AugmentationJob"
PLURAL = "augmentationjobs"
SINGULAR = "augmentationjob"
SHORT_NAMES = ["augjob", "aj"]
LABEL_JOB_ID = f"{GROUP}/job-id"
LABEL_PROJECT_ID = f"{GROUP}/project-id"


def cr_name(job_id) -> str:
    """CR name for a job created through the gateway."""
    return f"aug-{str(job_id).lower()}"
