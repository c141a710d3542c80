"""Data: encoded image packs, decoding, TFRecord shards and the batch-first pipeline."""

from layerkit.data.decode import DecodeError, decode_batch, decode_image
from layerkit.data.npz import EncodedImages, load_npz

__all__ = ["DecodeError", "EncodedImages", "decode_batch", "decode_image", "load_npz"]

from layerkit.data.example import ImageKeys, parse_example, parse_image_example  # noqa: E402
from layerkit.data.records import records_info, verify_records, write_records  # noqa: E402
from layerkit.data.tfrecord import RecordError, ShardReader, Shards, ShardWriter  # noqa: E402

__all__ += ["ImageKeys", "parse_example", "parse_image_example", "records_info", "verify_records", "write_records", "RecordError", "ShardReader", "Shards", "ShardWriter"]
from layerkit.data.pipeline import Pipeline  # noqa: E402
from layerkit.data.sources import ArraySource, FolderSource, NpzSource, Subset, TFRecordSource, open_dataset  # noqa: E402

__all__ += ["Pipeline", "ArraySource", "FolderSource", "NpzSource", "Subset", "TFRecordSource", "open_dataset"]
