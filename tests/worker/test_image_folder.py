"""imagefolder datasets (folders of images + metadata.jsonl / metadata.csv) in and out, as
`datasets.load_dataset("imagefolder", data_dir=...)` and `load_dataset(path)` read them."""

from __future__ import annotations

import csv
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from roboaug.worker import imagefolder
from roboaug.worker.errors import WorkerError
from tests.worker.test_image_formats import CORRUPT, _sources, psnr, run

datasets = pytest.importorskip("datasets", reason="the tests' `datasets` loader: ./dev setup installs it")

EXT = {"jpeg_q90": "jpg", "jpeg_exif6": "jpg", "jpeg_exif8": "jpeg", "png_rgb": "png", "png_grey": "png",
       "png_rgba": "png", "png_palette": "png", "webp_lossless": "webp"}


def make_folder(root: Path, names: list[str], kind: str, split: str | None = None, images: dict | None = None) -> Path:
    """Images and a metadata file in `root` (or root/<split>), rows in `names` order, each with a
    caption and a number as other columns."""
    images = images or _sources()
    folder = root / split if split else root
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, n in enumerate(names):
        fname = f"img/{n}.{EXT.get(n, 'jpg')}"
        (folder / fname).parent.mkdir(exist_ok=True)
        (folder / fname).write_bytes(images[n])
        rows.append({"file_name": fname, "caption": f"a {n}", "number": i})
    if kind == "jsonl":
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with (folder / "metadata.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file_name", "caption", "number"])
            w.writerows([[r["file_name"], r["caption"], r["number"]] for r in rows])
    return root


def load(data_dir: Path, cache: Path, caplog, builder: bool = True):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING, logger="datasets"):
            dd = (datasets.load_dataset("imagefolder", data_dir=str(data_dir), cache_dir=str(cache)) if builder
                  else datasets.load_dataset(str(data_dir), cache_dir=str(cache)))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("datasets")]
    return dd


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_copy_mode_appends_augmented_rows_in_the_same_layout(tmp_path, caplog, kind):
    names = list(_sources())
    src = make_folder(tmp_path / "src", names, kind, split="train")
    make_folder(src, names[:2], kind, split="test")
    run(src, tmp_path / "out")
    out = tmp_path / "out"
    before = load(src, tmp_path / "c1", caplog)
    after = load(out, tmp_path / "c2", caplog)
    for split, n in (("train", len(names)), ("test", 2)):
        assert before[split].num_rows == n and after[split].num_rows == 3 * n  # originals + 2 copies
        # originals first, at their indices, then copy 0 and copy 1 of every row in order
        assert list(after[split]["caption"]) == list(before[split]["caption"]) * 3
        assert list(after[split]["number"]) == list(before[split]["number"]) * 3
        for i in range(n):
            orig, aug = before[split][i]["image"], after[split][n + i]["image"]
            assert np.array_equal(np.asarray(after[split][i]["image"]), np.asarray(orig))
            # the augmented image as datasets shows it: upright like its source, same mode (a palette
            # one becomes RGB: image_codec) and size
            assert aug.size == orig.size and aug.mode == (orig.mode if orig.mode != "P" else "RGB"), (split, i)
    # file names: beside the originals, sorted after each one, in the source's encoding
    meta = (out / "train" / f"metadata.{kind}").read_text()
    assert "img/jpeg_q90.roboaug-0.jpg" in meta and "img/png_grey.roboaug-1.png" in meta
    assert "img/webp_lossless.roboaug-0.webp" in meta
    assert (out / "train/img/jpeg_q90.jpg").read_bytes() == (src / "train/img/jpeg_q90.jpg").read_bytes()
    assert Image.open(out / "train/img/jpeg_q90.roboaug-0.jpg").format == "JPEG"
    assert Image.open(out / "train/img/jpeg_exif6.roboaug-0.jpg").getexif().get(0x0112) in (None, 1)
    assert sorted(["jpeg_q90.jpg", "jpeg_q90.roboaug-0.jpg"])[0] == "jpeg_q90.jpg"
    # the source's lines are kept byte for byte at the head of the extended file
    assert meta.startswith((src / "train" / f"metadata.{kind}").read_text())
    prov = json.loads((out / "meta/augmentation.json").read_text())
    assert prov["format"] == "imagefolder" and len(prov["episodes"]) == 2 * (len(names) + 2)


def test_flat_folder_through_the_repo_loader_and_inplace(tmp_path, caplog):
    names = ["jpeg_q90", "png_rgb", "png_rgba"]
    src = make_folder(tmp_path / "src", names, "jsonl")
    run(src, tmp_path / "copy", augment_copies=1)
    dd = load(tmp_path / "copy", tmp_path / "c1", caplog, builder=False)
    assert dd["train"].num_rows == 6 and list(dd["train"]["caption"]) == [f"a {n}" for n in names] * 2
    run(src, tmp_path / "inplace", augment_dataset_mode="inplace")
    out = tmp_path / "inplace"
    assert (out / "metadata.jsonl").read_bytes() == (src / "metadata.jsonl").read_bytes()
    dd = load(out, tmp_path / "c2", caplog)
    assert dd["train"].num_rows == 3
    for n in names:
        a, b = (Image.open(p / f"img/{n}.{EXT[n]}") for p in (src, out))
        assert a.format == b.format and a.size == b.size and a.mode == b.mode
        assert a.tobytes() != b.tobytes()  # augmented
        if a.format == "PNG":  # lossless: the lighting change is all there is
            assert psnr(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))) < 60
    assert not list(out.rglob("*.roboaug-*"))


def test_undecodable_or_missing_image_fails_or_is_skipped(tmp_path, caplog):
    images = {**_sources(), "bad": CORRUPT}
    src = make_folder(tmp_path / "src", ["png_rgb", "bad", "jpeg_q90"], "csv", images=images)
    with pytest.raises(WorkerError) as err:
        run(src, tmp_path / "fail")
    assert "img/bad.jpg" in err.value.message and "metadata.csv row 1" in err.value.message
    assert "on_bad_sample" in err.value.message and not (tmp_path / "fail").exists()
    reporter = run(src, tmp_path / "skip", on_bad_sample="skip")
    prov = json.loads((tmp_path / "skip/meta/augmentation.json").read_text())
    assert [(s["file"], s["row"]) for s in prov["skipped"]] == [("metadata.csv", 1)]
    assert reporter.warnings and "img/bad.jpg" in reporter.warnings[0]
    rows = list(csv.reader((tmp_path / "skip/metadata.csv").open()))
    assert [r[1] for r in rows[1:]] == ["a png_rgb", "a bad", "a jpeg_q90"] + ["a png_rgb", "a jpeg_q90"] * 2
    assert "skipped images: 1" in (tmp_path / "skip/README.md").read_text()
    # a listed file that is not there: the same choice
    (src / "img/png_rgb.png").unlink()
    with pytest.raises(WorkerError) as err:
        run(src, tmp_path / "fail2")
    assert "img/png_rgb.png" in err.value.message
    run(src, tmp_path / "skip2", on_bad_sample="skip")
    prov = json.loads((tmp_path / "skip2/meta/augmentation.json").read_text())
    assert sorted(s["row"] for s in prov["skipped"]) == [0, 1]


def test_exif_rotated_photo_is_written_upright(tmp_path, caplog):
    src = make_folder(tmp_path / "src", ["jpeg_exif6", "jpeg_exif8"], "jsonl")
    run(src, tmp_path / "out", augment_copies=1)
    for n in ("jpeg_exif6", "jpeg_exif8"):
        shown = ImageOps.exif_transpose(Image.open(src / f"img/{n}.{EXT[n]}"))
        aug = Image.open(tmp_path / f"out/img/{n}.roboaug-0.{EXT[n]}")
        assert aug.size == shown.size


def test_names_are_unique_and_refusals_name_the_rule(tmp_path):
    assert imagefolder.augmented_name("a/cat.jpg", 0, "JPEG") == "a/cat.roboaug-0.jpg"
    assert imagefolder.augmented_name("cat.JPEG", 2, "JPEG") == "cat.roboaug-2.JPEG"
    assert imagefolder.augmented_name("cat.gif", 0, "PNG") == "cat.roboaug-0.gif.png"
    assert imagefolder.augmented_name("cat.gif", 0, "PNG") != imagefolder.augmented_name("cat.png", 0, "PNG")
    root = tmp_path / "bad"
    root.mkdir()
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "../etc/passwd"}) + "\n")
    with pytest.raises(WorkerError, match="relative path inside"):
        imagefolder.plan_tasks(imagefolder.load(root), _spec(), root, tmp_path)
    (root / "metadata.jsonl").write_text(json.dumps({"image": "x.jpg"}) + "\n")
    with pytest.raises(WorkerError, match="no 'file_name'"):
        imagefolder.load(root)
    (root / "metadata.jsonl").write_text(json.dumps({"file_names": ["x.jpg"]}) + "\n")
    with pytest.raises(WorkerError, match="list-valued 'file_names'"):
        imagefolder.load(root)


def _spec():
    from roboaug.api.models import AugmentationJobSpec
    from tests.worker.helpers import JOB, PROJECT

    return AugmentationJobSpec.model_validate({"project_id": PROJECT, "job_id": JOB, "dataset_id": "file:///x",
                                               "output_dataset_id": "file:///y", "augment_transforms": "lighting"})
