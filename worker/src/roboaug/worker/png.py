"""PNG, the codec of image cameras and image datasets: deterministic encode, checked decode."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from .dataset_bounds import check_frame_size, invalid
from .errors import ExitCode, WorkerError

PNG_COMPRESS_LEVEL = 6


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG with no text chunks or times: the same pixels always give the same bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """RGB pixels of an encoded image (PNG, or whatever PIL reads); CORRUPT_VIDEO if unreadable,
    UNSUPPORTED_FORMAT if its header declares a frame over dataset_bounds' size limit (checked
    before any pixel is decoded: a few KB of PNG can declare gigapixels)."""
    try:
        with warnings.catch_warnings():
            # PIL's own bomb check (MAX_IMAGE_PIXELS) only warns below twice its limit: an error here
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                check_frame_size("an image", *img.size)
                return np.asarray(img.convert("RGB"))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise invalid(f"an image is over PIL's decompression-bomb limit: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's ways of saying "not an image"
        raise WorkerError(ExitCode.CORRUPT_VIDEO, f"an image cannot be decoded: {exc}") from exc
