"""tf.train.Example wire format by hand (layerkit.records.example)."""

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerkit.records.example import (
    ExampleError,
    ImageKeys,
    decode_varint,
    encode_example,
    encode_image_example,
    encode_varint,
    image_example_fields,
    parse_example,
    parse_image_example,
)
from layerkit.records.tfrecord import RecordError, ShardReader

FIXTURES = Path(__file__).parent / "fixtures"


def tag(field, wire):
    return encode_varint(field << 3 | wire)


def ld(field, body):
    return tag(field, 2) + encode_varint(len(body)) + body


def example_of(key: bytes, feature: bytes) -> bytes:
    """An Example with one map entry whose Feature message body is `feature`."""
    return ld(1, ld(1, ld(1, key) + ld(2, feature)))


# === Varints ===


@pytest.mark.parametrize(
    "value, encoded",
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
     (-1, b"\xff" * 9 + b"\x01"), (2**63 - 1, b"\xff" * 8 + b"\x7f")],
)
def test_varint_known_encodings(value, encoded):
    assert encode_varint(value) == encoded
    decoded, end = decode_varint(encoded, 0, len(encoded))
    assert end == len(encoded) and decoded == value % 2**64


def test_varint_bounds():
    with pytest.raises(ExampleError, match="truncated varint"):
        decode_varint(b"\x80\x80", 0, 2)
    with pytest.raises(ExampleError, match="overflows 64 bits"):
        decode_varint(b"\xff" * 9 + b"\x02", 0, 10)
    with pytest.raises(ExampleError, match="overflows 64 bits|longer than 10"):
        decode_varint(b"\xff" * 20, 0, 20)
    with pytest.raises(ExampleError, match="truncated varint"):  # the end bound, not the buffer's
        decode_varint(b"\x80\x01", 0, 1)


# === Round trips ===


def test_round_trip_every_kind():
    features = {
        "bytes": [b"", b"\x00\xff", b"abc" * 100],
        "text": ["é", "x"],
        "floats": [1.5, -0.25, 3.0e38, 0.0],
        "ints": [0, 1, -1, 2**63 - 1, -(2**63), 300],
        "one": 7,
        "empty": [],
        "clé": [b"unicode key"],
    }
    parsed = parse_example(encode_example(features))
    assert parsed == {
        "bytes": [b"", b"\x00\xff", b"abc" * 100],
        "text": ["é".encode(), b"x"],
        "floats": [1.5, -0.25, float(np.float32(3.0e38)), 0.0],
        "ints": [0, 1, -1, 2**63 - 1, -(2**63), 300],
        "one": [7],
        "empty": [],
        "clé": [b"unicode key"],
    }


def test_floats_round_to_float32():
    (value,) = parse_example(encode_example({"f": [0.1]}))["f"]
    assert value == float(np.float32(0.1)) and value != 0.1


def test_encode_refuses_bad_values():
    with pytest.raises(ValueError, match="int64 feature value out of range"):
        encode_example({"i": [2**63]})
    with pytest.raises(TypeError, match="bytes, str, float or int"):
        encode_example({"x": [None]})
    with pytest.raises(TypeError, match="keys must be str"):
        encode_example({b"k": [1]})


@settings(max_examples=100, deadline=2000)
@given(
    st.dictionaries(
        st.text(max_size=10),
        st.one_of(
            st.lists(st.binary(max_size=20), min_size=1, max_size=4),
            st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=4),
            st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=4),
        ),
        max_size=5,
    )
)
def test_round_trip_property(features):
    assert parse_example(encode_example(features)) == features


# === Interop with TensorFlow's own serialisation ===


def tf_expected():
    records = json.loads((FIXTURES / "tf_examples.json").read_text())["records"]
    return [
        {k: [bytes.fromhex(x) if v["kind"] == "bytes_list" else x for x in v["values"]] for k, v in r.items()}
        for r in records
    ]


def test_parses_what_tensorflow_wrote():
    """Each record of the fixture parses to exactly what TensorFlow's parser saw."""
    expected = tf_expected()
    payloads = list(ShardReader(FIXTURES / "tf_examples.tfrecord"))
    assert len(payloads) == len(expected) == 6
    for payload, want in zip(payloads, expected):
        assert parse_example(payload) == want
    assert parse_example(payloads[4])["neg"] == [-1, -(2**63), 2**63 - 1, 0]
    assert parse_example(payloads[5]) == {}


def test_image_examples_tensorflow_wrote():
    payloads = list(ShardReader(FIXTURES / "tf_examples.tfrecord"))
    encoded, label = parse_image_example(payloads[0])
    assert encoded[:2] == b"\xff\xd8" and label == 3
    fields = image_example_fields(payloads[1])
    assert fields["label"] == 0 and fields["format"] == b"png" and (fields["height"], fields["width"]) == (5, 7)
    encoded, label = parse_image_example(payloads[3], ImageKeys.flowers())
    assert label == 2 and encoded == parse_image_example(payloads[0])[0]


def test_unpacked_and_packed_repeated_values():
    unpacked_ints = ld(3, tag(1, 0) + encode_varint(5) + tag(1, 0) + encode_varint(-2))
    assert parse_example(example_of(b"i", unpacked_ints)) == {"i": [5, -2]}
    mixed = ld(3, ld(1, encode_varint(1) + encode_varint(2)) + tag(1, 0) + encode_varint(3))
    assert parse_example(example_of(b"i", mixed)) == {"i": [1, 2, 3]}
    unpacked_floats = ld(2, tag(1, 5) + struct.pack("<f", 2.5) + tag(1, 5) + struct.pack("<f", -1.0))
    assert parse_example(example_of(b"f", unpacked_floats)) == {"f": [2.5, -1.0]}


def test_unknown_fields_skipped_and_last_wins():
    unknown = tag(9, 0) + encode_varint(77) + tag(10, 1) + b"\0" * 8 + tag(11, 5) + b"\0" * 4 + ld(12, b"zz")
    # unknown fields at every level; oneof: bytes then int64, the int64 wins
    feature = unknown + ld(1, ld(1, b"old")) + ld(3, ld(1, encode_varint(4)))
    entry = ld(1, unknown + ld(1, b"k") + ld(2, feature))
    payload = ld(1, entry + ld(1, ld(1, b"k2") + ld(2, ld(1, ld(1, b"v"))))) + unknown
    assert parse_example(payload) == {"k": [4], "k2": [b"v"]}
    duplicate = ld(1, ld(1, ld(1, b"k") + ld(2, ld(3, ld(1, b"\x01")))) + ld(1, ld(1, b"k") + ld(2, ld(3, ld(1, b"\x02")))))
    assert parse_example(duplicate) == {"k": [2]}


def test_parse_only_some_keys():
    payload = encode_example({"a": [1], "b": [b"x"], "c": [2.0]})
    assert parse_example(payload, ("a", "c", "missing")) == {"a": [1], "c": [2.0]}
    bad_value = example_of(b"skip", ld(2, ld(1, b"abc")))
    assert parse_example(bad_value, ("other",)) == {}  # values of keys not asked for are not decoded
    with pytest.raises(ExampleError, match="packed FloatList of 3 bytes"):
        parse_example(bad_value)


# === Malformed payloads ===


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x0a\x05ab", "claims 5 bytes"),
        (b"\x0a", "truncated varint"),
        (b"\x0b", "unsupported wire type 3"),
        (b"\x0c", "unsupported wire type 4"),
        (b"\x0e\x00", "unsupported wire type 6"),
        (b"\x00\x00", "field number 0"),
        (b"\x08\x01", "Example.features has wire type 0"),
        (ld(1, b"\x08\x01"), "Features.feature entry has wire type 0"),
        (ld(1, ld(1, b"\x08\x01")), "map entry field 1 has wire type 0"),
        (example_of(b"\xff\xfe", b""), "feature key is not UTF-8"),
        (example_of(b"f", ld(2, ld(1, b"abc"))), "packed FloatList of 3 bytes"),
        (example_of(b"f", ld(2, tag(1, 0) + b"\x01")), "FloatList value has wire type 0"),
        (example_of(b"i", ld(3, tag(1, 5) + b"\0" * 4)), "Int64List value has wire type 5"),
        (example_of(b"b", ld(1, tag(1, 0) + b"\x01")), "BytesList value has wire type 0"),
        (example_of(b"i", tag(3, 0) + b"\x01"), "Feature field 3 has wire type 0"),
        (example_of(b"i", ld(3, ld(1, b"\x80"))), "truncated varint"),
    ],
)
def test_malformed_payloads(payload, message):
    with pytest.raises(ExampleError, match=message) as e:
        parse_example(payload)
    assert isinstance(e.value, RecordError) and isinstance(e.value, ValueError)


def test_payload_must_be_bytes():
    with pytest.raises(ExampleError, match="must be bytes-like, got str"):
        parse_example("text")


# === Image examples ===


def test_image_example_round_trip_and_keys():
    payload = encode_image_example(b"\xff\xd8jpegbytes", 4, "jpeg", 32, 24)
    assert parse_example(payload) == {
        "image/encoded": [b"\xff\xd8jpegbytes"], "image/class/label": [4], "image/format": [b"jpeg"],
        "image/height": [32], "image/width": [24],
    }
    assert parse_image_example(payload) == (b"\xff\xd8jpegbytes", 4)
    flowers = encode_image_example(b"img", 1, "jpeg", 5, 5, ImageKeys.flowers())
    assert parse_example(flowers) == {"image": [b"img"], "class": [1]}
    assert parse_image_example(flowers, ImageKeys.flowers()) == (b"img", 1)
    custom = ImageKeys(encoded="png", label="y", format=None, height="h", width=None)
    assert parse_example(encode_image_example(b"p", 0, "png", 3, 4, custom)) == {"png": [b"p"], "y": [0], "h": [3]}


@pytest.mark.parametrize(
    "features, message",
    [
        ({"image/class/label": [1]}, "no image feature 'image/encoded'"),
        ({"image/encoded": [b"x"]}, "no label feature 'image/class/label'"),
        ({"image/encoded": [b"x", b"y"], "image/class/label": [1]}, "exactly one bytes, got 2 values"),
        ({"image/encoded": [b"x"], "image/class/label": [b"1"]}, "exactly one int, got 1 values of type bytes"),
        ({"image/encoded": [b"x"], "image/class/label": []}, "exactly one int, got 0 values"),
    ],
)
def test_image_example_faults(features, message):
    with pytest.raises(ExampleError, match=message):
        parse_image_example(encode_example(features))


def test_payload_that_is_not_an_example():
    """A JPEG's bytes are not an Example: refused, not an IndexError."""
    with pytest.raises(ValueError):
        parse_image_example(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    with pytest.raises(ExampleError, match="unsupported wire type 4"):
        parse_image_example(b"hello world")
    with pytest.raises(ExampleError, match=r"no image feature 'image/encoded': .* its features are none"):
        parse_image_example(b"\x10\x01\x18\x02")  # a valid message of unknown fields only


def test_image_keys_validated():
    with pytest.raises(ValueError, match="must differ"):
        ImageKeys(encoded="x", label="x")
    with pytest.raises(ValueError, match="non-empty strings"):
        ImageKeys(encoded="")


# === Fuzz ===


@settings(max_examples=300, deadline=1000)
@given(st.binary(max_size=200))
def test_fuzz_random_payloads(data):
    try:
        parsed = parse_example(data)
    except ExampleError:
        return
    assert isinstance(parsed, dict)
    assert all(isinstance(k, str) and isinstance(v, list) for k, v in parsed.items())


GOOD = encode_example({"image/encoded": [b"\xff\xd8" + b"x" * 30], "image/class/label": [3], "f": [1.0, 2.0], "n": [-5]})


@settings(max_examples=300, deadline=1000)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4), st.integers(0, len(GOOD)))
def test_fuzz_mutated_payloads(flips, cut):
    data = bytearray(GOOD)
    for pos, value in flips:
        data[pos] = value
    try:
        encoded, label = parse_image_example(bytes(data[:cut] if cut % 2 else data))
    except ExampleError:
        return
    assert isinstance(encoded, bytes) and isinstance(label, int) and not math.isnan(label)


def _generic(data, keys=ImageKeys()):
    """parse_image_example by the generic parser alone (the fast path bypassed)."""
    try:
        return parse_image_example(bytearray(data), keys)  # not bytes: the fast path is skipped
    except ExampleError:
        return "error"


def _any(data, keys=ImageKeys()):
    try:
        return parse_image_example(bytes(data), keys)
    except ExampleError:
        return "error"


@settings(max_examples=500, deadline=1000)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, len(GOOD)))
def test_fast_path_agrees_with_the_generic_parser_on_mutated_payloads(flips, cut):
    data = bytearray(GOOD)
    for pos, value in flips:
        data[pos] = value
    data = data[:cut] if cut % 2 else data
    assert _any(data) == _generic(data)


@settings(max_examples=300, deadline=1000)
@given(st.dictionaries(st.sampled_from(["image/encoded", "image/class/label", "image", "class", "x"]),
                       st.one_of(st.lists(st.binary(max_size=8), max_size=2),
                                 st.lists(st.integers(-2**63, 2**63 - 1), max_size=2),
                                 st.lists(st.floats(width=32, allow_nan=False), max_size=2)), max_size=5),
       st.booleans())
def test_fast_path_agrees_with_the_generic_parser_on_any_example(features, flowers):
    data = encode_example(features)
    keys = ImageKeys.flowers() if flowers else ImageKeys()
    assert _any(data, keys) == _generic(data, keys)
    doubled = data + data[:len(data)]  # a repeated features field: merged, the last wins
    assert _any(doubled, keys) == _generic(doubled, keys)
