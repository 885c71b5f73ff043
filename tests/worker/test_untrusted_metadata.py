"""A source's own metadata is untrusted (issue 14 item 16): path templates that leave the dataset
or allocate without bound, an fps the timestamps cannot be built from, and frames whose headers
declare sizes over dataset_bounds' limits are refused through the real command with one error
line naming the field and the rule, a permanent exit code, and nothing written."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roboaug.api.contract import find_error_line, is_permanent
from roboaug.worker import dataset_bounds as bounds
from roboaug.worker.errors import ExitCode, WorkerError
from roboaug.worker.png import decode_png
from tests.worker.helpers import error_lines, make_spec, run_worker


def _refused(res, *needles: str) -> str:
    assert res.returncode == int(ExitCode.UNSUPPORTED_FORMAT) and is_permanent(res.returncode), res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = error_lines(res.stderr)
    assert len(lines) == 1, res.stderr[-2000:]
    cause = find_error_line(lines[0]).cause
    for needle in needles:
        assert needle in cause, cause
    return cause


def _tamper(src: Path, **fields) -> None:
    path = src / "meta/info.json"
    info = json.loads(path.read_text())
    info.update(fields)
    path.write_text(json.dumps(info))


def _run_refused(src: Path, tmp_path: Path, *needles: str, before_work: bool = True) -> str:
    out = tmp_path / "new" / "out"
    t0 = time.monotonic()
    res = run_worker(make_spec(src, out, augment_transforms="lighting", augment_copies=1), timeout=120)
    cause = _refused(res, *needles)
    assert time.monotonic() - t0 < 60  # refused from the metadata, not after a GB allocation
    assert not out.exists() and not any(out.parent.iterdir())  # no output, no staging left
    # metadata is refused before any work; an image dataset's images are read as its rows are
    assert ('"phase": "augmenting"' in res.stdout) is not before_work
    return cause


V30_DATA = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V21_VIDEO = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


@pytest.mark.parametrize("version, field, template, needles", [
    ("v3.0", "data_path", "/tmp/roboaug-escape/file-{file_index:03d}.parquet", ["data_path", "must be relative"]),
    ("v3.0", "data_path", "../outside/" + V30_DATA, ["data_path", "'..'"]),
    ("v3.0", "data_path", "data/chunk-{chunk_index:>999999999}/file-{file_index:03d}.parquet",
     ["data_path", "width 999999999", "over 12"]),
    ("v3.0", "data_path", "data/chunk-{chunk_index:.999999999}/x.parquet", ["data_path", "precision 999999999"]),
    ("v3.0", "data_path", "data/{chunk_index.__class__}/x.parquet", ["data_path", "field {chunk_index.__class__}"]),
    ("v3.0", "data_path", "data/{0}/x.parquet", ["data_path", "field {0}"]),
    ("v3.0", "data_path", "data/{chunk_index!r}/{file_index}.parquet", ["data_path", "conversion !r"]),
    ("v3.0", "data_path", "data/{chunk_index:{file_index}}/x.parquet", ["data_path", "format spec"]),
    ("v3.0", "video_path", "videos/{video_key}/../../../x/{chunk_index}/{file_index}.mp4", ["video_path", "'..'"]),
    ("v2.1", "video_path", "/" + V21_VIDEO, ["video_path", "must be relative"]),
    ("v2.1", "data_path", "data/{episode_index:099999d}.parquet", ["data_path", "width 99999"]),
    ("v2.1", "data_path", "data/chunk-{chunk_index:03d}/x.parquet", ["data_path", "field {chunk_index}"]),
])
def test_path_templates_outside_the_rules_are_refused(sources, tmp_path, copy_source, version, field, template, needles):
    src = copy_source(sources[version])
    _tamper(src, **{field: template})
    _run_refused(src, tmp_path, "meta/info.json", *needles)


def test_a_video_key_that_climbs_out_of_the_dataset_is_refused(sources, tmp_path, copy_source):
    src = copy_source(sources["v2.1"])
    info = json.loads((src / "meta/info.json").read_text())
    info["features"] = {("../../../escape" if k == "observation.images.top" else k): v for k, v in info["features"].items()}
    (src / "meta/info.json").write_text(json.dumps(info))
    _run_refused(src, tmp_path, "video_path", "../../../escape", "'..'")


def test_a_data_folder_symlinked_outside_the_dataset_is_refused(sources, tmp_path, copy_source):
    src = copy_source(sources["v3.0"])
    elsewhere = tmp_path / "elsewhere"
    (src / "data/chunk-000").rename(elsewhere)
    (src / "data/chunk-000").symlink_to(elsewhere, target_is_directory=True)
    _run_refused(src, tmp_path, "data_path", "resolves outside the dataset")


@pytest.mark.parametrize("fps", [0, -30, 29.97, 10 ** 9, "30", True])
def test_fps_outside_1_to_1000_is_refused(sources, tmp_path, copy_source, fps):
    src = copy_source(sources["v3.0"])
    _tamper(src, fps=fps)
    _run_refused(src, tmp_path, "meta/info.json: fps must be an integer 1..1000", repr(fps))


def test_fps_nan_is_refused(sources, tmp_path, copy_source):
    src = copy_source(sources["v2.1"])
    path = src / "meta/info.json"
    info = json.loads(path.read_text())
    info["fps"] = float("nan")
    path.write_text(json.dumps(info))  # Python writes the bare NaN that json.loads reads back
    assert "NaN" in path.read_text()
    _run_refused(src, tmp_path, "fps must be an integer", "nan")


def test_chunks_size_zero_is_refused(sources, tmp_path, copy_source):
    src = copy_source(sources["v2.1"])
    _tamper(src, chunks_size=0)
    _run_refused(src, tmp_path, "chunks_size must be an integer >= 1")


def _ffv1(path: Path, width: int, height: int) -> None:
    """One black frame: ffv1 takes sizes libx264 and mpeg4 refuse to open."""
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
        frame.pts = 0
        for p in [*s.encode(frame), *s.encode()]:
            c.mux(p)


def test_a_video_stream_over_the_size_limit_is_refused_from_its_header(sources, tmp_path, copy_source):
    src = copy_source(sources["v2.1"])
    _ffv1(src / "videos/chunk-000/observation.images.top/episode_000001.mp4", bounds.MAX_FRAME_SIDE + 16, 16)
    _run_refused(src, tmp_path, "video episode_000001.mp4", f"frame size {bounds.MAX_FRAME_SIDE + 16}x16 is over the limit")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (1-bit grey) with one tiny IDAT: a few dozen
    bytes that would decode to width*height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def _replace_image(path: Path, row: int, data: bytes) -> None:
    table = pq.read_table(path)
    i = table.schema.get_field_index("image")
    cells = table.column("image").to_pylist()
    cells[row] = {"bytes": data, "path": None}
    table = table.set_column(i, table.schema.field(i), pa.array(cells, type=table.schema.field(i).type))
    pq.write_table(table, path)


@pytest.mark.parametrize("width, height, needles", [
    (bounds.MAX_FRAME_SIDE + 1, 1, [f"frame size {bounds.MAX_FRAME_SIDE + 1}x1 is over the limit"]),
    (9000, 9000, ["frame size 9000x9000 is over the limit"]),  # under PIL's own limit, over ours
    (100_000, 100_000, ["decompression-bomb"]),  # PIL refuses it while opening
])
def test_an_image_over_the_size_limit_is_refused_from_its_header(sources, tmp_path, copy_source, width, height, needles):
    src = copy_source(sources["image"])
    _replace_image(src / "data/train-00000-of-00001.parquet", 3, _png_header_only(width, height))
    _run_refused(src, tmp_path, *needles, before_work=False)


def test_decode_png_checks_the_header_before_decoding():
    with pytest.raises(WorkerError) as err:
        decode_png(_png_header_only(9000, 9000))
    assert err.value.code == ExitCode.UNSUPPORTED_FORMAT
    buf = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (bounds.MAX_FRAME_SIDE, 2)).save(buf, format="PNG")  # at the limit: decoded
    assert decode_png(buf.getvalue()).shape == (2, bounds.MAX_FRAME_SIDE, 3)


@pytest.mark.parametrize("template", [
    "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
    "data/{chunk_index:_>12,}/{file_index:012d}.parquet",
    "data/{chunk_index:x}/{file_index:o}.parquet",
])
def test_lerobot_own_and_other_bounded_templates_pass(template):
    bounds.check_template("data_path", template, bounds.TEMPLATE_FIELDS["v3.0"]["data_path"])
    assert bounds.render_relative("data_path", template, chunk_index=7, file_index=12).startswith("data/")
