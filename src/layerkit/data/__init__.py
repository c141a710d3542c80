"""Data: encoded image packs, decoding, TFRecord shards and the batch-first pipeline."""

from layerkit.data.decode import DecodeError, decode_batch, decode_image
from layerkit.data.npz import EncodedImages, load_npz

__all__ = ["DecodeError", "EncodedImages", "decode_batch", "decode_image", "load_npz"]
