"""What a source dataset's own metadata may say: it comes from whoever uploaded the dataset, so
it is checked before the worker acts on it.

- Path templates (`data_path`, `video_path` of meta/info.json) name files to read and to write:
  only the version's own fields, no conversions or nested fields, format specs of the form
  `[[fill]align][sign][0][width][,_][.precision][type]` with width and precision <= 12, and
  every path they render relative, without `.`, `..` or empty segments, and inside the dataset
  folder once symlinks are resolved.
- fps: an integer 1..1000 (LeRobot's timestamps are multiples of 1/fps).
- Frame sizes (video streams, PNG and other images): each side <= 16384 pixels and at most
  8192 x 8192 pixels in all (8K UHD, 7680 x 4320, fits with room to spare). A decoded RGB frame
  of that size is 192 MiB and the worker holds a few at a time per process; anything larger is
  refused from the header, before any pixel is decoded (a small file can declare a huge image).

A violation is UNSUPPORTED_FORMAT, permanent: the same dataset fails the same way on every try.
"""

from __future__ import annotations

import re
import string
from pathlib import Path, PurePosixPath

from .errors import ExitCode, WorkerError

MAX_FRAME_SIDE = 16384
MAX_FRAME_PIXELS = 8192 * 8192
MAX_FPS = 1000
MAX_FORMAT_WIDTH = 12
MAX_TEMPLATE_LENGTH = 512

TEMPLATE_FIELDS: dict[str, dict[str, frozenset[str]]] = {
    "v3.0": {
        "data_path": frozenset({"chunk_index", "file_index"}),
        "video_path": frozenset({"video_key", "chunk_index", "file_index"}),
    },
    "v2.1": {
        "data_path": frozenset({"episode_chunk", "episode_index"}),
        "video_path": frozenset({"episode_chunk", "video_key", "episode_index"}),
    },
}
"""The fields each version's templates are rendered with (lerobot_dataset.py, lerobot_writer.py)."""

_FORMAT_SPEC = re.compile(
    r"(?:[0-9A-Za-z_-]?[<>=^])?[+ -]?0?(?P<width>\d+)?[,_]?(?:\.(?P<precision>\d+))?[bdoxXs]?"
)


def invalid(message: str) -> WorkerError:
    return WorkerError(ExitCode.UNSUPPORTED_FORMAT, message)


def check_template(field: str, template: object, allowed: frozenset[str]) -> None:
    """`template` as meta/info.json's `field` may hold it (module docstring); the rendered paths
    are checked by `render_path`."""
    where = f"meta/info.json: {field}"
    if not isinstance(template, str) or not template:
        raise invalid(f"{where} must be a non-empty string, got {template!r}")
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise invalid(f"{where} is {len(template)} characters long (at most {MAX_TEMPLATE_LENGTH})")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise invalid(f"{where} {template!r} is not a valid format string: {exc}") from exc
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed:
            raise invalid(f"{where} {template!r}: field {{{name}}} is not one of {sorted(allowed)}")
        if conversion is not None:
            raise invalid(f"{where} {template!r}: conversion !{conversion} is not allowed")
        m = _FORMAT_SPEC.fullmatch(spec or "")
        if m is None:
            raise invalid(f"{where} {template!r}: format spec {spec!r} of {{{name}}} is not [[fill]align][0][width][.precision][type]")
        for part in ("width", "precision"):
            if m[part] is not None and int(m[part]) > MAX_FORMAT_WIDTH:
                raise invalid(f"{where} {template!r}: {part} {int(m[part])} of {{{name}}} is over {MAX_FORMAT_WIDTH}")


def safe_relative(field: str, rel: str) -> str:
    """`rel`, a path a template rendered, if it stays inside its folder by its text alone."""
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or "\0" in rel or any(p in ("", ".", "..") for p in parts):
        raise invalid(f"meta/info.json: {field} renders {rel!r}: paths must be relative, "
                      "without '.', '..' or empty segments")
    return rel


def render_relative(field: str, template: str, **fields) -> str:
    """`template` (checked by `check_template`) rendered with `fields`: a path that stays inside
    its folder by its text alone."""
    try:
        rel = template.format(**fields)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise invalid(f"meta/info.json: {field} {template!r} cannot be rendered: {exc}") from exc
    return safe_relative(field, rel)


def render_path(root: Path, field: str, template: str, **fields) -> str:
    """`render_relative`, and inside `root` once symlinks are resolved."""
    rel = render_relative(field, template, **fields)
    if not (root / rel).resolve().is_relative_to(root.resolve()):
        raise invalid(f"meta/info.json: {field} renders {rel!r}, which resolves outside the dataset")
    return rel


def check_fps(value: object) -> int:
    """meta/info.json's fps as the integer the worker uses."""
    # in range first: NaN and infinities fail it, and int() is never asked for them
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= MAX_FPS \
            or value != int(value):
        raise invalid(f"meta/info.json: fps must be an integer 1..{MAX_FPS}, got {value!r}")
    return int(value)


def check_frame_size(what: str, width: int, height: int) -> None:
    """Refuse a frame (from its header, before decoding) over the module's bounds."""
    if width > MAX_FRAME_SIDE or height > MAX_FRAME_SIDE or width * height > MAX_FRAME_PIXELS:
        raise invalid(f"{what}: frame size {width}x{height} is over the limit (each side <= {MAX_FRAME_SIDE}, "
                      f"at most {MAX_FRAME_PIXELS} pixels)")
