"""TensorBoard event files, written without TensorFlow (read back by TensorBoard's own reader in the tests).

An event file is a TFRecord file of `tensorflow.Event` protos. We write the fields
TensorBoard needs for scalars: ``wall_time`` (1, double), ``step`` (2, int64),
``file_version`` (3, the first event), ``summary`` (5) holding ``Summary.Value``
messages with ``tag`` (1) and ``simple_value`` (2, float), and ``session_log`` (7) with
status START when a session begins: TensorBoard then drops every earlier point at or after
that step, so an epoch logged by a run that was killed before its checkpoint, and trained
again after ``--resume``, shows once.
"""

import os
import socket
import struct
import time
from pathlib import Path

from layerkit.records.example import LEN, encode_varint
from layerkit.records.tfrecord import encode_record

SESSION_START = 1  # tensorflow.SessionLog.START


def _key(field, wire_type):
    return encode_varint((field << 3) | wire_type)


def _bytes_field(field, body: bytes) -> bytes:
    return _key(field, LEN) + encode_varint(len(body)) + body


def encode_event(step: int, wall_time: float, scalars: dict | None = None, file_version: str | None = None,
                 session_start: bool = False) -> bytes:
    out = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + encode_varint(int(step))
    if file_version is not None:
        out += _bytes_field(3, file_version.encode())
    if session_start:
        out += _bytes_field(7, _key(1, 0) + encode_varint(SESSION_START))
    if scalars:
        values = b"".join(
            _bytes_field(1, _bytes_field(1, tag.encode()) + _key(2, 5) + struct.pack("<f", float(v)))
            for tag, v in scalars.items()
        )
        out += _bytes_field(5, values)
    return out


class EventWriter:
    """Appends scalar events to ``DIR/events.out.tfevents.<time>.<host>.<pid>``, flushed per
    write; the file opens with a session start at `first_step` (see the module docstring)."""

    def __init__(self, logdir, first_step: int = 1):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = self.logdir / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        with open(self.path, "ab") as f:
            f.write(encode_record(encode_event(0, now, file_version="brain.Event:2")))
            f.write(encode_record(encode_event(first_step, now, session_start=True)))

    def scalars(self, step: int, values: dict) -> None:
        values = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
        with open(self.path, "ab") as f:
            f.write(encode_record(encode_event(step, time.time(), values)))
            f.flush()
