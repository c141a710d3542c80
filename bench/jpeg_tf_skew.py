"""How far layerkit's JPEG pixels lie from TensorFlow's, per DCT method (train/serve skew).

layerkit decodes JPEG with libjpeg-turbo's accurate integer DCT (simplejpeg); TensorFlow's
``tf.io.decode_jpeg`` (and ``decode_image``) uses its fast integer DCT unless given
``dct_method="INTEGER_ACCURATE"``. This decodes the same JPEGs both ways in TensorFlow (a
throwaway environment, run as a child process that imports no layerkit) and with
`layerkit.data.decode.decode_image`, and prints, per pack and TF method, the largest and mean
absolute difference per channel value and the share of values that differ; the last line is
one JSON object. Only numpy and the standard library on the TF side::

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    .venv/bin/python bench/jpeg_tf_skew.py ../shared/data/cifar10/test.npz ../shared/data/flowers/test.npz \\
        --tf-python /tmp/tfvenv/bin/python --images 1000
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

METHODS = {"tf default (INTEGER_FAST)": "", "tf INTEGER_ACCURATE": "INTEGER_ACCURATE"}


def tf_side(src, out) -> None:
    """In the TensorFlow environment: decode every JPEG of `src` with each DCT method."""
    import tensorflow as tf

    with np.load(src) as z:
        data, offsets = z["jpeg"], z["offsets"]
    arrays = {}
    for key, method in METHODS.items():
        pixels = [tf.io.decode_jpeg(data[offsets[i] : offsets[i + 1]].tobytes(), channels=3, dct_method=method).numpy()
                  for i in range(len(offsets) - 1)]
        arrays[key] = np.concatenate([p.reshape(-1) for p in pixels])
    np.savez(out, **arrays)


def compare(pack, tf_python, images) -> dict:
    from layerkit.data.decode import decode_image
    from layerkit.data.npz import load_npz

    encoded = load_npz(pack)
    blobs = [encoded.encoded(i) for i in range(min(images, len(encoded)))]
    blobs = [b for b in blobs if b[:2] == b"\xff\xd8"]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, jpeg=np.frombuffer(b"".join(blobs), np.uint8),
                 offsets=np.cumsum([0] + [len(b) for b in blobs]))
        subprocess.run([tf_python, __file__, "--tf-side", str(src), str(out)], check=True)
        with np.load(out) as z:
            theirs = {k: z[k] for k in METHODS}
    ours = np.concatenate([decode_image(b).reshape(-1) for b in blobs])
    result = {"pack": str(pack), "images": len(blobs)}
    for key, values in theirs.items():
        diff = np.abs(ours.astype(np.int16) - values.astype(np.int16))
        result[key] = {"max_abs": int(diff.max()), "mean_abs": round(float(diff.mean()), 4),
                       "share_differing": round(float((diff > 0).mean()), 4)}
    return result


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--tf-side":
        tf_side(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packs", nargs="+", help=".npz JPEG packs (jpeg, offsets, labels, classes)")
    parser.add_argument("--tf-python", required=True, help="a Python with TensorFlow installed")
    parser.add_argument("--images", type=int, default=1000, help="JPEGs per pack (default 1000)")
    args = parser.parse_args()
    results = [compare(p, args.tf_python, args.images) for p in args.packs]
    for r in results:
        for key in METHODS:
            m = r[key]
            print(f"{r['pack']} ({r['images']} JPEGs) vs {key}: max |diff| {m['max_abs']}, mean {m['mean_abs']}, "
                  f"{100 * m['share_differing']:.2f}% of values differ")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
