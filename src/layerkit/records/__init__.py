"""TFRecord shards without TensorFlow: framing (`tfrecord`), the `tf.train.Example` codec
(`example`), the index and labels side files (`tfrecord`, `labels`), the writer (`writer`) and
a records folder's ``dataset.json``, `verify_records`, `records_info`, `index_records` (`dataset`).

Reading records for training is `layerkit.data` (`TFRecordSource`, `Pipeline`).
"""

from layerkit.records.dataset import index_records, records_info, verify_records
from layerkit.records.example import ExampleError, ImageKeys, parse_example, parse_image_example
from layerkit.records.tfrecord import RecordError, ShardReader, Shards, ShardWriter, is_shard_name
from layerkit.records.writer import write_records

__all__ = ["ExampleError", "ImageKeys", "RecordError", "ShardReader", "ShardWriter", "Shards", "index_records",
           "is_shard_name", "parse_example", "parse_image_example", "records_info", "verify_records",
           "write_records"]
