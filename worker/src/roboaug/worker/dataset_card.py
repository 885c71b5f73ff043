"""The YAML front matter of a dataset card (README.md): read from the source, adjusted for what
an output adds. The card's prose is written by provenance.write_card."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n?", re.S)


def read_card_yaml(root: Path) -> dict:
    readme = root / "README.md"
    if not readme.is_file():
        return {}
    m = _FRONT_MATTER.match(readme.read_text())
    if not m:
        return {}
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _glob_regex(pattern: str) -> "re.Pattern[str]":
    """A data_files pattern as `datasets` resolves it (fsspec glob, relative to the repo root):
    `**` spans folders, `*` and `?` stay within one, `[...]` is a class."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if pattern.startswith("/", i):  # "**/" also matches no folder at all
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


# datasets' split inference for a card without `configs` (datasets/data_files.py): a sharded
# `data/{split}-NNNNN-of-NNNNN*.*` layout first, else split keywords in folder or file names
_SHARDED = re.compile(r"data/(\w+)-\d{5}-of-\d{5}[^/]*\.[^/]*\Z")
SPLIT_KEYWORDS = {"train": ["train", "training"], "validation": ["validation", "valid", "dev", "val"],
                  "test": ["test", "testing", "eval", "evaluation"]}
_SEP = r"[-._ 0-9]"


def _keyword_split(rel: str) -> str | None:
    for split, words in SPLIT_KEYWORDS.items():
        for w in words:
            if re.search(rf"(?:^|/|{_SEP}){w}(?:/|{_SEP})", rel):
                return split
    return None


def infer_splits(files: list[str]) -> dict[str, list[str]]:
    """Split -> files (sorted) as `datasets` infers them for a card without `configs`."""
    sharded = {f: m.group(1) for f in files if (m := _SHARDED.match(f))}
    out: dict[str, list[str]] = {}
    if sharded:
        for f, split in sharded.items():
            out.setdefault(split, []).append(f)
    else:
        for f in files:
            out.setdefault(_keyword_split(f) or "train", []).append(f)
    return {k: sorted(v) for k, v in out.items()}


def _resolve(paths, files: list[str]) -> list[str]:
    """The files of `files` that `paths` (one pattern or a list) match, in the order `datasets`
    loads them: pattern after pattern, each pattern's matches sorted."""
    out = []
    for p in [paths] if isinstance(paths, str) else list(paths):
        if isinstance(p, str):
            r = _glob_regex(p.removeprefix("./"))
            out.extend(f for f in files if r.match(f))
    return out


def config_splits(card: dict, files: list[str]) -> dict[str, dict[str, list[str]]]:
    """Config name -> split -> its data files, in `datasets`' load order. Accepts every
    `data_files` form a Hub card allows: a pattern, a list of patterns, a list of {split, path}
    entries (path a pattern or a list), a {split: paths} mapping; none: datasets' inference."""
    files = sorted(files)
    out: dict[str, dict[str, list[str]]] = {}
    for cfg in card.get("configs") or []:
        if not isinstance(cfg, dict) or "data_files" not in cfg:
            continue
        name, data_files = str(cfg.get("config_name", "default")), cfg["data_files"]
        if isinstance(data_files, dict):
            out[name] = {str(k): _resolve(v, files) for k, v in data_files.items()}
        elif isinstance(data_files, list) and any(isinstance(e, dict) for e in data_files):
            out[name] = {str(e.get("split", "train")): _resolve(e.get("path", []), files)
                         for e in data_files if isinstance(e, dict)}
        else:
            out[name] = {"train": _resolve(data_files, files)}
    return out or {"default": infer_splits(files)}


def with_data_files(card: dict, splits: dict[str, dict[str, list[str]]]) -> dict:
    """The card with each config's `data_files` the explicit, ordered lists of `splits`: `datasets`
    then loads exactly those files in that order (originals before augmented rows), whatever the
    file names sort as."""
    card = dict(card)
    configs = [dict(c) for c in card.get("configs") or [] if isinstance(c, dict)]
    by_name = {str(c.get("config_name", "default")): c for c in configs}
    for name, per_split in splits.items():
        cfg = by_name.get(name)
        if cfg is None:
            cfg = {"config_name": name}
            configs.append(cfg)
        cfg["data_files"] = [{"split": split, "path": list(paths)} for split, paths in per_split.items()]
    card["configs"] = configs
    return card


def with_split_sizes(card: dict, sizes: dict[str, dict[str, tuple[int, int, int]]]) -> dict:
    """`dataset_info` split sizes made true: config -> split -> (num_examples, num_bytes, file
    bytes), num_bytes being the split's Arrow size as `datasets` counts it; `dataset_size` their
    sum and `download_size` the data files' bytes. A card without `dataset_info` gets none."""
    infos = card.get("dataset_info")
    entries = infos if isinstance(infos, list) else [infos] if isinstance(infos, dict) else []
    for info in entries:
        name = str(info.get("config_name", "default"))
        known = sizes.get(name) or (next(iter(sizes.values())) if len(sizes) == 1 else {})
        total = download = 0
        for split in info.get("splits", []) or []:
            if split.get("name") in known:
                n, nbytes, file_bytes = known[split["name"]]
                split["num_bytes"], split["num_examples"] = int(nbytes), int(n)
                total += int(nbytes)
                download += int(file_bytes)
        if info.get("splits"):
            info["download_size"] = download
            info["dataset_size"] = total
    return card
