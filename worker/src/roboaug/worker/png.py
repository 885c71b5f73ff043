"""PNG, the codec of image cameras and image datasets: deterministic encode, checked decode."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .errors import ExitCode, WorkerError

PNG_COMPRESS_LEVEL = 6


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG with no text chunks or times: the same pixels always give the same bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """RGB pixels of an encoded image (PNG, or whatever PIL reads); CORRUPT_VIDEO if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's ways of saying "not an image"
        raise WorkerError(ExitCode.CORRUPT_VIDEO, f"an image cannot be decoded: {exc}") from exc
