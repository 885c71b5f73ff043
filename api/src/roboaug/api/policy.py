"""The one rule set of projects: which values a job runs with, and what its project forbids.

Pure functions over the models, no I/O: the gateway calls them before it creates a CR, the
operator before it starts a Job (a policy may have changed since), and the tests call them
directly. Each refusal is a `Violation` naming the request field, the project policy and the kind:
`forbidden` (a repo or path the project may not touch: HTTP 403) or `limit` (a ceiling: 422).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Literal, Optional

from pydantic import ValidationError

from roboaug.api.models import AugmentationJobCreateRequest, DatasetRef, default_output_dataset_id
from roboaug.api.models.project import AugmentationProjectSpec, SpecSource

ViolationKind = Literal["forbidden", "limit"]
_HTTP_STATUS: dict[str, int] = {"forbidden": 403, "limit": 422}
# The default output name depends on the job id only in its suffix; before a job id exists the
# org it lands in (what the patterns decide on) is the same for any id.
_ANY_JOB = uuid.UUID(int=0)


@dataclass(frozen=True)
class Violation:
    field: str  # the request field at fault ("spec" for the spec as a whole)
    policy: str  # the project's rule, as a path in AugmentationProject.spec
    kind: ViolationKind
    message: str  # names the field, the value's fault and the policy; never a secret

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self.kind]

    def __str__(self) -> str:
        return self.message


class EffectiveSpecInvalid(ValueError):
    """The request and the project's defaults together break a request rule (e.g. min > max)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def effective_spec(request: AugmentationJobCreateRequest, project: Optional[AugmentationProjectSpec]
                   ) -> tuple[AugmentationJobCreateRequest, dict[str, SpecSource]]:
    """The request a job runs: each field from the request if it set it (`model_fields_set`),
    else the project's default if it has one, else the built-in default; and where each came from.

    The result is validated as a whole, so a project default that no longer fits a request's
    value (a project minimum above the request's maximum) is an error naming the field.
    """
    from_request = request.model_fields_set
    from_project = project.defaults.model_dump(exclude_unset=True) if project else {}
    values: dict = {}
    sources: dict[str, SpecSource] = {}
    for name in AugmentationJobCreateRequest.model_fields:
        if name in from_request:
            values[name] = getattr(request, name)
            sources[name] = SpecSource.request
        elif name in from_project:
            values[name] = from_project[name]
            sources[name] = SpecSource.project
        else:
            sources[name] = SpecSource.default
    try:
        spec = AugmentationJobCreateRequest.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(map(str, first["loc"])) or "request"
        msg = first["msg"].removeprefix("Value error, ")
        if from_project:
            msg += f" (with the project's defaults for {', '.join(sorted(from_project))} applied)"
        raise EffectiveSpecInvalid(field, f"{field}: {msg}") from None
    return spec, sources


def check(spec: AugmentationJobCreateRequest, project: AugmentationProjectSpec,
          job_id: Optional[uuid.UUID] = None) -> list[Violation]:
    """Every way `spec` breaks `project`'s policy (empty: allowed). `job_id` completes the default
    output name when `output_dataset_id` is unset."""
    found: list[Violation] = []
    found += _source_violations(spec.dataset_id, project)
    output = spec.output_dataset_id or default_output_dataset_id(spec.dataset_id, job_id or _ANY_JOB)
    found += _output_violations(output, explicit=spec.output_dataset_id is not None, project=project)
    found += _limit_violations(spec, project)
    return found


def frames_written(source_frames: int, spec: AugmentationJobCreateRequest) -> int:
    """The frames a job writes, what limits.max_frames_per_job bounds: the output dataset's total.
    copy mode keeps the originals and adds one augmented copy of each per transform set
    (`copies_plan`); inplace replaces each frame. An image dataset's frame is a row."""
    if spec.augment_dataset_mode == "copy":
        return source_frames * (1 + len(spec.copies_plan()))
    return source_frames


def check_frames(frames_total: int, max_frames_per_job: Optional[int]) -> Optional[Violation]:
    """The frame ceiling, once the source's size is known: only the worker knows it, from the
    source's metadata (the operator hands it the project's limit, contract.MAX_FRAMES).
    `frames_total` is `frames_written`'s."""
    if max_frames_per_job is None or frames_total <= max_frames_per_job:
        return None
    return Violation("dataset_id", "limits.max_frames_per_job", "limit",
                     f"dataset_id: the job would write {frames_total} frames, more than the project's "
                     f"limits.max_frames_per_job ({max_frames_per_job})")


def glob_regex(pattern: str) -> str:
    """The regular expression a repo pattern stands for: `*` any run of characters, `?` one, every
    other character itself (REPO_PATTERN admits no other regex metacharacter but `.`).
    `roboaug.api.admission` builds the same expression in CEL with the same three replacements."""
    return "^" + pattern.replace(".", "\\.").replace("*", ".*").replace("?", ".") + "$"


def repo_allowed(repo_id: str, patterns: list[str]) -> bool:
    """A pattern without `/` matches the org (`*`: any), one with `/` the whole `org/name`;
    case-insensitive, like Hub repo ids."""
    repo = repo_id.lower()
    org = repo.split("/", 1)[0]
    return any(re.match(glob_regex(p.lower()), repo if "/" in p else org) for p in patterns)


def path_allowed(path: str, roots: list[str]) -> bool:
    """`path` names no `.` or `..` segment and is a root or lies inside one (roots are canonical,
    models.project.CANONICAL_ROOT). Compared as strings so the apiserver's CEL can do the same;
    a path that needs resolving is refused rather than resolved."""
    if any(seg in (".", "..") for seg in path.split("/")):
        return False
    return any(root == "/" or path == root or path.startswith(root + "/") for root in roots)


# -- the rules, one per policy --------------------------------------------------------------
def _file_violation(field: str, path: str, project: AugmentationProjectSpec) -> Optional[Violation]:
    access = project.file_access
    if not access.allowed:
        return Violation(field, "file_access.allowed", "forbidden",
                         f"{field}: file:// datasets are not allowed in this project (file_access.allowed is false)")
    if not path_allowed(path, access.roots):
        return Violation(field, "file_access.roots", "forbidden",
                         f"{field}: file://{path} is outside the project's file_access.roots "
                         f"({', '.join(access.roots) or 'none'})")
    return None


def _source_violations(dataset_id: str, project: AugmentationProjectSpec) -> list[Violation]:
    ref = DatasetRef.parse(dataset_id)
    if ref.scheme == "file":
        v = _file_violation("dataset_id", ref.path, project)
        return [v] if v else []
    if repo_allowed(ref.repo_id, project.allowed_sources):
        return []
    return [Violation("dataset_id", "allowed_sources", "forbidden",
                      f"dataset_id: {ref.repo_id} does not match the project's allowed_sources "
                      f"({', '.join(project.allowed_sources)})")]


def _output_violations(output: str, *, explicit: bool, project: AugmentationProjectSpec) -> list[Violation]:
    if output.startswith("file://"):
        v = _file_violation("output_dataset_id", output[len("file://"):], project)
        return [v] if v else []
    if repo_allowed(output, project.allowed_outputs):
        return []
    how = "" if explicit else " (the default output name; set output_dataset_id to one the project allows)"
    return [Violation("output_dataset_id", "allowed_outputs", "forbidden",
                      f"output_dataset_id: {output}{how} does not match the project's allowed_outputs "
                      f"({', '.join(project.allowed_outputs)})")]


def _limit_violations(spec: AugmentationJobCreateRequest, project: AugmentationProjectSpec) -> list[Violation]:
    found = []
    limits = project.limits
    # inplace replaces each episode by one version, whatever the plan's transforms.
    copies = 1 if spec.augment_dataset_mode == "inplace" else len(spec.copies_plan())
    if limits.max_copies is not None and copies > limits.max_copies:
        per_transform = spec.augment_mode == "independent" and spec.augment_copies_per_transform
        field = "augment_copies_per_transform" if per_transform else "augment_copies"
        found.append(Violation(field, "limits.max_copies", "limit",
                               f"{field}: the job would make {copies} augmented copies per episode, more than "
                               f"the project's limits.max_copies ({limits.max_copies})"))
    # Only a count the request (or the project's defaults) fixes: an automatic plan is capped at
    # the limit instead (the operator hands it to the worker, contract.MAX_SHARDS_ENV).
    if limits.max_shards is not None and spec.shards is not None and spec.shards > limits.max_shards:
        found.append(Violation("shards", "limits.max_shards", "limit",
                               f"shards: the job asks for {spec.shards} shards, more than the project's "
                               f"limits.max_shards ({limits.max_shards})"))
    if limits.max_spec_bytes is not None:
        size = len(json.dumps(spec.model_dump(mode="json"), separators=(",", ":")).encode())
        if size > limits.max_spec_bytes:
            found.append(Violation("spec", "limits.max_spec_bytes", "limit",
                                   f"spec: {size} bytes as JSON, more than the project's limits.max_spec_bytes "
                                   f"({limits.max_spec_bytes})"))
    return found
