"""The request's flags, derived from the request model (a new field gets a flag without an edit
here), and the request from a kubectl manifest (`-f job.yaml`: an AugmentationJob; its spec)."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel

from roboaug.api.models import KIND, AugmentationJobCreateRequest, AugmentationJobSpec

DEST_PREFIX = "field_"


class ManifestError(ValueError):
    pass


def _strip(annotation: Any) -> Any:
    """Optional[X] / Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def field_kind(annotation: Any) -> str:
    """bool (--x / --no-x), list (repeat the flag), dict (repeat KEY=VALUE) or scalar (one value,
    which the model parses: numbers, UUIDs and enum names arrive as text)."""
    inner = _strip(annotation)
    origin = typing.get_origin(inner) or inner
    if inner is bool:
        return "bool"
    if origin in (list, tuple, set, frozenset):
        return "list"
    if origin is dict:
        return "dict"
    return "scalar"


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_request_flags(parser: argparse.ArgumentParser, model: type[BaseModel] = AugmentationJobCreateRequest,
                      title: str = "request fields (each overrides -f)") -> None:
    group = parser.add_argument_group(title)
    for name, info in model.model_fields.items():
        kind = field_kind(info.annotation)
        help_text = (info.description or "").replace("%", "%%")
        if not info.is_required() and info.default is not None and kind == "scalar":
            default = getattr(info.default, "value", info.default)
            help_text += f" [default: {default}]"
        dest = DEST_PREFIX + name
        if kind == "bool":
            group.add_argument(flag_name(name), dest=dest, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        elif kind == "list":
            group.add_argument(flag_name(name), dest=dest, action="append", default=None, metavar="VALUE",
                               help=help_text + " (repeat the flag for each value)")
        elif kind == "dict":
            group.add_argument(flag_name(name), dest=dest, action="append", default=None, metavar="KEY=VALUE",
                               help=help_text + " (repeat the flag for each key)")
        else:
            inner = _strip(info.annotation)
            metavar = ("{" + ",".join(str(m.value) for m in inner) + "}"
                       if isinstance(inner, type) and issubclass(inner, Enum) else name.upper())
            group.add_argument(flag_name(name), dest=dest, default=None, metavar=metavar, help=help_text)


def flag_values(args: argparse.Namespace, model: type[BaseModel] = AugmentationJobCreateRequest) -> dict[str, Any]:
    """The fields given as flags (only those: the rest stay unset, for the project's defaults)."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        value = getattr(args, DEST_PREFIX + name, None)
        if value is None:
            continue
        if field_kind(info.annotation) == "dict":
            pairs = {}
            for item in value:
                key, sep, val = item.partition("=")
                if not sep or not key:
                    raise ManifestError(f"{name}: expected KEY=VALUE, got {item!r} ({flag_name(name)} KEY=VALUE)")
                pairs[key.strip()] = val.strip()
            value = pairs
        values[name] = value
    return values


def read_manifest(path: str, stdin=None) -> dict[str, Any]:
    """The request in a file: an AugmentationJob manifest (what kubectl applies; its spec) or a
    plain request body (YAML or JSON). `-` reads standard input."""
    try:
        text = (stdin or sys.stdin).read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read ({e.strerror})") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ManifestError(f"{path}: not YAML ({' '.join(str(e).split())})") from None
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if len(jobs) > 1:
        raise ManifestError(f"{path}: holds {len(jobs)} {KIND} documents; submit one at a time")
    if jobs:
        return spec_request(jobs[0], path)
    if len(docs) == 1 and isinstance(docs[0], dict) and "kind" not in docs[0]:
        return dict(docs[0])
    kinds = sorted({str(d.get("kind")) for d in docs if isinstance(d, dict)})
    raise ManifestError(f"{path}: no {KIND} in it (kinds: {', '.join(kinds) or 'none'})")


def spec_request(manifest: dict[str, Any], path: str = "manifest") -> dict[str, Any]:
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError(f"{path}: spec: missing or not a mapping")
    request_fields = set(AugmentationJobCreateRequest.model_fields)
    cluster_only = sorted(k for k in spec if k in AugmentationJobSpec.model_fields and k not in request_fields)
    if cluster_only:
        raise ManifestError(f"{path}: spec.{cluster_only[0]}: set on the cluster side, not in a REST request "
                            "(the gateway takes it from the project); remove it")
    request = dict(spec)
    name = (manifest.get("metadata") or {}).get("name")
    if name and "name" not in request:
        request["name"] = name
    return request


def request_from(args: argparse.Namespace, model: type[BaseModel] = AugmentationJobCreateRequest,
                 stdin=None) -> dict[str, Any]:
    """-f's fields, then each flag over them."""
    base = read_manifest(args.file, stdin) if getattr(args, "file", None) else {}
    return {**base, **flag_values(args, model)}


def parse_indices(text: Optional[str], what: str) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ManifestError(f"{what}: expected comma-separated integers, got {text!r}") from None
