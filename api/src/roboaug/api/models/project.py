"""An AugmentationProject: the policy one project's jobs run under (docs/architecture.md, "Projects").

One resource per `project_id`, named by it (lowercase UUID), in the namespace its jobs live in.
The rules that read it are `roboaug.api.policy` (one rule set, every door); this module only says
what a project may hold, so the CRD, the gateway and the operator agree on its shape.

Secrets are named, never held: `hub_token_secret` is a reference to a Secret in the same namespace.
"""

from __future__ import annotations

import posixpath
import re
from enum import Enum
from typing import Annotated, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from .spec import MAX_COPIES, MAX_SHARDS, AugmentationJobCreateRequest, SecretKeyRef

PROJECT_KIND = "AugmentationProject"
PROJECT_PLURAL = "augmentationprojects"
PROJECT_SINGULAR = "augmentationproject"
PROJECT_SHORT_NAMES = ["augproj"]

ANNOTATION_SPEC_SOURCES = "roboaug.dev/spec-sources"
"""Where each field of a job's spec came from (JSON {field: request|project|default}), written by
the gateway on the CR at creation (it cannot write status); the operator copies it into
`status.spec_sources`."""

UUID_NAME_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class SpecSource(str, Enum):
    """Where one field of a job's effective spec came from."""

    request = "request"
    project = "project"
    default = "default"


NOT_DEFAULTABLE: tuple[str, ...] = ("project_id", "dataset_id", "output_dataset_id")
"""Request fields a project cannot default: the project and the source are what a request is
about, and one fixed output for every job would make them overwrite each other (projects
restrict outputs with `allowed_outputs` instead)."""

GLOB_CHARS = r"[A-Za-z0-9_.*?-]"
REPO_PATTERN = rf"^(?:\*|{GLOB_CHARS}{{1,96}}(?:/{GLOB_CHARS}{{1,96}})?)$"
"""`*` (any repo), an org (`acme`: every repo of it) or a glob over `org/name` (`acme/robot-*`).
Only `*` and `?` are wildcards (no `[...]` classes): the apiserver's admission policy evaluates the
same patterns in CEL (`roboaug.api.admission`), and with these two the translation to a regular
expression is exact there too."""
# The pattern goes into the schema (so the apiserver checks it) while the validator below words the error.
RepoPattern = Annotated[str, Field(max_length=193, json_schema_extra={"pattern": REPO_PATTERN})]
_SEGMENT = r"(?:\.\.[^/\x00]+|\.[^./\x00][^/\x00]*|[^./\x00][^/\x00]*)"  # any name but `.` and `..`
CANONICAL_ROOT = rf"^/$|^(?:/{_SEGMENT})+$"
"""An absolute directory written canonically: no trailing or doubled `/`, no `.` or `..` segment
(checked below). The admission policy compares `file://` paths with roots as plain strings, so a
root must already be in the one form a path is compared against."""
AbsolutePath = Annotated[str, Field(max_length=1024, json_schema_extra={"pattern": CANONICAL_ROOT})]
QUEUE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A Kueue LocalQueue's name as a Job's `kueue.x-k8s.io/queue-name` label value can hold it: a
DNS-1123 label (at most 63 characters), the rule the operator's `pools.<name>.kueue_queue` uses."""


def _defaults_model() -> type[BaseModel]:
    """Every defaultable request field, typed and bounded exactly as in the request, unset by default.

    Built from the request model so a field added there can be defaulted here with no edit.
    `validate_default=False` keeps "unset" (None) distinct from a value the project chose.
    """
    fields = {}
    for name, info in AugmentationJobCreateRequest.model_fields.items():
        if name in NOT_DEFAULTABLE:
            continue
        copied = FieldInfo.merge_field_infos(info, default=None, default_factory=None)
        copied.description = f"Project default of `{name}`: {info.description}"
        fields[name] = (info.annotation, copied)
    return create_model(
        "ProjectDefaults",
        __config__=ConfigDict(extra="forbid", use_enum_values=True, validate_default=False),
        __doc__="Values used for request fields the request leaves out (the request wins over them).",
        **fields,
    )


ProjectDefaults = _defaults_model()


class FileAccess(BaseModel):
    """Whether `file://` datasets (source or output) may be named, and under which roots."""

    model_config = ConfigDict(extra="forbid")
    allowed: bool = Field(False, description="Allow `file://` sources and outputs at all.")
    roots: list[AbsolutePath] = Field(
        default_factory=list, max_length=32,
        description="Absolute directories written canonically (`/data/team-a`: no trailing `/`, no `.` or `..`); "
                    "a `file://` path must be one of them or lie inside one, and may not contain `.` or `..` segments.",
    )

    @field_validator("roots")
    @classmethod
    def _canonical(cls, roots: list[str]) -> list[str]:
        for root in roots:
            if not re.match(CANONICAL_ROOT, root) or posixpath.normpath(root) != root:
                raise ValueError(f"file_access.roots: {root!r} is not an absolute directory written canonically "
                                 f"(use {posixpath.normpath('/' + root.lstrip('/'))!r})")
        return roots


class ProjectLimits(BaseModel):
    """Ceilings on what one job of the project may ask for. Unset = no limit beyond the request's own bounds."""

    model_config = ConfigDict(extra="forbid")
    max_copies: Optional[int] = Field(
        None, ge=1, le=MAX_COPIES,
        description="Most augmented copies per episode (all transforms together, as the job would make them).")
    max_frames_per_job: Optional[int] = Field(
        None, ge=1,
        description="Most frames one job may write: the output dataset's total, i.e. in copy mode the source's "
                    "frames times (1 + augmented copies), in inplace mode the source's frames (image datasets: "
                    "rows). The worker checks it from the source's metadata before downloading videos.")
    max_spec_bytes: Optional[int] = Field(
        None, ge=256, le=1024 * 1024, description="Largest effective spec, as compact JSON, in bytes.")
    max_running_jobs: Optional[int] = Field(
        None, ge=1, le=10000, description="Most jobs of the project running at once; more wait as queued.")
    max_parallelism: Optional[int] = Field(
        None, ge=1, le=1000,
        description="Most shard pods of one sharded job running at once: the least of this, the job's "
                    "max_parallelism and its pool's bound (a ceiling, never a refusal).")
    max_shards: Optional[int] = Field(
        None, ge=1, le=MAX_SHARDS,
        description="Most shards (pods of one Indexed Job) one job may be split into: a request setting "
                    "`shards` above it is refused; the automatic plan (shards unset) never chooses more.")


class AugmentationProjectSpec(BaseModel):
    """`spec` of an AugmentationProject."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)
    display_name: Optional[str] = Field(None, max_length=253, description="Human-readable project name.")
    hub_token_secret: Optional[SecretKeyRef] = Field(
        None, description="Secret (in this namespace) holding the project's Hugging Face token; its jobs use "
                          "it instead of the deployment-wide one. A reference: the token never enters a CR.")
    notify_secret: Optional[SecretKeyRef] = Field(
        None, description="Secret (in this namespace) whose key holds the signing secret (`whsec_` + base64) of "
                          "the project's webhooks (notify_url, a request field, with a project default in "
                          "`defaults`). A reference: the secret never enters a CR.")
    allowed_sources: list[RepoPattern] = Field(
        min_length=1, max_length=64,
        description="Hub datasets the project may read: `*` (any), an org (`acme`: any repo of it) or a glob "
                    "over `org/name` (`acme/robot-*`). Matched case-insensitively.")
    allowed_outputs: list[RepoPattern] = Field(
        min_length=1, max_length=64,
        description="Hub datasets the project may write, same patterns as allowed_sources. The default output "
                    "name (`<source org>/<name>-augmented-<id>`) must match too.")
    file_access: FileAccess = Field(default_factory=FileAccess, description="`file://` sources and outputs.")
    defaults: ProjectDefaults = Field(  # type: ignore[valid-type]
        default_factory=ProjectDefaults,
        description="Values for request fields a request leaves out: the request's value wins, then the "
                    "project's, then the built-in default. output_visibility here is the project's visibility default.")
    limits: ProjectLimits = Field(default_factory=ProjectLimits, description="Ceilings for one job.")
    ttl_seconds_after_finished: Optional[int] = Field(
        None, ge=0, description="Finished jobs (and their Jobs) are deleted this long after they end; unset = kept.")
    kueue_queue: Optional[str] = Field(
        None, min_length=1, max_length=63, json_schema_extra={"pattern": QUEUE_NAME_PATTERN},
        description="A Kueue LocalQueue in this namespace that admits the project's Jobs (every Job of its "
                    "jobs: single, shards, finalize, cleanup): they carry kueue.x-k8s.io/queue-name and are "
                    "created suspended, and a job stays queued with Kueue's reason, never failing on the "
                    "pending timeout, until Kueue admits it. Wins over the pool's kueue_queue (the project's "
                    "quota is the team's); unset = the pool's queue, if any.")

    @field_validator("allowed_sources", "allowed_outputs")
    @classmethod
    def _patterns(cls, patterns: list[str], info) -> list[str]:
        for p in patterns:
            if not re.match(REPO_PATTERN, p):
                raise ValueError(f"{info.field_name}: {p!r} is not `*`, an org or an `org/name` glob")
        return patterns

    @field_validator("kueue_queue")
    @classmethod
    def _queue_name(cls, name: Optional[str]) -> Optional[str]:
        # The pattern is in the schema (the apiserver checks it); this words the error.
        if name is not None and not re.match(QUEUE_NAME_PATTERN, name):
            raise ValueError(f"kueue_queue: {name!r} is not a LocalQueue name (a DNS-1123 label: lowercase "
                             "letters, digits and '-', starting and ending with a letter or digit)")
        return name

    @model_validator(mode="after")
    def _defaults_form_a_valid_request(self):
        # Cross-field rules (min <= max, odd kernels, copies per transform) hold for the defaults
        # on their own; a request can still combine them into something invalid, which the
        # effective spec's validation then names.
        chosen = self.defaults.model_dump(exclude_unset=True)
        try:
            AugmentationJobCreateRequest.model_validate(
                {"project_id": "00000000-0000-4000-8000-000000000000", "dataset_id": "org/name", **chosen})
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(map(str, first["loc"])) or "defaults"
            raise ValueError(f"defaults.{where}: {first['msg'].removeprefix('Value error, ')}") from None
        return self

