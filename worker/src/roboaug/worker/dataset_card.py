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


def scale_split_counts(card: dict, factor: int) -> dict:
    """`dataset_info` split sizes after every row got `factor - 1` augmented copies.

    `datasets` compares recorded num_examples with what it reads, so they must follow the rows;
    byte sizes are dropped rather than guessed.
    """
    infos = card.get("dataset_info")
    for info in infos if isinstance(infos, list) else [infos] if isinstance(infos, dict) else []:
        for split in info.get("splits", []) or []:
            if "num_examples" in split:
                split["num_examples"] = int(split["num_examples"]) * factor
            split.pop("num_bytes", None)
        info.pop("dataset_size", None)
        info.pop("download_size", None)
    return card


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


def _extend_paths(paths, added: dict[str, str]):
    """`paths` (one pattern or a list) plus every augmented file whose source file they match
    but which they do not match themselves (explicit file lists; globs that exclude the suffix)."""
    patterns = [paths] if isinstance(paths, str) else list(paths)
    regexes = [_glob_regex(p.removeprefix("./")) for p in patterns if isinstance(p, str)]
    extra = [aug for src, aug in added.items()
             if any(r.match(src) for r in regexes) and not any(r.match(aug) for r in regexes)]
    if not extra:
        return paths
    return patterns + extra


def extend_data_files(card: dict, added: dict[str, str]) -> dict:
    """The card's `configs[].data_files` reaching the augmented files `added` (source -> new file).

    A card that names its files one by one (or whose globs leave our suffix out) would otherwise
    load only the original rows, while the split sizes we record count the augmented ones too.
    Accepts every form the Hub's card metadata allows: a pattern, a list of patterns, a list of
    {split, path} entries (path a pattern or a list), and a {split: paths} mapping.
    """
    for cfg in card.get("configs") or []:
        if not isinstance(cfg, dict) or "data_files" not in cfg:
            continue
        files = cfg["data_files"]
        if isinstance(files, dict):
            cfg["data_files"] = {split: _extend_paths(p, added) for split, p in files.items()}
        elif isinstance(files, list) and any(isinstance(e, dict) for e in files):
            for entry in files:
                if isinstance(entry, dict) and "path" in entry:
                    entry["path"] = _extend_paths(entry["path"], added)
        else:
            cfg["data_files"] = _extend_paths(files, added)
    return card
