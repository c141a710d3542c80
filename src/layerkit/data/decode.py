"""Image decoding: libjpeg-turbo (simplejpeg) for JPEG, Pillow for everything else.

Every decoded image is RGB uint8 (H, W, 3): grayscale and CMYK JPEGs, palette and
alpha PNGs are converted. Anything that is not a decodable image raises
`DecodeError`, a `ValueError` saying what was received.
"""

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

JPEG_MAGIC = b"\xff\xd8"
MAX_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs


class DecodeError(ValueError):
    """An image that could not be decoded."""


def _describe(data) -> str:
    head = bytes(data[:8])
    return f"{len(data)} bytes starting {head!r}"


def _pillow(data) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise DecodeError(f"image of {img.width}x{img.height} exceeds {MAX_PIXELS} pixels")
            return np.asarray(img.convert("RGB"))
    except DecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DecodeError(
            f"not a decodable image ({_describe(data)}): {type(err).__name__}: {err}"
        ) from err


def decode_image(data) -> np.ndarray:
    """Decode one encoded image (bytes-like) to an RGB uint8 array of shape (H, W, 3)."""
    data = bytes(data) if not isinstance(data, bytes) else data
    if data[:2] == JPEG_MAGIC:
        try:
            header = simplejpeg.decode_jpeg_header(data)
            if header[0] * header[1] > MAX_PIXELS:
                raise DecodeError(f"JPEG of {header[1]}x{header[0]} exceeds {MAX_PIXELS} pixels")
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except DecodeError:
            raise
        except (ValueError, RuntimeError):
            pass  # unusual JPEGs (e.g. arithmetic coding, odd CMYK): let Pillow try
    return _pillow(data)


def fit_to(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize the shorter side to fit, then centre-crop to `size` (H, W); no-op if equal."""
    if size is None or image.shape[:2] == tuple(size):
        return image
    h, w = size
    img = Image.fromarray(image)
    scale = max(h / img.height, w / img.width)
    new = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
    img = img.resize(new, Image.BICUBIC)
    left, top = (new[0] - w) // 2, (new[1] - h) // 2
    return np.asarray(img.crop((left, top, left + w, top + h)))


def decode_batch(blobs, size=None, threads=None, out=None) -> np.ndarray:
    """Decode a batch of encoded images into one (N, H, W, 3) uint8 array.

    All images must share one size unless `size` (H, W) is given, in which case
    each is resized and centre-cropped to it. `threads` defaults to the CPU count.
    """
    n = len(blobs)
    if n == 0:
        raise ValueError("decode_batch received an empty batch")
    first = fit_to(decode_image(blobs[0]), size)
    if out is None:
        out = np.empty((n, *first.shape), np.uint8)
    out[0] = first

    def work(i):
        img = fit_to(decode_image(blobs[i]), size)
        if img.shape != first.shape:
            raise DecodeError(
                f"image {i} of the batch is {img.shape[1]}x{img.shape[0]}, the first is "
                f"{first.shape[1]}x{first.shape[0]}: pass size=(H, W) to resize"
            )
        out[i] = img

    threads = threads or os.cpu_count() or 1
    if threads == 1 or n < 64:
        for i in range(1, n):
            work(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            chunks = np.array_split(np.arange(1, n), threads)
            list(pool.map(lambda idx: [work(i) for i in idx], chunks))
    return out
