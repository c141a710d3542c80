"""Data: sources (folders, `.npz` packs, CIFAR-10 batches, TFRecord shards), decoding, and the
batch-first pipeline. Writing and checking TFRecord shards is `layerkit.records`.

`Pipeline` (which imports Keras) is imported on first use, so the sources and the decoder stay
light (decoding worker processes import only those)."""

from layerkit.data.decode import DecodeError, decode_batch, decode_image
from layerkit.data.npz import EncodedImages, load_npz
from layerkit.data.sources import ArraySource, FolderSource, NpzSource, Subset, TFRecordSource, open_dataset

__all__ = ["ArraySource", "DecodeError", "EncodedImages", "FolderSource", "NpzSource", "Pipeline", "Subset",
           "TFRecordSource", "decode_batch", "decode_image", "load_npz", "open_dataset"]


def __getattr__(name):
    if name == "Pipeline":
        from layerkit.data.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'layerkit.data' has no attribute {name!r}")
