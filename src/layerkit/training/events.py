"""TensorBoard event files, written and read without TensorFlow.

An event file is a TFRecord file of `tensorflow.Event` protos. We write the fields
TensorBoard needs for scalars: ``wall_time`` (1, double), ``step`` (2, int64),
``file_version`` (3, the first event) and ``summary`` (5) holding ``Summary.Value``
messages with ``tag`` (1) and ``simple_value`` (2, float).
"""

import os
import socket
import struct
import time
from pathlib import Path

from layerkit.records.example import LEN, encode_varint, iter_fields
from layerkit.records.tfrecord import ShardReader, encode_record


def _key(field, wire_type):
    return encode_varint((field << 3) | wire_type)


def _bytes_field(field, body: bytes) -> bytes:
    return _key(field, LEN) + encode_varint(len(body)) + body


def encode_event(step: int, wall_time: float, scalars: dict | None = None, file_version: str | None = None) -> bytes:
    out = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + encode_varint(int(step))
    if file_version is not None:
        out += _bytes_field(3, file_version.encode())
    if scalars:
        values = b"".join(
            _bytes_field(1, _bytes_field(1, tag.encode()) + _key(2, 5) + struct.pack("<f", float(v)))
            for tag, v in scalars.items()
        )
        out += _bytes_field(5, values)
    return out


class EventWriter:
    """Appends scalar events to ``DIR/events.out.tfevents.<time>.<host>``; flushed per write."""

    def __init__(self, logdir):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = self.logdir / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        with open(self.path, "ab") as f:
            f.write(encode_record(encode_event(0, now, file_version="brain.Event:2")))

    def scalars(self, step: int, values: dict) -> None:
        values = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
        with open(self.path, "ab") as f:
            f.write(encode_record(encode_event(step, time.time(), values)))
            f.flush()


def read_scalars(path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from one event file (CRC-checked)."""
    out: dict[str, list[tuple[int, float]]] = {}
    with ShardReader(path) as reader:
        for payload in reader:
            step, tags = 0, []
            for field, wire, value in iter_fields(payload):
                if field == 2 and wire == 0:
                    step = value
                elif field == 5 and wire == LEN:
                    for vf, vw, vspan in iter_fields(payload, *value):
                        if vf != 1 or vw != LEN:
                            continue
                        tag, number = None, None
                        for f2, w2, v2 in iter_fields(payload, *vspan):
                            if f2 == 1 and w2 == LEN:
                                tag = bytes(payload[v2[0]:v2[1]]).decode()
                            elif f2 == 2 and w2 == 5:
                                number = struct.unpack("<f", payload[v2[0]:v2[1]])[0]
                        if tag is not None and number is not None:
                            tags.append((tag, number))
            for tag, number in tags:
                out.setdefault(tag, []).append((step, number))
    return out
