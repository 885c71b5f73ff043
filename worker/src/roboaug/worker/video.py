"""Video I/O with PyAV: streaming decode, deterministic encode, packet-level concatenation.

Memory is bounded by `chunk` decoded frames plus the codec's own fixed look-ahead, never by
episode length: frames are pulled from the demuxer, handed on in small chunks and dropped.

Every augmented episode is encoded into its own segment (frames on the 1/fps grid from pts 0,
a keyframe first); a LeRobot v3.0 file is then built by remuxing segments back to back with a
pts offset. That keeps the result independent of how episodes were spread over processes: each
segment depends only on its own frames, and remuxing copies packets without re-encoding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

# SVT-AV1 prints its banner for every encoder it opens (read when the library loads): errors only.
os.environ.setdefault("SVT_LOG", "1")

import av  # noqa: E402
import numpy as np  # noqa: E402
from av.video.reformatter import VideoReformatter  # noqa: E402

from .dataset_bounds import check_frame_size  # noqa: E402
from .errors import ExitCode, WorkerError  # noqa: E402

GRID_TOLERANCE_S = 1e-4
"""The loader's tolerance between a requested timestamp and the decoded frame's pts."""

DEFAULT_SVTAV1_PRESET = "12"
"""lerobot 0.6.x encodes with preset 12 (SVT-AV1 4.x maps it to 11); override with ROBOAUG_SVTAV1_PRESET."""


@dataclass(frozen=True)
class VideoInfo:
    codec: str  # canonical decoder name, as lerobot records it: "av1", "h264", "mpeg4"
    pix_fmt: str
    width: int
    height: int
    fps: Fraction
    frames: int
    time_base: Fraction


def _corrupt(path: Path, why: object) -> WorkerError:
    return WorkerError(ExitCode.CORRUPT_VIDEO, f"video {path.name} cannot be decoded: {why}")


def probe(path: Path) -> VideoInfo:
    """Codec, pixel format, size and rate of the first video stream; CORRUPT_VIDEO if unreadable,
    UNSUPPORTED_FORMAT if its frames are over dataset_bounds' size limit."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _corrupt(path, "no video stream")
            s = container.streams.video[0]
            # from the stream's header, before any frame is decoded
            check_frame_size(f"video {path.name}", s.codec_context.width, s.codec_context.height)
            return VideoInfo(
                codec=s.codec_context.codec.canonical_name,
                pix_fmt=s.codec_context.pix_fmt or s.format.name,
                width=s.codec_context.width,
                height=s.codec_context.height,
                fps=Fraction(s.average_rate) if s.average_rate else Fraction(0),
                frames=s.frames,
                time_base=Fraction(s.time_base),
            )
    except WorkerError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise _corrupt(path, exc) from exc


def iter_frames(
    path: Path, start_s: float, count: int, fps: int | Fraction, *, chunk: int = 16, threads: int = 1,
    reuse: bool = False,
) -> Iterator[np.ndarray]:
    """Yield the `count` frames starting at `start_s` as RGB uint8 chunks (n<=chunk, H, W, 3).

    Frames must sit on the 1/fps grid (within the loader's 1e-4 s); a missing, extra or off-grid
    frame is a corrupt video, since the loader would return the wrong frame for it.
    `reuse`: every chunk is a view of one buffer, overwritten by the next chunk (for consumers
    that are done with a chunk before asking for the next): no fresh pages faulted in per chunk.
    """
    fps = Fraction(fps)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise _corrupt(path, exc) from exc
    try:
        if not container.streams.video:
            raise _corrupt(path, "no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        tb = Fraction(stream.time_base)
        # One converter for the whole stream: frame.to_ndarray(format=...) builds a fresh swscale
        # context per frame, which costs more than decoding the frame itself at 96x96 (same bytes)
        to_rgb = VideoReformatter()
        if start_s > 0:
            container.seek(int(Fraction(start_s) / tb), stream=stream, backward=True, any_frame=False)
        buf: list[np.ndarray] = []
        store: np.ndarray | None = None  # the reused chunk buffer (reuse=True)
        expected = 0
        tb_s, fps_f = float(tb), float(fps)  # per-frame Fraction arithmetic cost ~3 % at 96x96
        for frame in container.decode(stream):
            if frame.pts is None:
                raise _corrupt(path, "frame without pts")
            t = frame.pts * tb_s
            k = round((t - start_s) * fps_f)
            if k < 0:
                continue
            if k >= count:
                break
            if abs(t - (start_s + k / fps_f)) > GRID_TOLERANCE_S:
                raise _corrupt(path, f"frame at {t:.6f}s is off the 1/{fps} grid")
            if k != expected:
                raise _corrupt(path, f"frame {expected} of the episode at {start_s:.4f}s is missing")
            rgb = to_rgb.reformat(frame, format="rgb24").to_ndarray()
            if reuse:
                if store is None:
                    store = np.empty((chunk, *rgb.shape), np.uint8)
                store[len(buf)] = rgb
                buf.append(store[len(buf)])
            else:
                buf.append(rgb)
            expected += 1
            if len(buf) == chunk:
                yield store if reuse else np.stack(buf)
                buf = []
        if buf:
            yield store[:len(buf)] if reuse else np.stack(buf)
        if expected != count:
            raise _corrupt(path, f"expected {count} frames from {start_s:.4f}s, decoded {expected}")
    except av.error.FFmpegError as exc:
        raise _corrupt(path, exc) from exc
    finally:
        container.close()


# Quality: every codec gets a constant-quality setting the encoder really reads (measured by
# bench/bench_video_quality.py: written frames >= 38 dB PSNR against the pre-encode ones for a
# lighting-only copy, bitrate within 2x of the source's, at 96x96 and 640x480).
AV1_CRF = "30"
"""lerobot's own AV1 setting: outputs stay in the quality class of lerobot-written sources."""
H264_CRF = "28"
"""A private option of libx264 (it takes it). 28, not libx264's default 23, because macroblock-tree
is off (see encoder_settings): without it 23 spent 3.4x the source's bitrate at 640x480; 28 gives
40.5/42.9 dB at 1.4x/1.6x (96x96, 640x480), where 23 with macroblock-tree gave 40.6/43.1 dB at 1.4x/1.7x."""
MPEG4_QUANTISER = "3"
"""mpeg4 has no crf and libavcodec ignores a `qscale` option (PyAV passes it, nothing reads it:
same bytes for 3, 31 or none), so the encoder fell back to its 200 kbit/s default bitrate. The
quantiser is pinned through qmin = qmax instead; 2..5 is mpeg4's visually-lossless range."""


def encoder_settings(codec: str) -> tuple[str, dict[str, str]]:
    """Encoder name and options for a source codec: lerobot's AV1 settings, else the same codec.

    Threads are fixed (one per encoder: parallelism comes from processes) and B-frames are off
    for h264/mpeg4 so segments have dts == pts and can be concatenated packet by packet.
    libx264's macroblock-tree is off: with it, re-encoding the same frames in one process now and
    then gave different bytes (one thread, identical yuv planes handed in; a fresh process always
    agreed with itself; valgrind shows x264 using an uninitialised stack value during encode), so
    "same request + seed = same bytes" failed with --processes 1. Without it no difference was
    seen in 480 encodes; tests/worker/test_encode_determinism.py guards it.
    """
    if codec == "av1":
        preset = os.environ.get("ROBOAUG_SVTAV1_PRESET", DEFAULT_SVTAV1_PRESET)
        if not preset.isdigit() or not 0 <= int(preset) <= 13:
            raise WorkerError(ExitCode.INVALID_SPEC, f"ROBOAUG_SVTAV1_PRESET must be an integer 0..13, got {preset!r}")
        return "libsvtav1", {"g": "2", "crf": AV1_CRF, "preset": preset, "svtav1-params": "lp=1"}
    if codec == "h264":
        return "libx264", {"g": "2", "crf": H264_CRF, "bf": "0", "threads": "1", "preset": "medium", "mbtree": "0"}
    if codec == "mpeg4":
        return "mpeg4", {"g": "2", "qmin": MPEG4_QUANTISER, "qmax": MPEG4_QUANTISER, "bf": "0", "threads": "1"}
    raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"video codec {codec!r} is not supported (av1, h264, mpeg4)")


_MUX_OPTIONS = {"fflags": "+bitexact"}  # no encoder-version tags or creation times in the file
_REALTIME = {getattr(os, "SCHED_FIFO", -1), getattr(os, "SCHED_RR", -1)}


def open_encoder(stream) -> None:
    """Open `stream`'s encoder now, and keep this process's threads in normal scheduling.

    SVT-AV1, when it may (as root), puts the thread that opens it in SCHED_FIFO priority 99, and
    its own threads, created from that one, inherit it. Busy real-time threads starve everything
    else on their CPUs: a process this one starts afterwards inherits the policy too (measured:
    a local control plane started after an encoder spun both cores and never answered). Threads
    that were real-time before the encoder opened are left as they were.
    """
    if not hasattr(os, "sched_getscheduler") or not os.path.isdir("/proc/self/task"):
        stream.codec_context.open()
        return
    before = {tid: _policy(tid) for tid in os.listdir("/proc/self/task")}
    stream.codec_context.open()
    for tid in os.listdir("/proc/self/task"):
        if _policy(tid) in _REALTIME and before.get(tid) not in _REALTIME:
            try:
                os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
            except OSError:  # the thread ended meanwhile
                pass


def _policy(tid: str) -> int | None:
    try:
        return os.sched_getscheduler(int(tid))
    except OSError:
        return None


class SegmentEncoder:
    """Encodes RGB chunks into one mp4 with the source's codec, pix_fmt, size and fps, pts 0, 1, 2..."""

    def __init__(self, path: Path, *, codec: str, pix_fmt: str, width: int, height: int, fps: int | Fraction):
        name, options = encoder_settings(codec)
        self.path = Path(path)
        self.frames = 0
        self._container = av.open(str(self.path), "w", format="mp4", options=dict(_MUX_OPTIONS))
        # bitexact: no encoder version strings in the bitstream (mpeg4 writes one otherwise)
        self._stream = self._container.add_stream(
            name, rate=Fraction(fps), options={**options, "flags": "+bitexact"}
        )
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
        open_encoder(self._stream)

    def write(self, frames: np.ndarray) -> None:
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = self.frames
            self.frames += 1
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "SegmentEncoder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._container.close()


def concat_segments(segments: Sequence[tuple[Path, int]], out: Path, fps: int | Fraction) -> list[float]:
    """Remux `(segment, n_frames)` back to back into `out`; returns each segment's start in seconds.

    Segment k starts at (sum of earlier frame counts) / fps, exactly on the grid, so the v3.0
    from_timestamp of an episode is its frame offset divided by fps.
    """
    fps = Fraction(fps)
    starts: list[float] = []
    with av.open(str(segments[0][0])) as first:
        template = first.streams.video[0]
        extradata = template.codec_context.extradata
        tb = Fraction(template.time_base)
        with av.open(str(out), "w", format="mp4", options=dict(_MUX_OPTIONS)) as dst:
            ostream = dst.add_stream_from_template(template, opaque=True)
            offset_frames = 0
            for path, n_frames in segments:
                with av.open(str(path)) as src:
                    s = src.streams.video[0]
                    if Fraction(s.time_base) != tb or s.codec_context.extradata != extradata:
                        raise WorkerError(ExitCode.INTERNAL, f"segment {path.name} differs in time base or codec header")
                    offset = int(offset_frames / fps / tb)
                    if offset_frames / fps / tb != offset:
                        raise WorkerError(ExitCode.INTERNAL, f"1/{fps} s is not a whole number of {tb} ticks")
                    starts.append(float(offset_frames / fps))
                    for packet in src.demux(s):
                        if packet.dts is None:
                            continue
                        packet.pts += offset
                        packet.dts += offset
                        packet.stream = ostream
                        dst.mux(packet)
                offset_frames += n_frames
            # the mp4 muxer sets the final duration from the last packet's duration
    return starts
