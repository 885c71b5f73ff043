"""What the output says about itself: `meta/augmentation.json`, the dataset card and its preview.

Nothing here records wall-clock times, hostnames or job ids: the same spec and seed must give
the same bytes, and these files are part of the output.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Iterable, Optional

import cv2
import numpy as np
import yaml

from .png import png_bytes
from .transforms.registry import REGISTRY

PROVENANCE_PATH = "meta/augmentation.json"
GENERATOR = "roboaug"
"""`generator` of every provenance file we write: the mark by which the worker knows a Hub repo
as one of its outputs, which it may replace (hub.upload)."""
PREVIEW_PATH = "meta/preview.png"
TILE_HEIGHT = 120

# Spec fields that decide the output; ids, names, secrets and scheduling knobs do not.
_OUTPUT_FIELDS_EXCLUDED = {
    "project_id", "name", "job_id", "cancel_requested", "hub_token_secret", "pending_timeout_seconds",
    "output_dataset_id", "dataset_id", "output_visibility", "notify_url", "notify_secret",
    "shards", "max_parallelism",  # how the work is split never changes its bytes
}


def spec_summary(spec) -> dict[str, Any]:
    data = spec.model_dump(mode="json")
    return {
        k: v for k, v in data.items()
        if k not in _OUTPUT_FIELDS_EXCLUDED and not k.startswith("cosmos_") and k != "augmentation_type"
    }


def write_provenance(out: Path, *, spec, source: str, fmt: str, entries: Iterable[dict[str, Any]],
                     skipped: Optional[list[dict[str, Any]]] = None) -> None:
    """meta/augmentation.json: the bytes of `json.dumps(doc, indent=2)`, written entry by entry so
    that `entries` (one per output episode or row) may be a generator and never all be held.
    `skipped`: the source items left out (on_bad_sample: skip), listed before the entries."""
    doc = {
        "generator": GENERATOR,
        "format": fmt,
        "source_dataset": source,
        "seed": int(spec.augment_seed),
        "augment_mode": spec.augment_mode,
        "augment_dataset_mode": spec.augment_dataset_mode,
        "transforms": spec.transforms,
        "spec": spec_summary(spec),
        **({"skipped": skipped} if skipped is not None else {}),
        "episodes": [],
    }
    path = out / PROVENANCE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps(doc, indent=2, sort_keys=False)
    assert head.endswith('"episodes": []\n}')
    with path.open("w") as f:
        sep = head[: -len("]\n}")] + "\n"  # up to and including the list's "["
        for entry in entries:
            # one level deeper than the document: what json.dumps(doc, indent=2) gives each item
            f.write(sep + textwrap.indent(json.dumps(entry, indent=2, sort_keys=False), "    "))
            sep = ",\n"
        f.write(head + "\n" if sep != ",\n" else "\n  ]\n}\n")


def is_roboaug_provenance(data: bytes) -> bool:
    """Whether `data` is a provenance file this service wrote."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(doc, dict) and doc.get("generator") == GENERATOR


def _tile(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    width = max(1, round(w * TILE_HEIGHT / h))
    return cv2.resize(rgb, (width, TILE_HEIGHT), interpolation=cv2.INTER_AREA)


def _label(text: str, width: int) -> np.ndarray:
    bar = np.full((18, width, 3), 255, dtype=np.uint8)
    cv2.putText(bar, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def preview_grid(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Rows of (original | augmented) tiles under a header, one row per sampled episode. Every tile
    is scaled to TILE_HEIGHT; images of different shapes give tiles of different widths, so each
    column is as wide as its widest tile and narrower tiles are padded white on their right: each
    augmented tile starts under the "augmented" label, beside its own original."""
    tiles = []
    for orig, aug in pairs:
        a, b = _tile(orig), _tile(aug)
        if a.shape != b.shape:
            b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
        tiles.append((a, b))
    left = max(a.shape[1] for a, _ in tiles)
    right = max(b.shape[1] for _, b in tiles)

    def pad(t: np.ndarray, width: int) -> np.ndarray:
        return np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=255)

    rows = [np.pad(np.concatenate([pad(a, left), np.full((TILE_HEIGHT, 4, 3), 255, np.uint8), pad(b, right)], axis=1),
                   ((0, 4), (0, 0), (0, 0)), constant_values=255) for a, b in tiles]
    header = np.concatenate([_label("original", left), _label("augmented", right + 4)], axis=1)
    return np.concatenate([header, *rows], axis=0)


def write_preview(out: Path, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    path = out / PREVIEW_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(preview_grid(pairs)))


def write_card(out: Path, *, spec, source: str, fmt: str, base_yaml: dict, counts: dict[str, int], cameras: list[str]) -> None:
    """README.md: the source's YAML header (kept, plus a roboaug tag) and a human summary."""
    header = dict(base_yaml)
    tags = list(header.get("tags") or [])
    for tag in ("roboaug", "augmented"):
        if tag not in tags:
            tags.append(tag)
    header["tags"] = tags
    t = spec.transforms
    chosen = [x for x in REGISTRY if x.name in t]
    ranges = [f"- {x.card_text(x.view.of(spec))}" for x in chosen]
    held = ", ".join(x.name for x in chosen if not x.per_frame)
    per_frame = ", ".join(x.name for x in chosen if x.per_frame)
    drawn = ([f"Scene parameters ({held}) are drawn once per augmented copy and held for all its frames."]
             if held else [])
    drawn += [f"The {per_frame} values are drawn anew for every frame."] if per_frame else []
    mode = ("originals kept, augmented copies appended" if spec.augment_dataset_mode == "copy"
            else "every episode replaced by one augmented version (indices unchanged)")
    body = "\n".join([
        "# Augmented dataset",
        "",
        f"Made by roboaug from `{source}` ({fmt}): {mode}.",
        "",
        f"- transforms: {', '.join(t)} ({spec.augment_mode}), seed {spec.augment_seed}",
        *[f"- {k}: {v}" for k, v in counts.items()],
        f"- cameras: {', '.join(cameras)}",
        "",
        "## Parameter ranges",
        "",
        *ranges,
        "",
        *drawn,
        "Every new episode's source episode, transforms and sampled parameters are listed in",
        f"`{PROVENANCE_PATH}`; the same spec and seed reproduce the same bytes.",
        "",
        "## Preview",
        "",
        f"![original vs augmented]({PREVIEW_PATH})",
        "",
    ])
    text = "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" + body
    (out / "README.md").write_text(text)
