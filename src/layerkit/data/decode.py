"""Image decoding: libjpeg-turbo (simplejpeg) for JPEG, Pillow for everything else.

Every decoded image is RGB uint8 (H, W, 3): grayscale and CMYK JPEGs, palette and
alpha PNGs are converted. Images of more than 8 bits are scaled, never clipped:

- 16-bit grayscale (PNG, TIFF: Pillow modes ``I;16*``) maps 0..65535 onto 0..255
  (``round(v / 257)``); 16-bit RGB(A) PNGs Pillow itself reduces to 8 bits.
- 32-bit float grayscale (TIFF, mode ``F``) must hold values in 0..1 (the usual
  convention), mapped to ``round(255 * v)``; other values, NaN or infinities are refused.
- 32-bit integer grayscale (mode ``I``) is refused (its range is unknown), except from a
  PNG, where it can only be 16-bit data and is scaled as such.

Anything that is not a decodable image (including a decompression bomb of more than
`MAX_PIXELS` pixels, and anything Pillow's decoders raise on malformed bytes) raises
`DecodeError`, a `ValueError` saying what was received. `decode_file` adds the path,
and refuses folders and other non-regular files (a FIFO is never read, so never hangs).
"""

import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import simplejpeg
from PIL import Image

JPEG_MAGIC = b"\xff\xd8"
MAX_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs
MAX_FILE_BYTES = 1 << 30  # decode_file reads no more of one image file


class DecodeError(ValueError):
    """An image that could not be decoded."""


def _describe(data) -> str:
    head = bytes(data[:8])
    return f"{len(data)} bytes starting {head!r}"


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _to_rgb(img) -> np.ndarray:
    """RGB uint8 from an opened image, deeper-than-8-bit modes scaled (see the module docstring)."""
    mode = img.mode
    if mode.startswith("I;16") or (mode == "I" and img.format == "PNG"):
        values = np.asarray(img).astype(np.int64)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi > 65535:
            raise DecodeError(f"16-bit {img.format} image of mode {mode} holds values {lo}..{hi}, outside 0..65535")
        return _gray_to_rgb(((values * 255 + 32767) // 65535).astype(np.uint8))
    if mode == "F":
        values = np.asarray(img, np.float64)
        if not np.isfinite(values).all():
            raise DecodeError(f"float {img.format} image holds NaN or infinite values; expected 0..1")
        lo, hi = float(values.min()), float(values.max())
        if lo < 0 or hi > 1:
            raise DecodeError(
                f"float {img.format} image holds values {lo:g}..{hi:g}; expected 0..1 (its range is otherwise "
                "unknown): scale it to 0..1 or convert it to 8-bit first")
        return _gray_to_rgb(np.rint(values * 255).astype(np.uint8))
    if mode == "I":
        raise DecodeError(
            f"32-bit integer {img.format} image (mode I): its range is unknown; convert it to 8 or 16 bits first")
    return np.asarray(img.convert("RGB"))


def _pillow(data) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS decides
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DecodeError(f"image of {img.width}x{img.height} exceeds {MAX_PIXELS} pixels")
                return _to_rgb(img)
    except DecodeError:
        raise
    except Image.DecompressionBombError as err:
        raise DecodeError(f"image exceeds {MAX_PIXELS} pixels ({_describe(data)}): {err}") from err
    except MemoryError:
        raise
    except Image.UnidentifiedImageError:  # its message names only an in-memory buffer
        raise DecodeError(f"not an image in a format Pillow or libjpeg-turbo reads ({_describe(data)})") from None
    except Exception as err:  # noqa: BLE001 - Pillow's decoders raise many types on malformed bytes
        raise DecodeError(
            f"not a decodable image ({_describe(data)}): {type(err).__name__}: {err}"
        ) from err


def read_image_file(path) -> bytes:
    """The bytes of image file `path`; a folder, FIFO or other non-regular file, or a file over
    `MAX_FILE_BYTES`, raises `DecodeError` naming it (nothing blocks)."""
    from layerkit.records.tfrecord import RecordError, read_regular

    try:
        data = read_regular(path, MAX_FILE_BYTES, "an image file")
    except RecordError as err:
        raise DecodeError(str(err)) from None
    except OSError as err:
        raise DecodeError(f"{path}: cannot read: {err.strerror or err}") from err
    if len(data) > MAX_FILE_BYTES:
        raise DecodeError(f"{path}: larger than {MAX_FILE_BYTES} bytes: not read as an image")
    return data


def decode_file(path) -> np.ndarray:
    """`decode_image` of the file at `path`; every fault is a `DecodeError` naming the path."""
    data = read_image_file(path)
    try:
        return decode_image(data)
    except DecodeError as err:
        raise DecodeError(f"{path}: {err}") from err


def decode_image(data) -> np.ndarray:
    """Decode one encoded image (bytes-like) to an RGB uint8 array of shape (H, W, 3)."""
    data = bytes(data) if not isinstance(data, bytes) else data
    if not data:
        raise DecodeError("empty: 0 bytes (an interrupted copy or download?)")
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


def _decode_at(blobs, i) -> np.ndarray:
    try:
        return decode_image(blobs[i])
    except DecodeError as err:
        if getattr(err, "index", None) is not None:
            raise
        err.index = i  # which image of the batch: callers name it (Pipeline: source.describe)
        raise


def decode_batch(blobs, size=None, threads=None, out=None) -> np.ndarray:
    """Decode a batch of encoded images into one (N, H, W, 3) uint8 array.

    All images must share one size unless `size` (H, W) is given, in which case
    each is resized and centre-cropped to it. `threads` defaults to the CPU count.
    """
    n = len(blobs)
    if n == 0:
        raise ValueError("decode_batch received an empty batch")
    first = fit_to(_decode_at(blobs, 0), size)
    if out is None:
        out = np.empty((n, *first.shape), np.uint8)

    want = out.shape[1:]

    def work(i):
        blob = blobs[i]
        if size is None and isinstance(blob, bytes) and blob[:2] == JPEG_MAGIC:
            try:  # the common case, straight into the batch: decode_image's calls, without a copy
                h, w = simplejpeg.decode_jpeg_header(blob)[:2]
                if (h, w, 3) == want:
                    simplejpeg.decode_jpeg(blob, colorspace="RGB", buffer=out[i])
                    return
            except (ValueError, RuntimeError):
                pass  # decode_image says what is wrong, or lets Pillow try
        img = fit_to(_decode_at(blobs, i), size)
        if img.shape != want:
            err = DecodeError(
                f"image is {img.shape[0]}x{img.shape[1]} (height x width), the others "
                f"{want[0]}x{want[1]}: images of different sizes need image_size=N "
                "(`layerkit train ... image_size=N`; Pipeline(image_size=(H, W)); decode_batch(size=(H, W)))"
            )
            err.index = i
            raise err
        out[i] = img

    if first.shape != out.shape[1:]:
        work(0)  # raises, naming the size
    out[0] = first
    threads = threads or os.cpu_count() or 1
    if threads == 1 or n < 64:
        for i in range(1, n):
            work(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            chunks = np.array_split(np.arange(1, n), threads)
            list(pool.map(lambda idx: [work(i) for i in idx], chunks))
    return out


def image_format(data: bytes) -> str:
    """Short format name from the leading bytes ("jpeg", "png", ...), as stored in image/format."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return "unknown"
