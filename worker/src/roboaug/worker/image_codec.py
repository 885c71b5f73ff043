"""Image files of image datasets, read as `datasets` shows them and written back as their source was.

`decode_image` gives the pixels `datasets.Image().decode_example` gives (EXIF orientation applied
with the same call, under the same condition), split into what the transforms augment (8-bit RGB)
and what they must not touch (alpha), plus how to write the result back (`SourceFormat`).
`encode_image` writes augmented pixels in the source's encoding and mode:

| source | written as |
|---|---|
| JPEG | JPEG with the source's own quantisation tables (its quality, exactly), chroma subsampling and progressive flag |
| PNG | PNG (deterministic: no text chunks or times) |
| WebP | WebP: lossless if the source is, else lossy at WEBP_QUALITY |
| other (GIF, BMP, TIFF, ...) | PNG |

Modes: L stays L (augmented as grey RGB, written back as luma), LA and RGBA keep their alpha
channel untouched, RGB stays RGB. A palette image (P) becomes RGB, or RGBA when its palette has
transparency: augmented colours leave the palette, and re-quantising would add visible banding.
"1" becomes L; CMYK, YCbCr and 16/32-bit modes become 8-bit RGB (as before this module).
EXIF (with Orientation set to 1 and pixel sizes set to the new ones, since the pixels are now
upright) and ICC profiles are carried.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin

from .dataset_bounds import check_frame_size, invalid
from .errors import ExitCode, WorkerError
from .png import PNG_COMPRESS_LEVEL

WEBP_QUALITY = 90
"""Lossy WebP: libwebp keeps no quality setting in the file, so lossy sources are written at this."""
ORIENTATION = 0x0112
EXIF_IFD = 0x8769
PIXEL_X, PIXEL_Y = 0xA002, 0xA003

# IJG's (libjpeg's) base tables, natural order: quality q scales them by 5000/q (q < 50) or 200 - 2q
_IJG_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]


@dataclass(frozen=True)
class SourceFormat:
    """How to write an augmented image so that it reads as its source did."""

    format: str  # "JPEG", "PNG" or "WEBP": the encoding written
    mode: str  # the mode written: "L", "LA", "RGB" or "RGBA"
    save: dict = field(default_factory=dict)  # the encoder's options (tables, subsampling, ...)
    exif: Optional[bytes] = None
    icc: Optional[bytes] = None

    @property
    def has_alpha(self) -> bool:
        return self.mode in ("LA", "RGBA")


@dataclass
class Decoded:
    rgb: np.ndarray  # (H, W, 3) uint8: what the transforms see
    alpha: Optional[np.ndarray]  # (H, W) uint8, kept as it is
    source: SourceFormat


def jpeg_quality(qtables: dict) -> int:
    """The IJG quality (1..100) whose luma table is nearest the given one (its first table, natural
    order): what `cjpeg -quality` or PIL's `quality=` would have been. For provenance: the encoder
    itself reuses the tables, which also matches sources whose tables are not IJG's."""
    table = np.asarray(list(qtables[min(qtables)]), dtype=np.float64)
    best, best_err = 75, float("inf")
    for q in range(1, 101):
        scale = 5000 / q if q < 50 else 200 - 2 * q
        ref = np.clip(np.floor((np.asarray(_IJG_LUMA) * scale + 50) / 100), 1, 255)
        err = float(np.abs(ref - table).sum())
        if err < best_err:
            best, best_err = q, err
    return best


def _webp_lossless(data: bytes) -> bool:
    """Whether a WebP file holds a lossless (VP8L) image: RIFF chunks, VP8L for lossless."""
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if tag == b"VP8L":
            return True
        if tag == b"VP8 ":
            return False
        pos += 8 + size + (size & 1)
    return False


def _upright_exif(img: Image.Image, size: tuple[int, int]) -> Optional[bytes]:
    """The EXIF to write with upright pixels of `size`: the source's, Orientation 1, pixel sizes
    the new ones (a rotated photo's are swapped)."""
    if "exif" not in img.info:
        return None
    exif = img.getexif()
    if ORIENTATION in exif:
        exif[ORIENTATION] = 1
    sub = exif.get_ifd(EXIF_IFD)
    if PIXEL_X in sub:
        sub[PIXEL_X] = size[0]
    if PIXEL_Y in sub:
        sub[PIXEL_Y] = size[1]
    return exif.tobytes()


def _source_format(img: Image.Image, data: bytes, mode: str) -> SourceFormat:
    fmt = img.format
    save: dict = {}
    if fmt == "JPEG":
        if mode not in ("L", "RGB"):  # JPEG has no alpha: a converted mode is written as PNG
            fmt = "PNG"
        else:
            save["qtables"] = {k: list(v) for k, v in img.quantization.items()}
            sampling = JpegImagePlugin.get_sampling(img)
            if sampling != -1 and mode == "RGB":
                save["subsampling"] = sampling
            if img.info.get("progressive") or img.info.get("progression"):
                save["progressive"] = True
    elif fmt == "WEBP":
        save = {"lossless": True, "quality": 100, "method": 4} if _webp_lossless(data) else \
            {"quality": WEBP_QUALITY, "method": 4}
        save["exact"] = True  # keep colour under fully transparent pixels as it is
    else:
        fmt = "PNG"
    if fmt == "PNG":
        save = {"compress_level": PNG_COMPRESS_LEVEL}
    return SourceFormat(fmt, mode, save, icc=img.info.get("icc_profile") or None)


_KEEP = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "1": "L"}


def decode_image(data: bytes) -> Decoded:
    """Pixels as `datasets` decodes them (EXIF orientation applied), split for the transforms.
    CORRUPT_VIDEO if unreadable, UNSUPPORTED_FORMAT (invalid) over dataset_bounds' size limit
    (checked on the header, before pixels are decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                check_frame_size("an image", *img.size)
                img.load()
                # exactly datasets.features.Image.decode_example's condition and call
                if img.getexif().get(Image.ExifTags.Base.Orientation) is not None:
                    upright = ImageOps.exif_transpose(img)
                else:
                    upright = img
                if upright.mode == "P":
                    mode = "RGBA" if "transparency" in upright.info else "RGB"
                elif upright.mode == "PA":
                    mode = "RGBA"
                else:
                    mode = _KEEP.get(upright.mode, "RGB")
                source = _source_format(img, data, mode)
                source = SourceFormat(source.format, source.mode, source.save,
                                      _upright_exif(img, upright.size), source.icc)
                pixels = upright.convert(mode)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise invalid(f"an image is over PIL's decompression-bomb limit: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's ways of saying "not an image"
        raise WorkerError(ExitCode.CORRUPT_VIDEO, f"an image cannot be decoded: {exc}") from exc
    arr = np.asarray(pixels)
    if mode == "L":
        return Decoded(np.repeat(arr[:, :, None], 3, axis=2), None, source)
    if mode == "LA":
        return Decoded(np.repeat(arr[:, :, :1], 3, axis=2), np.ascontiguousarray(arr[:, :, 1]), source)
    if mode == "RGBA":
        return Decoded(np.ascontiguousarray(arr[:, :, :3]), np.ascontiguousarray(arr[:, :, 3]), source)
    return Decoded(arr, None, source)


def to_mode(rgb: np.ndarray, alpha: Optional[np.ndarray], mode: str) -> Image.Image:
    """Augmented RGB (plus the untouched alpha) as an image of the source's mode; grey modes take
    the augmented image's luma (PIL's ITU-R 601-2 conversion)."""
    img = Image.fromarray(rgb, mode="RGB")
    if mode in ("L", "LA"):
        img = img.convert("L")
    if mode in ("LA", "RGBA"):
        img.putalpha(Image.fromarray(alpha, mode="L"))
    return img


def encode_image(rgb: np.ndarray, alpha: Optional[np.ndarray], source: SourceFormat) -> bytes:
    """Augmented pixels in the source's encoding and mode (see the module's table); deterministic."""
    img = to_mode(rgb, alpha, source.mode)
    opts = dict(source.save)
    if source.exif:
        opts["exif"] = source.exif
    if source.icc:
        opts["icc_profile"] = source.icc
    buf = io.BytesIO()
    img.save(buf, format=source.format, **opts)
    return buf.getvalue()


def pixels_written(rgb: np.ndarray, alpha: Optional[np.ndarray], mode: str) -> np.ndarray:
    """The array the encoder is given (the pre-encode pixels), for quality checks."""
    return np.asarray(to_mode(rgb, alpha, mode))


EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
