"""Image datasets as users keep them (issue 17): upright pixels as `datasets` shows them, the
source's mode and encoding kept, originals first in `load_dataset` order, true split sizes, and
undecodable images failing the job or skipped on request."""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roboaug.api.models import AugmentationJobSpec
from roboaug.worker import image_codec, pipeline
from roboaug.worker.errors import WorkerError
from roboaug.worker.progress import ProgressReporter
from tests.worker.helpers import JOB, PROJECT

datasets = pytest.importorskip("datasets", reason="the tests' `datasets` loader: ./dev setup installs it")


def _photo(w: int, h: int, seed: int) -> np.ndarray:
    """A smooth picture with an unmistakable top-left corner (bright red), so a rotation shows."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = np.stack([xx * 200 / w + 20, yy * 200 / h + 20, (xx + yy) * 100 / (w + h) + 60], axis=2)
    img += rng.normal(0, 1.5, img.shape)
    img[: h // 5, : w // 5] = (250, 10, 10)
    return np.clip(img, 0, 255).astype(np.uint8)


def _encode(img: Image.Image, fmt: str, orientation: int | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _sources() -> dict[str, bytes]:
    rgba = Image.fromarray(_photo(40, 30, 3)).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))
    rgba.putalpha(Image.fromarray(alpha))
    return {
        "jpeg_q90": _encode(Image.fromarray(_photo(64, 48, 1)), "JPEG", quality=90),
        "jpeg_exif6": _encode(Image.fromarray(_photo(64, 48, 2)), "JPEG", orientation=6, quality=92),
        "jpeg_exif8": _encode(Image.fromarray(_photo(56, 40, 4)), "JPEG", orientation=8, quality=95),
        "png_rgb": _encode(Image.fromarray(_photo(33, 21, 5)), "PNG"),
        "png_grey": _encode(Image.fromarray(_photo(30, 50, 6)).convert("L"), "PNG"),
        "png_rgba": _encode(rgba, "PNG"),
        "png_palette": _encode(Image.fromarray(_photo(24, 24, 7)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "webp_lossless": _encode(Image.fromarray(_photo(20, 20, 8)), "WEBP", lossless=True),
    }


CORRUPT = b"\xff\xd8\xff\xe0 not really a jpeg"


def make_dataset(root: Path, images: dict[str, bytes], test_rows: int = 2) -> Path:
    names = list(images)
    (root / "data").mkdir(parents=True)
    feats = datasets.Features({"image": datasets.Image(), "name": datasets.Value("string")})
    train = datasets.Dataset.from_dict({"image": [{"bytes": images[n], "path": f"{n}.img"} for n in names],
                                        "name": names}, features=feats)
    test = datasets.Dataset.from_dict({"image": [{"bytes": images[n], "path": None} for n in names[:test_rows]],
                                       "name": names[:test_rows]}, features=feats)
    train.to_parquet(str(root / "data/train-00000-of-00001.parquet"))
    test.to_parquet(str(root / "data/test-00000-of-00001.parquet"))
    (root / "README.md").write_text(
        "---\ndataset_info:\n  features:\n  - name: image\n    dtype: image\n  - name: name\n    dtype: string\n"
        f"  splits:\n  - name: train\n    num_bytes: 1\n    num_examples: {len(names)}\n"
        f"  - name: test\n    num_bytes: 1\n    num_examples: {test_rows}\n"
        "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n"
        "  - split: test\n    path: data/test-*\n---\n\n# fixture\n")
    return root


def run(src: Path, out: Path, **fields) -> ProgressReporter:
    spec = {"project_id": PROJECT, "job_id": JOB, "dataset_id": f"file://{src}", "output_dataset_id": f"file://{out}",
            "augment_transforms": "lighting", "augment_copies": 2, **fields}
    reporter = ProgressReporter(stream=io.StringIO())
    pipeline.run(AugmentationJobSpec.model_validate(spec), pipeline.RunOptions(job_id=JOB, workdir=out.parent / f"wd-{out.name}",
                                                                               processes=1), reporter)
    return reporter


def load(root: Path, cache: Path, caplog) -> "datasets.DatasetDict":
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING, logger="datasets"):
            dd = datasets.load_dataset(str(root), cache_dir=str(cache))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("datasets")]
    return dd


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("formats")
    src = make_dataset(tmp / "src", _sources())
    run(src, tmp / "out")
    return src, tmp / "out", tmp


def test_images_keep_orientation_mode_size_and_encoding(copy_run, caplog):
    src, out, tmp = copy_run
    names = list(_sources())
    dd_src = datasets.load_dataset(str(src), cache_dir=str(tmp / "c_src"))
    dd = load(out, tmp / "c_out", caplog)
    n = len(names)
    assert len(dd["train"]) == 3 * n and len(dd["test"]) == 3 * 2
    for split in ("train", "test"):
        m = len(dd_src[split])
        # originals first, at their own indices, then copy after copy in source order
        assert list(dd[split]["name"]) == list(dd_src[split]["name"]) * 3
        for i in range(m):
            orig = dd_src[split][i]["image"]
            for k in range(3):
                img = dd[split][i + k * m]["image"]
                assert img.size == orig.size, (dd[split][i]["name"], img.size, orig.size)
                assert img.mode == (orig.mode if k == 0 or orig.mode != "P" else
                                    "RGBA" if "transparency" in orig.info else "RGB")
    raw = {r["name"]: r for r in pyarrow_rows(out / "data/train-00000-of-00001.roboaug.parquet")}
    fmts = {n: Image.open(io.BytesIO(raw[n]["image"]["bytes"])).format for n in names}
    assert fmts == {n: "JPEG" if n.startswith("jpeg") else "WEBP" if n.startswith("webp") else "PNG" for n in names}
    for n in ("jpeg_exif6", "jpeg_exif8"):  # upright as datasets shows the source, and says so
        written = Image.open(io.BytesIO(raw[n]["image"]["bytes"]))
        assert written.getexif().get(0x0112) == 1
        shown = dd_src["train"][names.index(n)]["image"]
        assert written.size == shown.size and written.size != Image.open(io.BytesIO(_sources()[n])).size
        assert _red_corner(written) == _red_corner(shown) != 0  # the marked corner moved as datasets moves it
    alpha_src = np.asarray(Image.open(io.BytesIO(_sources()["png_rgba"])))[:, :, 3]
    alpha_out = np.asarray(Image.open(io.BytesIO(raw["png_rgba"]["image"]["bytes"])))[:, :, 3]
    assert np.array_equal(alpha_src, alpha_out)  # alpha is carried, never augmented


def _red_corner(img: Image.Image) -> int:
    """Which corner (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) is the red mark."""
    a = np.asarray(img.convert("RGB")).astype(np.int16)
    redness = a[:, :, 0] - (a[:, :, 1] + a[:, :, 2]) // 2
    h, w = redness.shape
    corners = [redness[:4, :4], redness[:4, w - 4:], redness[h - 4:, :4], redness[h - 4:, w - 4:]]
    return int(np.argmax([c.mean() for c in corners]))


def pyarrow_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_split_info_is_true_in_copy_and_inplace(copy_run, caplog, tmp_path):
    src, out, tmp = copy_run
    inplace = tmp_path / "inplace"
    run(src, inplace, augment_dataset_mode="inplace")
    for root, factor in ((out, 3), (inplace, 1)):
        dd = load(root, tmp_path / f"c_{root.name}", caplog)
        import yaml

        card = yaml.safe_load((root / "README.md").read_text().split("---")[1])
        recorded = {s["name"]: (s["num_examples"], s["num_bytes"]) for s in card["dataset_info"]["splits"]}
        computed = {k: (v.info.splits[k].num_examples, v.info.splits[k].num_bytes) for k, v in dd.items()}
        assert recorded == computed
        assert recorded["test"][0] == 2 * factor
        assert card["dataset_info"]["dataset_size"] == sum(b for _, b in recorded.values())


@pytest.mark.parametrize("quality", [75, 90, 95])
def test_lighting_copies_keep_size_and_quality(tmp_path, quality):
    """Per-image size within 1.5x of the source's, and the written JPEG within 38 dB of the
    pixels given to the encoder (the figures the issue asks for: printed with -s)."""
    data = _encode(Image.fromarray(_photo(320, 240, quality)), "JPEG", quality=quality)
    dec = image_codec.decode_image(data)
    assert image_codec.jpeg_quality(Image.open(io.BytesIO(data)).quantization) == quality
    shifted = np.clip(dec.rgb.astype(np.int16) + 12, 0, 255).astype(np.uint8)  # a lighting-like change
    out = image_codec.encode_image(shifted, dec.alpha, dec.source)
    got = np.asarray(Image.open(io.BytesIO(out)).convert("RGB"))
    ratio, db = len(out) / len(data), psnr(got, shifted)
    print(f"JPEG q{quality}: output/input bytes {ratio:.3f}, PSNR {db:.1f} dB")
    assert ratio <= 1.5 and db >= 38


def test_png_sources_stay_lossless_and_small(copy_run):
    src, out, _ = copy_run
    src_rows = {r["name"]: r for r in pyarrow_rows(src / "data/train-00000-of-00001.parquet")}
    out_rows = {r["name"]: r for r in pyarrow_rows(out / "data/train-00000-of-00001.roboaug.parquet")}
    for n in ("png_rgb", "png_grey", "png_rgba", "jpeg_q90", "webp_lossless"):
        ratio = len(out_rows[n]["image"]["bytes"]) / len(src_rows[n]["image"]["bytes"])
        print(f"{n}: output/input bytes {ratio:.3f}")
        assert ratio <= 1.5, (n, ratio)


def test_an_undecodable_image_fails_or_is_skipped(tmp_path, caplog):
    images = {"good": _sources()["png_rgb"], "bad": CORRUPT, "good2": _sources()["jpeg_q90"]}
    src = make_dataset(tmp_path / "src", images, test_rows=1)
    with pytest.raises(WorkerError) as err:
        run(src, tmp_path / "fail")
    assert "train-00000-of-00001.parquet: row 1 of 'image'" in err.value.message
    assert "on_bad_sample" in err.value.message
    assert not (tmp_path / "fail").exists()
    reporter = run(src, tmp_path / "skip", on_bad_sample="skip")
    assert reporter.warnings and "row 1 of 'image'" in reporter.warnings[0]
    prov = json.loads((tmp_path / "skip/meta/augmentation.json").read_text())
    assert [(s["file"], s["row"], s["column"]) for s in prov["skipped"]] == [
        ("data/train-00000-of-00001.parquet", 1, "image")]
    assert {e["source_row"] for e in prov["episodes"] if e["source_file"].startswith("data/train")} == {0, 2}
    out_rows = pyarrow_rows(tmp_path / "skip/data/train-00000-of-00001.roboaug.parquet")
    assert [r["name"] for r in out_rows] == ["good", "good2"] * 2
    card = (tmp_path / "skip/README.md").read_text()
    assert "num_examples: 7" in card and "skipped images: 1" in card  # 3 originals + 2 x 2 augmented
    # inplace: the bad row stays as it was, every other row is augmented
    run(src, tmp_path / "skip_inplace", on_bad_sample="skip", augment_dataset_mode="inplace")
    rows = pyarrow_rows(tmp_path / "skip_inplace/data/train-00000-of-00001.parquet")
    assert [r["name"] for r in rows] == ["good", "bad", "good2"] and rows[1]["image"]["bytes"] == CORRUPT


def test_preview_grid_lays_out_mixed_shapes_in_columns():
    from roboaug.worker.provenance import TILE_HEIGHT, preview_grid

    wide, tall = np.zeros((50, 200, 3), np.uint8), np.zeros((200, 50, 3), np.uint8)
    grid = preview_grid([(wide, wide + 128), (tall, tall + 128)])
    left = round(200 * TILE_HEIGHT / 50)  # the widest original tile sets the column's width
    for k, width in enumerate((left, round(50 * TILE_HEIGHT / 200))):
        row = grid[18 + k * (TILE_HEIGHT + 4) + TILE_HEIGHT // 2]
        assert (row[:width] == 0).all() and (row[width:left + 4] == 255).all()  # original, then white
        assert (row[left + 4:left + 4 + width] == 128).all()  # its augmented tile under the label
        assert (row[left + 4 + width:] == 255).all()
    assert grid.shape[1] == 2 * left + 4


def test_row_groups_close_at_a_row_count_too(tmp_path, monkeypatch):
    """Thumbnails: 64 MiB of image bytes would be 100,000s of buffered rows (each ~250 bytes of
    Python objects besides its image), so a row group also closes at ROW_GROUP_ROWS rows."""
    import pyarrow.parquet as pq

    from roboaug.worker import image_dataset

    src = make_dataset(tmp_path / "src", _sources())
    run(src, tmp_path / "one")
    monkeypatch.setattr(image_dataset, "ROW_GROUP_ROWS", 3)
    run(src, tmp_path / "many")
    rel = "data/train-00000-of-00001.roboaug.parquet"
    one, many = pq.ParquetFile(tmp_path / "one" / rel), pq.ParquetFile(tmp_path / "many" / rel)
    assert one.metadata.num_row_groups == 1 and one.metadata.num_rows == 16
    assert [many.metadata.row_group(g).num_rows for g in range(many.metadata.num_row_groups)] == [3] * 5 + [1]
    assert pq.read_table(tmp_path / "many" / rel).equals(pq.read_table(tmp_path / "one" / rel))
