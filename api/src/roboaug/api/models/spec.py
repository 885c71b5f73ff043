"""The augmentation request and the AugmentationJob spec: the one model every door shares.

The REST gateway validates POST bodies with `AugmentationJobCreateRequest`, the CRD's
openAPIV3Schema is generated from `AugmentationJobSpec` (see `roboaug.api.crd`), the operator
reads CR specs through it and the worker receives it as JSON. Field names are those of the user's REST request document (shared/seeds/000_*), unchanged,
so a `job.yaml` and a POST body read the same.

Bounds are physical limits, not taste: past them a transform stops meaning what its name says
(a contrast below -100 % inverts the image, a patch wider than the frame is no patch).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Literal, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .webhook import NOTIFY_URL_MAX, NOTIFY_URL_PATTERN, check_notify_url

GENERATIVE_DISABLED_MESSAGE = (
    "generative augmentation (Cosmos Transfer 2.5) is disabled on this deployment; "
    "use augmentation_type 'deterministic'"
)
"""What the gateway answers (400) and what the operator writes into status.error for a
generative AugmentationJob created with kubectl: one text, whichever door the job came through."""

TRANSFORMS: tuple[str, ...] = ("lighting", "noise", "blur", "occlusion")
"""Names accepted in `augment_transforms`."""

APPLY_ORDER: tuple[str, ...] = ("lighting", "occlusion", "blur", "noise")
"""Order in which stacked transforms are applied, whatever order the request lists them in:
light falls on the scene, an occluder sits in front of it, the lens blurs what it sees and the
sensor adds noise last."""

# -- dataset ids: the Hub's rules, written once -------------------------------------------------
# huggingface_hub's `validate_repo_id` (the client-side copy of the Hub's own name rules): each
# of `org` and `name` is 1..96 of [A-Za-z0-9_.-], starts and ends with [A-Za-z0-9_], holds no
# `--` nor `..`, and the id does not end in `.git`. Written as regular expressions both Python's
# `re` and RE2 (the apiserver's CEL `matches`, OpenAPI `pattern`) read alike: no lookaround, no
# backreference, never `$` in Python (it matches before a final newline there): each regex is
# unanchored and must match the WHOLE value (`re.fullmatch`; `IdRule.anchored` is `^(?:..)$`,
# where RE2's `$` is the end of the text).
_WORD = "[A-Za-z0-9_]"
_SEPARATORS = r"(?:-(?:\.-)*\.?|\.(?:-\.)*-?)"  # a run of '-' and '.' that never repeats one
HF_REPO_PART = rf"{_WORD}(?:{_SEPARATORS}?{_WORD})*"
HF_REPO_ID = rf"{HF_REPO_PART}/{HF_REPO_PART}"
HF_REVISION = r"[A-Za-z0-9][A-Za-z0-9_./-]{0,199}"
HF_PART_MAX = 96
_FILE_URL = r"file:///[^\x00]*"
_ANY = r"[^\x00]*"


@dataclass(frozen=True)
class IdRule:
    """One rule of a dataset id: the whole value must (`must=True`) or must not match `regex`."""

    regex: str
    must: bool
    message: str

    @property
    def anchored(self) -> str:
        """For RE2 (CEL `matches`, OpenAPI `pattern`), where `$` is the end of the text."""
        return f"^(?:{self.regex})$"

    def holds(self, value: str) -> bool:
        return (re.fullmatch(self.regex, value) is not None) == self.must


def _id_rules(hub: str, rev: str, what: str) -> tuple[IdRule, ...]:
    return (
        IdRule(rf"{hub}{HF_REPO_ID}{rev}|{_FILE_URL}", True,
               f"must be {what} or `file:///abs/path`, where org and name are letters, digits, '_', "
               "'-' and '.', begin and end with a letter, digit or '_', and hold no '--' or '..' "
               "(the Hub's repo id rules)"),
        IdRule(rf"{hub}[^/@]{{1,{HF_PART_MAX}}}/[^/@]{{1,{HF_PART_MAX}}}{rev}|{_FILE_URL}", True,
               f"a Hub org and name are at most {HF_PART_MAX} characters each"),
        IdRule(rf"{hub}[^/@]*/[^/@]*\.git{rev}", False, "a Hub repo name cannot end in '.git'"),
    )


DATASET_ID_RULES = _id_rules("(?:hf://)?", rf"(?:@{HF_REVISION})?", "`org/name` or `hf://org/name[@revision]`")
OUTPUT_ID_RULES = _id_rules("", "", "`org/name`")
DATASET_ID_PATTERN = DATASET_ID_RULES[0].anchored
"""The shape alone, for the OpenAPI schema's `pattern` (the other rules bound lengths and `.git`)."""
OUTPUT_ID_PATTERN = OUTPUT_ID_RULES[0].anchored


def check_id(field: str, value: str, rules: tuple[IdRule, ...] = DATASET_ID_RULES) -> str:
    """`value` if it keeps every rule; else ValueError naming the field and the first rule broken."""
    for rule in rules:
        if not rule.holds(value):
            raise ValueError(f"{field} {value!r}: {rule.message}")
    return value
TRANSFORMS_PATTERN = (
    r"^\s*[A-Za-z]+\s*(,\s*[A-Za-z]+\s*)*$"
)


class AugmentationType(str, Enum):
    deterministic = "deterministic"
    generative = "generative"


class AugmentMode(str, Enum):
    stacked = "stacked"
    independent = "independent"


class DatasetMode(str, Enum):
    copy = "copy"
    inplace = "inplace"


class OutputVisibility(str, Enum):
    private = "private"
    public = "public"
    source = "source"


class BadSample(str, Enum):
    fail = "fail"
    skip = "skip"


class NoiseType(str, Enum):
    gaussian = "gaussian"
    shot = "shot"
    read = "read"
    mixed = "mixed"


class BlurType(str, Enum):
    motion = "motion"
    defocus = "defocus"
    mixed = "mixed"


class OcclusionType(str, Enum):
    rectangle = "rectangle"
    overlay = "overlay"
    mixed = "mixed"


class CosmosControlType(str, Enum):
    edge = "edge"
    depth = "depth"
    seg = "seg"
    vis = "vis"


def _span(lo: float, hi: float) -> str:
    return f"{lo:g}..{hi:g}"


@dataclass(frozen=True)
class _End:
    """Marks a pydantic field as one end of a `RangePair` (checked against the field's name)."""

    pair: "RangePair"
    end: Literal["min", "max"]


@dataclass(frozen=True)
class RangePair:
    """A `<x>_min` / `<x>_max` pair: both within [lo, hi] and min <= max.

    The one place a pair's bounds are written. The two pydantic fields (`field`), the min <= max
    validator, the CRD's bounds and CEL rules, the worker's parameter views and the README's
    parameter table all read them from here.
    """

    min_field: str
    max_field: str
    lo: float
    hi: float
    unit: str
    integer: bool = False
    odd: bool = False  # a motion kernel has a centre pixel

    @property
    def span(self) -> str:
        return _span(self.lo, self.hi)

    def field(self, end: Literal["min", "max"], default, description: str):
        """The annotated type of one end. `{range}`, `{lo}` and `{hi}` in `description` are
        filled in from the bounds, so the text cannot disagree with them."""
        kind = int if self.integer else float
        text = description.format(range=self.span, lo=f"{self.lo:g}", hi=f"{self.hi:g}")
        return Annotated[kind, Field(default, ge=self.lo, le=self.hi, description=text), _End(self, end)]


BRIGHTNESS = RangePair("augment_brightness_min", "augment_brightness_max", -100, 100, "percent of full scale")
CONTRAST = RangePair("augment_contrast_min", "augment_contrast_max", -100, 100, "percent")
COLOR_TEMP = RangePair("augment_color_temp_min", "augment_color_temp_max", 1000, 40000, "kelvin (6500 = neutral)")
GAUSSIAN_SIGMA = RangePair("noise_gaussian_sigma_min", "noise_gaussian_sigma_max", 0, 100, "8-bit pixel levels")
SHOT_SCALE = RangePair("noise_shot_scale_min", "noise_shot_scale_max", 0, 10, "gain (variance = gain x level)")
MOTION_KERNEL = RangePair("blur_motion_kernel_min", "blur_motion_kernel_max", 3, 99, "pixels",
                          integer=True, odd=True)
DEFOCUS_SIGMA = RangePair("blur_defocus_sigma_min", "blur_defocus_sigma_max", 0, 25, "pixels")
NUM_PATCHES = RangePair("occlusion_num_patches_min", "occlusion_num_patches_max", 1, 20, "patches", integer=True)
PATCH_WIDTH = RangePair("occlusion_patch_width_min", "occlusion_patch_width_max", 0.01, 1, "fraction of frame width")
PATCH_HEIGHT = RangePair("occlusion_patch_height_min", "occlusion_patch_height_max", 0.01, 1,
                         "fraction of frame height")

# The single list the pydantic validators and the CRD's CEL rules are both generated from.
RANGE_PAIRS: tuple[RangePair, ...] = (
    BRIGHTNESS, CONTRAST, COLOR_TEMP, GAUSSIAN_SIGMA, SHOT_SCALE, MOTION_KERNEL, DEFOCUS_SIGMA, NUM_PATCHES,
    PATCH_WIDTH, PATCH_HEIGHT,
)
_PAIR_BY_MAX = {p.max_field: p for p in RANGE_PAIRS}
ODD_FIELDS: tuple[str, ...] = tuple(f for p in RANGE_PAIRS if p.odd for f in (p.min_field, p.max_field))
MAX_COPIES = 50
MAX_COPIES_KEY_CHARS = 32
CopiesKey = Annotated[str, Field(min_length=1, max_length=MAX_COPIES_KEY_CHARS)]
"""A key of augment_copies_per_transform. A transform name wherever the map is used (independent
mode: `_copies_keys`, and the CRD's CEL rule); stacked mode ignores the map, and the request
document's own example (shared/seeds/000) sends a placeholder key there, so that is accepted,
only bounded: at most one key per transform, MAX_COPIES_KEY_CHARS characters each."""

# The size of a spec: every string and list of the request is bounded, so that the largest spec
# the bounds allow, as the worker gets it (JSON, `ensure_ascii=False`, every string at its
# maximum length), stays under MAX_SPEC_JSON_BYTES for ASCII text; tests/api/test_spec_doors.py
# builds that spec and measures it. Text of many-byte characters can weigh up to 6 bytes a
# character (4 of UTF-8, 6 where JSON escapes a control character): past the worker pod's
# annotation (contract.SPEC_ANNOTATION_MAX_BYTES) the operator fails the job, naming the size. The prompts are
# most of it: MAX_PROMPTS x MAX_PROMPT_CHARS.
MAX_SPEC_JSON_BYTES = 64 * 1024
MAX_SHARDS = 10000
"""Most shards (pods of one Indexed Job) a job may be split into. The one definition: the worker
contract's ROBOAUG_SHARDS rule (`contract.py`), the worker's plan and the project limit
`limits.max_shards` take it from here."""
MAX_PARALLELISM = 1000
"""Most shards of one job running at once, whatever the pool allows."""
MAX_PROMPTS = 16
MAX_PROMPT_CHARS = 2000


def _bounded(default, lo, hi, description, *, integer=False):
    """A single bounded field; `{range}` in `description` is filled in from the bounds."""
    kind = int if integer else float
    return Annotated[kind, Field(default, ge=lo, le=hi, description=description.format(range=_span(lo, hi)))]


def parse_transforms(value: str) -> list[str]:
    """`" Lighting, NOISE "` -> `["lighting", "noise"]`; unknown or repeated names are an error."""
    names = [part.strip().lower() for part in value.split(",")]
    if any(not n for n in names):
        raise ValueError("augment_transforms: empty name in the list (stray comma?)")
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise ValueError(
            f"augment_transforms: unknown transform(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(TRANSFORMS)}"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"augment_transforms: duplicate transform(s) {', '.join(map(repr, dupes))}")
    return names


class AugmentationJobCreateRequest(BaseModel):
    """Request to start a dataset augmentation job (the REST request, field for field).

    Units: brightness and contrast in percent, colour temperature in kelvin (6500 K is neutral),
    noise sigma in 8-bit pixel levels, motion-blur kernel in pixels (odd), defocus sigma in pixels,
    occlusion patch sizes as fractions of the frame's width and height.
    """

    model_config = ConfigDict(extra="forbid", use_enum_values=True, validate_default=True)

    project_id: uuid.UUID = Field(description="Project ID to associate the job with (UUID).")
    dataset_id: str = Field(
        description=(
            "Dataset to augment: a Hugging Face dataset id `org/name`, optionally "
            "`hf://org/name@revision`, or `file:///absolute/path` for a dataset on the worker's disk."
        ),
        max_length=1024,
        json_schema_extra={"pattern": DATASET_ID_PATTERN},
    )
    augmentation_type: AugmentationType = Field(
        AugmentationType.deterministic,
        description=(
            f"'deterministic' applies fast CPU transforms ({', '.join(TRANSFORMS)}). "
            "'generative' uses Cosmos Transfer2.5 to re-render frames (currently disabled: 400)."
        ),
    )
    name: Optional[str] = Field(None, max_length=253, description="Human-readable job name.")
    augment_transforms: str = Field(
        "lighting",
        # Short on purpose: the apiserver's CEL cost budget for the duplicate check grows with it.
        max_length=64,
        description=(
            f"Comma-separated transforms: {', '.join(TRANSFORMS)} (case and spaces "
            "tolerated; unknown or repeated names are rejected)."
        ),
    )
    augment_mode: AugmentMode = Field(
        AugmentMode.stacked,
        description="'stacked' applies all transforms to each copy. 'independent' creates one copy per transform.",
    )
    augment_copies: int = Field(
        3, ge=1, le=MAX_COPIES,
        description=f"Number of augmented copies per episode (when dataset_mode=copy), 1..{MAX_COPIES}.",
    )
    augment_copies_per_transform: Optional[dict[CopiesKey, Annotated[int, Field(ge=1, le=MAX_COPIES)]]] = Field(
        None, max_length=len(TRANSFORMS),
        description=(
            "Independent mode only: copies per episode for each named transform (keys must be "
            "transforms chosen in augment_transforms), overriding augment_copies. Ignored in stacked mode "
            f"(at most {len(TRANSFORMS)} keys of {MAX_COPIES_KEY_CHARS} characters). "
            "In inplace mode each episode gets exactly one version, so every count must be 1."
        ),
    )
    augment_dataset_mode: DatasetMode = Field(
        DatasetMode.copy,
        description="'copy' adds augmented copies to the original dataset. 'inplace' replaces the originals with augmented versions.",
    )
    augment_brightness_min: BRIGHTNESS.field("min", -15, "Lowest brightness shift, percent of full scale ({range}).")
    augment_brightness_max: BRIGHTNESS.field("max", 15, "Highest brightness shift, percent of full scale ({range}).")
    augment_contrast_min: CONTRAST.field("min", -10, "Lowest contrast change, percent ({lo} = flat grey .. {hi} = double).")
    augment_contrast_max: CONTRAST.field("max", 10, "Highest contrast change, percent ({range}).")
    augment_color_temp_min: COLOR_TEMP.field("min", 4000, "Lowest colour temperature, kelvin (6500 K = neutral; {range}).")
    augment_color_temp_max: COLOR_TEMP.field("max", 6500, "Highest colour temperature, kelvin ({range}).")
    noise_type: NoiseType = Field(NoiseType.mixed, description="Gaussian, shot, read, or mixed.")
    noise_gaussian_sigma_min: GAUSSIAN_SIGMA.field("min", 3, "Lowest gaussian noise sigma, 8-bit pixel levels ({range}).")
    noise_gaussian_sigma_max: GAUSSIAN_SIGMA.field("max", 15, "Highest gaussian noise sigma, 8-bit pixel levels ({range}).")
    noise_shot_scale_min: SHOT_SCALE.field("min", 0.3, "Lowest shot-noise gain: variance = gain x pixel level ({range}).")
    noise_shot_scale_max: SHOT_SCALE.field("max", 1, "Highest shot-noise gain ({range}).")
    blur_type: BlurType = Field(BlurType.mixed, description="Motion, defocus, or mixed.")
    blur_motion_kernel_min: MOTION_KERNEL.field("min", 5, "Shortest motion-blur kernel, pixels, odd ({range}).")
    blur_motion_kernel_max: MOTION_KERNEL.field("max", 15, "Longest motion-blur kernel, pixels, odd ({range}).")
    blur_defocus_sigma_min: DEFOCUS_SIGMA.field("min", 0.5, "Lowest defocus blur sigma, pixels ({range}).")
    blur_defocus_sigma_max: DEFOCUS_SIGMA.field("max", 2.5, "Highest defocus blur sigma, pixels ({range}).")
    occlusion_type: OcclusionType = Field(OcclusionType.mixed, description="Rectangle, overlay, or mixed.")
    occlusion_num_patches_min: NUM_PATCHES.field("min", 1, "Fewest occluding patches per copy ({range}).")
    occlusion_num_patches_max: NUM_PATCHES.field("max", 3, "Most occluding patches per copy ({range}).")
    occlusion_patch_width_min: PATCH_WIDTH.field("min", 0.05, "Narrowest patch, fraction of frame width ({range}).")
    occlusion_patch_width_max: PATCH_WIDTH.field("max", 0.2, "Widest patch, fraction of frame width ({range}).")
    occlusion_patch_height_min: PATCH_HEIGHT.field("min", 0.05, "Shortest patch, fraction of frame height ({range}).")
    occlusion_patch_height_max: PATCH_HEIGHT.field("max", 0.2, "Tallest patch, fraction of frame height ({range}).")
    cosmos_prompt: str = Field(
        "A robot arm performing a task in a different environment.",
        max_length=4000,
        description="Prompt for Cosmos Transfer2.5 generation.",
    )
    cosmos_prompts: list[Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]] = Field(
        default_factory=list, max_length=MAX_PROMPTS,
        description=(f"Multiple prompts — overrides cosmos_prompt if non-empty (at most {MAX_PROMPTS}, "
                     f"{MAX_PROMPT_CHARS} characters each)."),
    )
    cosmos_control_type: CosmosControlType = Field(
        CosmosControlType.edge, description="Control type: edge, depth, seg, or vis."
    )
    cosmos_control_weight: _bounded(1, 0, 2, "Weight of the control signal ({range}).")
    cosmos_guidance: _bounded(3, 0, 20, "Classifier-free guidance scale ({range}).")
    cosmos_num_steps: _bounded(4, 1, 100, "Diffusion steps ({range}).", integer=True)
    cosmos_seed: _bounded(42, 0, 2**32 - 1, "Seed for generation (0..2^32-1).", integer=True)
    cosmos_model_variant: str = Field(
        "edge/distilled", pattern=r"^[a-z0-9_-]+/[a-z0-9_-]+$", max_length=100,
        description="Cosmos model variant, `<control>/<flavour>`.",
    )
    cosmos_disable_guardrails: bool = Field(False, description="Disable Cosmos safety guardrails.")
    cosmos_camera_name: Optional[str] = Field(
        None, max_length=253, description="Camera (video feature) to re-render; all cameras when unset."
    )
    # Beyond the user's request document: what makes a run reproducible and its output addressable.
    augment_seed: _bounded(
        42, 0, 2**32 - 1,
        "Seed for deterministic transforms (0..2^32-1): same request and seed give the same output bytes.",
        integer=True,
    )
    output_dataset_id: Optional[str] = Field(
        None, max_length=1024, json_schema_extra={"pattern": OUTPUT_ID_PATTERN},
        description=(
            "Where to write the result: a Hub dataset id `org/name` or `file:///path`. Default: "
            "`<source org>/<source name>-augmented-<first 8 hex of job_id>` on the Hub."
        ),
    )
    output_visibility: OutputVisibility = Field(
        OutputVisibility.private,
        description=(
            "Visibility of the output repo when the worker creates it on the Hub: 'private', 'public', or "
            "'source' (the same as the source repo; private for a file:// source). An existing output repo "
            "keeps its own."
        ),
    )
    on_bad_sample: BadSample = Field(
        BadSample.fail,
        description=(
            "What to do with a source image that cannot be decoded (image datasets): 'fail' fails the job "
            "naming the file, row and column; 'skip' leaves it out of the augmented rows (copy mode) or keeps "
            "it unchanged (inplace mode), lists it under `skipped` in meta/augmentation.json and reports it "
            "as a warning in the job's events and status."
        ),
    )
    shards: Optional[int] = Field(
        None, ge=1, le=MAX_SHARDS,
        description=(f"Split the job into this many shards (1..{MAX_SHARDS}), each a pod of one Indexed Job "
                     "(a shard is a set of whole output files, so the output is byte-identical for any count), "
                     "merged by a finalize pod into one commit. Unset: chosen from the source's size (episodes "
                     "and frames); small datasets stay one pod."),
    )
    max_parallelism: Optional[int] = Field(
        None, ge=1, le=MAX_PARALLELISM,
        description=(f"Most shards running at once (1..{MAX_PARALLELISM}); the pool's bound also applies. "
                     "Unset: the pool's bound."),
    )
    pending_timeout_seconds: Optional[int] = Field(
        None, ge=30, le=7 * 24 * 3600,
        description=("Fail the job if no node takes its pod, or its container does not start there (a missing "
                     "Secret, an image that cannot be pulled), within this many seconds (operator default when unset)."),
    )
    notify_url: Optional[str] = Field(
        None, max_length=NOTIFY_URL_MAX, json_schema_extra={"pattern": NOTIFY_URL_PATTERN},
        description=("Where the operator POSTs a signed notice (Standard Webhooks) when the job completes, fails "
                     "or is cancelled: an https:// URL without credentials (http only for hosts the deployment "
                     "allows), signed with the project's notify_secret."),
    )

    # -- field rules ------------------------------------------------------------------------
    @field_validator("dataset_id")
    @classmethod
    def _dataset_id(cls, value: str) -> str:
        DatasetRef.parse(value)
        return value

    @field_validator("notify_url")
    @classmethod
    def _notify_url(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else check_notify_url(value)

    @field_validator("output_dataset_id")
    @classmethod
    def _output_id(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else check_id("output_dataset_id", value, OUTPUT_ID_RULES)

    @field_validator("augment_transforms")
    @classmethod
    def _normalise_transforms(cls, value: str) -> str:
        return ",".join(parse_transforms(value))

    @field_validator(*ODD_FIELDS)
    @classmethod
    def _odd(cls, value: int, info: ValidationInfo) -> int:
        if value % 2 != 1:
            raise ValueError(f"{info.field_name} must be odd (a motion kernel has a centre pixel), got {value}")
        return value

    @field_validator(*_PAIR_BY_MAX)
    @classmethod
    def _min_le_max(cls, value, info: ValidationInfo):
        pair = _PAIR_BY_MAX[info.field_name]
        low = info.data.get(pair.min_field)
        if low is not None and low > value:
            raise ValueError(
                f"{pair.min_field} ({low}) must be <= {pair.max_field} ({value})"
            )
        return value

    @field_validator("augment_copies_per_transform")
    @classmethod
    def _copies_keys(cls, value, info: ValidationInfo):
        if not value or info.data.get("augment_mode") != AugmentMode.independent.value:
            return value  # ignored in stacked mode (the create response says so)
        chosen = (info.data.get("augment_transforms") or "").split(",")
        for key in value:
            if key not in chosen:
                raise ValueError(
                    f"augment_copies_per_transform key {key!r} is not a transform chosen in "
                    f"augment_transforms ({', '.join(chosen)})"
                )
        return value

    @model_validator(mode="after")
    def _inplace_has_one_version(self):
        # inplace replaces each episode by exactly one augmented version: a count other than 1
        # cannot be honoured, and silently dropping it surprised users.
        per = self.augment_copies_per_transform or {}
        if self.augment_dataset_mode == DatasetMode.inplace.value and any(n != 1 for n in per.values()):
            counts = ", ".join(f"{k}={n}" for k, n in per.items() if n != 1)
            raise ValueError(
                "augment_copies_per_transform: in inplace mode each episode is replaced by exactly one "
                f"augmented version, so every count must be 1 (got {counts})"
            )
        return self

    # -- derived views ------------------------------------------------------------------------
    @property
    def transforms(self) -> list[str]:
        return self.augment_transforms.split(",")

    def copies_plan(self) -> list[tuple[str, ...]]:
        """The transform sets of the augmented copies of one episode, in output order.

        copy mode, stacked: `augment_copies` copies, each with every chosen transform.
        copy mode, independent: per transform, `augment_copies_per_transform[t]` (else
        `augment_copies`) copies with that transform alone.
        inplace mode: exactly one version per episode (stacked: all transforms; independent:
        the transforms in turn, episode i gets transform i mod n).
        """
        chosen = [t for t in APPLY_ORDER if t in self.transforms]
        if self.augment_dataset_mode == DatasetMode.inplace.value:
            return [tuple(chosen)] if self.augment_mode == AugmentMode.stacked.value else [(t,) for t in chosen]
        if self.augment_mode == AugmentMode.stacked.value:
            return [tuple(chosen)] * self.augment_copies
        per = self.augment_copies_per_transform or {}
        plan: list[tuple[str, ...]] = []
        for t in chosen:
            plan.extend([(t,)] * per.get(t, self.augment_copies))
        return plan

    def ignored_fields_message(self) -> Optional[str]:
        if self.augment_mode == AugmentMode.stacked.value and self.augment_copies_per_transform:
            return "augment_copies_per_transform is ignored in stacked mode"
        return None


def check_range_fields(model: type[BaseModel]) -> None:
    """Every RANGE_PAIRS end is declared on `model` under its own name, once, by its pair."""
    seen: dict[str, RangePair] = {}
    for name, info in model.model_fields.items():
        for mark in (m for m in info.metadata if isinstance(m, _End)):
            expected = mark.pair.min_field if mark.end == "min" else mark.pair.max_field
            if name != expected:
                raise TypeError(f"{model.__name__}.{name} is declared as {expected} of a range pair")
            seen[name] = mark.pair
    missing = [f for p in RANGE_PAIRS for f in (p.min_field, p.max_field) if seen.get(f) is not p]
    if missing:
        raise TypeError(f"{model.__name__}: range fields not declared by their RangePair: {missing}")


check_range_fields(AugmentationJobCreateRequest)


class SecretKeyRef(BaseModel):
    """A reference to one key of a Secret in the job's namespace; the value never enters the CR."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253, description="Secret name.")
    key: str = Field("token", pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key within the Secret.")


class AugmentationJobSpec(AugmentationJobCreateRequest):
    """`spec` of an AugmentationJob: the request plus what only the cluster side sets."""

    job_id: Optional[uuid.UUID] = Field(
        None, description="Job UUID; set by the gateway, metadata.uid is used when unset."
    )
    cancel_requested: bool = Field(False, description="Set true to cancel; the job ends as 'cancelled'.")
    hub_token_secret: Optional[SecretKeyRef] = Field(
        None, description="Secret holding the Hugging Face token (operator default when unset)."
    )
    notify_secret: Optional[SecretKeyRef] = Field(
        None, description=("Secret (in this namespace) whose key holds the webhook signing secret "
                           "(`whsec_` + base64) for notify_url, when the project names none; a CR naming "
                           "another Secret than its project's gets no webhook. A reference, never the secret."),
    )


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetRef:
    """A parsed `dataset_id`: a Hub repo (with optional revision) or a local path."""

    scheme: Literal["hf", "file"]
    repo_id: Optional[str] = None
    revision: Optional[str] = None
    path: Optional[str] = None

    @classmethod
    def parse(cls, value: str) -> "DatasetRef":
        check_id("dataset_id", value)
        if value.startswith("file://"):
            return cls(scheme="file", path=value[len("file://"):])
        value = value.removeprefix("hf://")
        repo, _, rev = value.partition("@")
        return cls(scheme="hf", repo_id=repo, revision=rev or None)


def default_output_dataset_id(dataset_id: str, job_id: uuid.UUID | str) -> str:
    """The naming rule for the result: `<org>/<name>-augmented-<8 hex of job_id>`.

    A local source (`file:///x/name`) gets `file:///x/name-augmented-<8 hex>` beside it.
    """
    ref = DatasetRef.parse(dataset_id)
    suffix = f"-augmented-{str(job_id).replace('-', '')[:8].lower()}"
    if ref.scheme == "file":
        return "file://" + ref.path.rstrip("/") + suffix
    org, name = ref.repo_id.split("/")
    return f"{org}/{name[: 96 - len(suffix)]}{suffix}"
