"""Data: sources (folders, `.npz` packs, CIFAR-10 batches, TFRecord shards), decoding, and the
batch-first pipeline. Writing and checking TFRecord shards is `layerkit.records`."""

from layerkit.data.decode import DecodeError, decode_batch, decode_image
from layerkit.data.npz import EncodedImages, load_npz
from layerkit.data.pipeline import Pipeline
from layerkit.data.sources import ArraySource, FolderSource, NpzSource, Subset, TFRecordSource, open_dataset

__all__ = ["ArraySource", "DecodeError", "EncodedImages", "FolderSource", "NpzSource", "Pipeline", "Subset",
           "TFRecordSource", "decode_batch", "decode_image", "load_npz", "open_dataset"]
