"""`tf.train.Example` in protobuf wire format, by hand (no TensorFlow, no protobuf package).

The schema (tensorflow/core/example/{example,feature}.proto)::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }   // entries: { string key = 1; Feature value = 2; }
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

Packed and unpacked repeated numbers are both accepted, unknown fields are
skipped, and the last of repeated map keys or oneof members wins, as protobuf
parsers do. Every malformed payload raises `ExampleError` (a `RecordError`,
hence a `ValueError`).
"""

import struct
from dataclasses import dataclass

import numpy as np

from layerkit.records.tfrecord import RecordError

# wire types
VARINT, I64, LEN, I32 = 0, 1, 2, 5
MAX_VARINT_BYTES = 10
_U64 = (1 << 64) - 1


class ExampleError(RecordError):
    """A payload that is not a well-formed `tf.train.Example` (a `RecordError`, so a `ValueError`)."""


# === Wire format ===


def encode_varint(value: int) -> bytes:
    """Base-128 varint; negative int64 values take ten bytes (two's complement), as in protobuf."""
    value &= _U64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of the varint at `pos`; at most ten bytes, none past `end`."""
    if pos < end and buf[pos] < 0x80:  # fast path: tags and short lengths are one byte
        return buf[pos], pos + 1
    result = shift = 0
    for k in range(MAX_VARINT_BYTES):
        if pos >= end:
            raise ExampleError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        if k == MAX_VARINT_BYTES - 1 and b > 1:
            raise ExampleError(f"varint overflows 64 bits at byte {pos - 1}")
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
    raise ExampleError(f"varint longer than {MAX_VARINT_BYTES} bytes at byte {pos - MAX_VARINT_BYTES}")


def _tag(field: int, wire_type: int) -> bytes:
    return encode_varint((field << 3) | wire_type)


def _len_field(field: int, body: bytes) -> bytes:
    return _tag(field, LEN) + encode_varint(len(body)) + body


def iter_fields(buf, start: int = 0, end: int | None = None):
    """Yield (field number, wire type, value) of a message; LEN values are (start, end) spans."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = decode_varint(buf, pos, end)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise ExampleError(f"field number 0 at byte {pos} (not a protobuf message)")
        if wire_type == VARINT:
            value, pos = decode_varint(buf, pos, end)
        elif wire_type == LEN:
            n, pos = decode_varint(buf, pos, end)
            if n > end - pos:
                raise ExampleError(f"field {field} claims {n} bytes at byte {pos}, only {end - pos} remain")
            value, pos = (pos, pos + n), pos + n
        elif wire_type in (I64, I32):
            n = 8 if wire_type == I64 else 4
            if n > end - pos:
                raise ExampleError(f"field {field} needs {n} bytes at byte {pos}, only {end - pos} remain")
            value, pos = (pos, pos + n), pos + n
        else:
            raise ExampleError(f"unsupported wire type {wire_type} (field {field}) at byte {pos}")
        yield field, wire_type, value


# === Encoding ===


def _feature(value) -> bytes:
    """Encode one Feature from a list of bytes/str, floats or ints (the first element decides)."""
    if isinstance(value, (bytes, str, int, float, np.generic)):
        value = [value]
    value = list(value)
    if not value:
        return _len_field(3, b"")  # an empty Int64List, as TF writes an empty list
    first = value[0]
    if isinstance(first, (bytes, bytearray, memoryview, str)):
        items = [v.encode() if isinstance(v, str) else bytes(v) for v in value]
        return _len_field(1, b"".join(_len_field(1, v) for v in items))
    if isinstance(first, (float, np.floating)):
        packed = np.asarray(value, "<f4").tobytes()
        return _len_field(2, _len_field(1, packed))
    if isinstance(first, (int, np.integer)) and not isinstance(first, bool):
        ints = [int(v) for v in value]
        if any(not -(1 << 63) <= v < (1 << 63) for v in ints):
            raise ValueError(f"int64 feature value out of range: {ints}")
        return _len_field(3, _len_field(1, b"".join(encode_varint(v) for v in ints)))
    raise TypeError(f"feature values must be bytes, str, float or int; got {type(first).__name__}")


def encode_example(features: dict) -> bytes:
    """Serialize ``{key: list of bytes | floats | ints}`` as a `tf.train.Example`."""
    entries = []
    for key, value in features.items():
        if not isinstance(key, str):
            raise TypeError(f"feature keys must be str, got {type(key).__name__}")
        entry = _len_field(1, key.encode()) + _len_field(2, _feature(value))
        entries.append(_len_field(1, entry))
    return _len_field(1, b"".join(entries))


# === Decoding ===


def _parse_feature(buf, start, end) -> list:
    values: list = []
    for field, wire_type, span in iter_fields(buf, start, end):
        if field not in (1, 2, 3):
            continue
        if wire_type != LEN:
            raise ExampleError(f"Feature field {field} has wire type {wire_type}, expected {LEN} (length-delimited)")
        values = []  # oneof: the last member set wins
        for vfield, vtype, v in iter_fields(buf, *span):
            if vfield != 1:
                continue
            if field == 1:  # BytesList
                if vtype != LEN:
                    raise ExampleError(f"BytesList value has wire type {vtype}, expected {LEN}")
                values.append(bytes(buf[v[0] : v[1]]))
            elif field == 2:  # FloatList
                if vtype == LEN:
                    n = v[1] - v[0]
                    if n % 4:
                        raise ExampleError(f"packed FloatList of {n} bytes is not a multiple of 4")
                    values.extend(np.frombuffer(buf[v[0] : v[1]], "<f4").tolist())
                elif vtype == I32:
                    values.append(struct.unpack_from("<f", buf, v[0])[0])
                else:
                    raise ExampleError(f"FloatList value has wire type {vtype}, expected {LEN} or {I32}")
            else:  # Int64List
                if vtype == LEN:
                    pos, stop = v
                    while pos < stop:
                        x, pos = decode_varint(buf, pos, stop)
                        values.append(x - (1 << 64) if x >> 63 else x)
                elif vtype == VARINT:
                    values.append(v - (1 << 64) if v >> 63 else v)
                else:
                    raise ExampleError(f"Int64List value has wire type {vtype}, expected {LEN} or {VARINT}")
    return values


def parse_example(payload, keys=None) -> dict[str, list]:
    """Parse a serialized `tf.train.Example` into ``{key: list of bytes | float | int}``.

    With `keys` (a collection of names), only those features' values are decoded
    and returned: faster when a record holds more than the reader needs.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ExampleError(f"an Example payload must be bytes-like, got {type(payload).__name__}")
    buf = bytes(payload)
    out: dict[str, list] = {}
    for field, wire_type, span in iter_fields(buf):
        if field != 1:
            continue
        if wire_type != LEN:
            raise ExampleError(f"Example.features has wire type {wire_type}, expected {LEN}")
        for ffield, ftype, entry in iter_fields(buf, *span):
            if ffield != 1:
                continue
            if ftype != LEN:
                raise ExampleError(f"Features.feature entry has wire type {ftype}, expected {LEN}")
            key, value_span = "", None
            for efield, etype, espan in iter_fields(buf, *entry):
                if efield not in (1, 2):
                    continue
                if etype != LEN:
                    raise ExampleError(f"map entry field {efield} has wire type {etype}, expected {LEN}")
                if efield == 1:
                    try:
                        key = buf[espan[0] : espan[1]].decode("utf-8")
                    except UnicodeDecodeError as err:
                        raise ExampleError(f"feature key is not UTF-8: {buf[espan[0]:espan[1]][:40]!r}") from err
                else:
                    value_span = espan
            if keys is None or key in keys:
                out[key] = _parse_feature(buf, *value_span) if value_span else []
    return out


# === Image examples ===


@dataclass(frozen=True)
class ImageKeys:
    """Feature names of an image Example; `format`, `height`, `width` may be None (not stored)."""

    encoded: str = "image/encoded"
    label: str = "image/class/label"
    format: str | None = "image/format"
    height: str | None = "image/height"
    width: str | None = "image/width"

    def __post_init__(self):
        names = [n for n in (self.encoded, self.label, self.format, self.height, self.width) if n is not None]
        if any(not isinstance(n, str) or not n for n in names):
            raise ValueError(f"ImageKeys names must be non-empty strings, got {self}")
        if len(set(names)) != len(names):
            raise ValueError(f"ImageKeys names must differ from one another, got {self}")

    @classmethod
    def flowers(cls) -> "ImageKeys":
        """The Keras-on-TPU flowers lab's keys: ``image`` (JPEG bytes) and ``class`` (int64)."""
        return cls(encoded="image", label="class", format=None, height=None, width=None)

    @classmethod
    def tfds(cls) -> "ImageKeys":
        """TensorFlow Datasets' image classification keys: ``image`` (encoded bytes), ``label`` (int64)."""
        return cls(encoded="image", label="label", format=None, height=None, width=None)

    @classmethod
    def parse(cls, spec) -> "ImageKeys":
        """Keys from a name (`KEY_SETS`: default, flowers, tfds), or ``encoded=KEY,label=KEY``
        (also ``image=KEY``; optional ``format=``, ``height=``, ``width=``), as `--keys` takes them."""
        if isinstance(spec, ImageKeys):
            return spec
        text = str(spec).strip()
        if text in KEY_SETS:
            return KEY_SETS[text]
        if "=" not in text:
            raise ValueError(f"keys must be one of {', '.join(KEY_SETS)} or encoded=KEY,label=KEY. Received: {spec!r}")
        fields = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            name = {"image": "encoded"}.get(name.strip(), name.strip())
            if name not in ("encoded", "label", "format", "height", "width") or not value.strip():
                raise ValueError(f"keys: {part.strip()!r} is not NAME=KEY with NAME one of encoded (or image), "
                                 f"label, format, height, width. Received: {spec!r}")
            fields[name] = value.strip()
        if "encoded" not in fields or "label" not in fields:
            raise ValueError(f"keys must name at least encoded=KEY and label=KEY. Received: {spec!r}")
        return cls(**{"format": None, "height": None, "width": None, **fields})

    def describe(self) -> str:
        for name, keys in KEY_SETS.items():
            if keys == self:
                return name
        return ",".join(f"{n}={getattr(self, n)}" for n in ("encoded", "label", "format", "height", "width")
                        if getattr(self, n) is not None)


DEFAULT_KEYS = ImageKeys()
KEY_SETS = {"default": DEFAULT_KEYS, "flowers": ImageKeys.flowers(), "tfds": ImageKeys.tfds()}


def _kind(values) -> str:
    if not values:
        return "empty"
    kind = {bytes: "bytes", int: "int64", float: "float"}[type(values[0])]
    return kind if len(values) == 1 else f"{len(values)} {kind}"


def detect_keys(payload) -> ImageKeys:
    """The key set (`KEY_SETS`, in that order) whose image is one bytes value and label one
    int64 in this record; else an `ExampleError` naming the features found and the ``--keys``
    that would fit them."""
    features = parse_example(payload)
    for keys in KEY_SETS.values():
        if _fits(features, keys):
            return keys
    raise ExampleError(unknown_keys_message(features))


def _fits(features, keys) -> bool:
    image, label = features.get(keys.encoded), features.get(keys.label)
    return (image is not None and len(image) == 1 and isinstance(image[0], bytes)
            and label is not None and len(label) == 1 and isinstance(label[0], int))


def unknown_keys_message(features) -> str:
    found = ", ".join(f"{k!r} ({_kind(v)})" for k, v in sorted(features.items())) or "none"
    images = [k for k, v in sorted(features.items()) if len(v) == 1 and isinstance(v[0], bytes)]
    labels = [k for k, v in sorted(features.items()) if len(v) == 1 and isinstance(v[0], int)]
    known = "; ".join(f"{name}: {keys.encoded}, {keys.label}" for name, keys in KEY_SETS.items())
    hint = ""
    if images and labels:
        fits = [f"--keys encoded={i},label={lab}" for i in images for lab in labels][:3]
        hint = " Pass " + " or ".join(fits) + " (the image's bytes and its int64 class)."
    return (f"no known image key set fits this record ({known}); its features are {found}.{hint}"
            if hint else f"no known image key set fits this record ({known}); its features are {found}, with no "
            "single-bytes image and single-int64 label to choose with --keys encoded=KEY,label=KEY.")


def encode_image_example(encoded, label: int, fmt, height: int, width: int, keys: ImageKeys = DEFAULT_KEYS) -> bytes:
    """A `tf.train.Example` holding one encoded image (bytes kept as given) and its label."""
    if not isinstance(encoded, (bytes, bytearray, memoryview)):
        raise TypeError(f"encoded image must be bytes-like, got {type(encoded).__name__}")
    features = {keys.encoded: [bytes(encoded)], keys.label: [int(label)]}
    if keys.format is not None:
        features[keys.format] = [fmt.encode() if isinstance(fmt, str) else bytes(fmt)]
    if keys.height is not None:
        features[keys.height] = [int(height)]
    if keys.width is not None:
        features[keys.width] = [int(width)]
    return encode_example(features)


def _single(features, key, kind, what):
    if key not in features:
        raise ExampleError(f"Example has no {what} feature {key!r}: {unknown_keys_message(features)}")
    values = features[key]
    if len(values) != 1 or not isinstance(values[0], kind):
        got = f"{len(values)} values" + (f" of type {type(values[0]).__name__}" if values else "")
        raise ExampleError(f"feature {key!r} must hold exactly one {kind.__name__}, got {got}")
    return values[0]


def _varint(buf, pos):
    """(value, next position) of a varint that `_fast_image_label` accepts: at most 9 bytes."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result, shift = b & 0x7F, 7
    for pos in range(pos + 1, min(pos + 9, len(buf))):
        b = buf[pos]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos + 1
        shift += 7
    raise IndexError  # longer or truncated: the generic parser decides


def _fast_image_label(buf, image_key: bytes, label_key: bytes):
    """(image span, label) of an Example laid out as writers lay it out (one ``features``
    message spanning the payload; map entries of key then value; one-value BytesList and
    Int64List), or None for anything else, which the generic parser then reads. Where both
    succeed they agree: the last entry of a key wins, unknown entries are skipped. The hot path
    of reading records: each varint is inlined, its one-byte case first."""
    try:
        if buf[0] != 0x0A:
            return None
        end = buf[1]
        if end < 0x80:
            pos = 1 + 1
        else:
            end, pos = _varint(buf, 1)
        end += pos
        if end != len(buf):
            return None
        image = label = None
        while pos < end:
            if buf[pos] != 0x0A:
                return None
            n = buf[pos + 1]
            if n < 0x80:
                pos = pos + 1 + 1
            else:
                n, pos = _varint(buf, pos + 1)
            entry_end = pos + n
            if buf[pos] != 0x0A:
                return None
            k = buf[pos + 1]
            if k < 0x80:
                pos = pos + 1 + 1
            else:
                k, pos = _varint(buf, pos + 1)
            key = buf[pos : pos + k]
            pos += k
            if key == image_key or key == label_key:
                if buf[pos] != 0x12:
                    return None
                n = buf[pos + 1]
                if n < 0x80:
                    pos = pos + 1 + 1
                else:
                    n, pos = _varint(buf, pos + 1)
                if pos + n != entry_end:
                    return None
                kind = buf[pos]
                n = buf[pos + 1]
                if n < 0x80:
                    pos = pos + 1 + 1
                else:
                    n, pos = _varint(buf, pos + 1)
                if pos + n != entry_end:
                    return None
                if key == image_key:
                    if kind != 0x0A or buf[pos] != 0x0A:
                        return None
                    n = buf[pos + 1]
                    if n < 0x80:
                        pos = pos + 1 + 1
                    else:
                        n, pos = _varint(buf, pos + 1)
                    if pos + n != entry_end:
                        return None
                    image = (pos, entry_end)
                else:
                    if kind != 0x1A or buf[pos] != 0x0A:
                        return None
                    n = buf[pos + 1]
                    if n < 0x80:
                        pos = pos + 1 + 1
                    else:
                        n, pos = _varint(buf, pos + 1)
                    if pos + n != entry_end:
                        return None
                    value = buf[pos]
                    if value < 0x80:
                        pos = pos + 1
                    else:
                        value, pos = _varint(buf, pos)
                    if pos != entry_end or value >> 63:
                        return None
                    label = value
            else:  # another feature: its layout checked as the generic parser checks it, not its value
                key.decode("utf-8")
                if buf[pos] != 0x12:
                    return None
                n = buf[pos + 1]
                if n < 0x80:
                    pos = pos + 1 + 1
                else:
                    n, pos = _varint(buf, pos + 1)
                if pos + n != entry_end:
                    return None
            if entry_end > end:
                return None
            pos = entry_end
        if image is None or label is None or pos != end:
            return None
        return image, label
    except (IndexError, UnicodeDecodeError):
        return None


def parse_image_example(payload, keys: ImageKeys = DEFAULT_KEYS) -> tuple[bytes, int]:
    """(encoded image bytes, label) of a serialized image Example."""
    if isinstance(payload, bytes):
        fast = _fast_image_label(payload, keys.encoded.encode(), keys.label.encode())
        if fast is not None:
            (start, stop), label = fast
            return payload[start:stop], label
    features = parse_example(payload, (keys.encoded, keys.label))
    if keys.encoded not in features or keys.label not in features:
        features = parse_example(payload)  # every feature, for the message
    return _single(features, keys.encoded, bytes, "image"), _single(features, keys.label, int, "label")


def image_fields(features: dict, keys: ImageKeys = DEFAULT_KEYS) -> dict:
    """From parsed features: encoded and label (required), format, height, width (when present)."""
    out = {"encoded": _single(features, keys.encoded, bytes, "image"), "label": _single(features, keys.label, int, "label")}
    for name, kind in (("format", bytes), ("height", int), ("width", int)):
        key = getattr(keys, name)
        if key is not None and key in features:
            out[name] = _single(features, key, kind, name)
    return out


def image_example_fields(payload, keys: ImageKeys = DEFAULT_KEYS) -> dict:
    """Every field `keys` names that is present: encoded, label, format, height, width."""
    features = parse_example(payload, (keys.encoded, keys.label, keys.format, keys.height, keys.width))
    if keys.encoded not in features or keys.label not in features:
        features = parse_example(payload)  # every feature, for the message
    return image_fields(features, keys)
