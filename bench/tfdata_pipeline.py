"""tf.data reference for `layerkit bench pipeline`: the same batch-first work, in TensorFlow.

Standalone, and not part of layerkit (it does not import it, and TensorFlow is no dependency
of layerkit): run it with the python of a throwaway environment holding TensorFlow, on the
TFRecord shards that `layerkit records write` produces (keys `image/encoded`,
`image/class/label`)::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu
    layerkit records write ../shared/data/cifar10/train.npz /tmp/tfbench/cifar10 --shards 8
    /tmp/tfenv/bin/python bench/tfdata_pipeline.py /tmp/tfbench/cifar10 --epochs 3

Pipeline (batch first): shards (parallel reads) -> shuffle(2048) -> batch(256 for images up
to 64x64, else 64; drop_remainder, as layerkit's shuffled `Pipeline`) -> parse the batch of
Examples -> decode the batch (`tf.map_fn(tf.io.decode_jpeg)`) -> augment + normalise to
float32 -> prefetch(AUTOTUNE). Augmentation, as layerkit's presets:

- `cifar`: random horizontal flip + 4 px reflect-pad random crop back to size, one offset per
  image (flip and crop folded into two batched gathers with reflected indices);
- `flowers`: random horizontal flip + Keras `RandomSaturation((0.3, 0.7))` semantics (factor
  f ~ U(0.3, 0.7) per image, HSV saturation times f / (1 - f), clipped);

then (x - mean) / std per channel (mean/std from the first 1,024 images, as layerkit's bench).
The augmentation is a `tf.function(jit_compile=True)` (XLA) unless `--no-xla`. `--augment-in`
chooses where it runs: `map` (a `Dataset.map` stage, in tf.data's threads; XLA inside tf.data
functions may not be honoured) or `loop` (called by the consuming loop on each uint8 batch,
as layerkit's benchmark calls its jitted augmentation; tf.data still prefetches decoded
batches in the background).

Each timed epoch is a whole pass: a new iterator, every batch pulled, the iterator deleted
(teardown inside the timing). One warm-up epoch first (traces and compiles). Prints one JSON
line: images/s of every epoch, their median, and the seconds each epoch's iterator
deletion took (part of the epoch's time). `--repeat` instead keeps one iterator over
`shuffle().repeat()` and times `images // batch` batches pulled from it per epoch (no
per-epoch iterator to build or tear down; the usual `fit(steps_per_epoch=...)` form).
"""

import argparse
import glob
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

AUTOTUNE = tf.data.AUTOTUNE
PAD = 4


def shard_files(path):
    files = sorted(glob.glob(os.path.join(path, "*.tfrecord")))
    if not files:
        raise SystemExit(f"{path}: no *.tfrecord shards")
    return files


def parse_batch(serialized):
    features = tf.io.parse_example(serialized, {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    })
    return features["image/encoded"], tf.cast(features["image/class/label"], tf.int32)


def make_decode(shape):
    spec = tf.TensorSpec(shape, tf.uint8)

    def decode(blobs, labels):
        images = tf.map_fn(lambda b: tf.io.decode_jpeg(b, channels=3), blobs,
                           fn_output_signature=spec)
        return images, labels

    return decode


def _reflect(index, size):
    """Reflect (no edge repeat, as np.pad mode='reflect') indices in [-size+1, 2*size-2]."""
    index = tf.abs(index)
    return tf.where(index > size - 1, 2 * (size - 1) - index, index)


def make_augment(preset, shape, mean, std, xla):
    height, width = shape[0], shape[1]
    mean = tf.constant(mean, tf.float32)
    inv_std = tf.constant(1.0 / std, tf.float32)

    def cifar(images):
        n = tf.shape(images)[0]
        flip = tf.random.uniform([n]) < 0.5
        dy = tf.random.uniform([n], 0, 2 * PAD + 1, tf.int32) - PAD
        dx = tf.random.uniform([n], 0, 2 * PAD + 1, tf.int32) - PAD
        rows = _reflect(dy[:, None] + tf.range(height)[None], height)  # (n, H)
        cols = _reflect(dx[:, None] + tf.range(width)[None], width)  # (n, W)
        # flip first, then crop: the crop of the flipped image reads column W-1-c.
        cols = tf.where(flip[:, None], width - 1 - cols, cols)
        out = tf.gather(images, rows, axis=1, batch_dims=1)
        out = tf.gather(out, cols, axis=2, batch_dims=1)
        return out

    def flowers(images):
        n = tf.shape(images)[0]
        flip = tf.random.uniform([n]) < 0.5
        images = tf.where(flip[:, None, None, None], tf.reverse(images, [2]), images)
        factor = tf.random.uniform([n], 0.3, 0.7)
        factor = factor / (1.0 - factor)
        hsv = tf.image.rgb_to_hsv(tf.cast(images, tf.float32) / 255.0)
        s = tf.clip_by_value(hsv[..., 1] * factor[:, None, None], 0.0, 1.0)
        hsv = tf.stack([hsv[..., 0], s, hsv[..., 2]], axis=-1)
        return tf.image.hsv_to_rgb(hsv) * 255.0

    aug = {"cifar": cifar, "flowers": flowers}[preset]

    def augment(images):
        return (tf.cast(aug(images), tf.float32) - mean) * inv_std

    return tf.function(augment, jit_compile=xla, reduce_retracing=True)


def build(files, shape, batch_size, images, augment, augment_in, shuffle_buffer, repeat):
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=AUTOTUNE)
    ds = ds.take(images)
    ds = ds.shuffle(shuffle_buffer, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(parse_batch, num_parallel_calls=AUTOTUNE)
    ds = ds.map(make_decode(shape), num_parallel_calls=AUTOTUNE)
    if augment_in == "map":
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def epoch(ds, augment, augment_in):
    n = 0
    it = iter(ds)
    for x, _ in it:
        if augment_in == "loop":
            x = augment(x)
        n += int(x.shape[0])
    _ = x.numpy()[0, 0, 0, 0]  # the last batch is done (eager CPU ops are synchronous anyway)
    start = time.perf_counter()
    del it  # teardown of the iterator (and its autotuned threads) inside the timing
    return n, time.perf_counter() - start


def repeated_epoch(it, steps, augment, augment_in):
    """`--repeat`: `steps` batches from one long-lived iterator (no per-epoch teardown)."""
    n = 0
    for _ in range(steps):
        x, _ = next(it)
        if augment_in == "loop":
            x = augment(x)
        n += int(x.shape[0])
    _ = x.numpy()[0, 0, 0, 0]
    return n, 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shards", help="folder of *.tfrecord shards written by `layerkit records write`")
    p.add_argument("--images", type=int, default=None, help="first N records (default: all)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default 256 for images up to 64x64, else 64")
    p.add_argument("--augment", choices=["cifar", "flowers"], default=None,
                   help="default: cifar for images up to 64x64, else flowers")
    p.add_argument("--augment-in", choices=["map", "loop"], default="map")
    p.add_argument("--no-xla", action="store_true", help="augmentation without jit_compile")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    p.add_argument("--shuffle-buffer", type=int, default=2048)
    p.add_argument("--repeat", action="store_true",
                   help="one iterator over shuffle().repeat(): an epoch is images // batch "
                   "batches pulled from it, no iterator built or torn down per epoch")
    p.add_argument("--label", default=None, help="free text copied into the JSON")
    args = p.parse_args()

    files = shard_files(args.shards)
    total = sum(1 for _ in tf.data.TFRecordDataset(files))
    images = min(args.images or total, total)
    first = tf.data.TFRecordDataset(files).take(1024).batch(1024).map(parse_batch)
    blobs, _ = next(iter(first))
    sample = np.stack([tf.io.decode_jpeg(b, channels=3).numpy() for b in blobs])
    shape = sample.shape[1:]
    small = shape[0] * shape[1] <= 64 * 64
    batch_size = args.batch_size or (256 if small else 64)
    preset = args.augment or ("cifar" if small else "flowers")
    mean = sample.reshape(-1, 3).mean(0).astype(np.float32)
    std = sample.reshape(-1, 3).std(0).astype(np.float32)

    augment = make_augment(preset, shape, mean, std, xla=not args.no_xla)
    ds = build(files, shape, batch_size, images, augment, args.augment_in, args.shuffle_buffer,
               args.repeat)
    if args.repeat:
        it, steps = iter(ds), images // batch_size
        run = lambda: repeated_epoch(it, steps, augment, args.augment_in)  # noqa: E731
    else:
        run = lambda: epoch(ds, augment, args.augment_in)  # noqa: E731

    start = time.perf_counter()
    run()  # warm-up: traces, compiles, autotune settles
    warmup = time.perf_counter() - start
    rates, teardowns = [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        n, teardown = run()
        rates.append(n / (time.perf_counter() - start))
        teardowns.append(teardown)
    print(json.dumps({
        "pipeline": "tf.data batch-first", "label": args.label, "shards": args.shards,
        "files": len(files), "images_per_epoch": n, "image_shape": list(shape),
        "batch_size": batch_size, "augment": preset, "augment_in": args.augment_in,
        "repeat": args.repeat,
        "xla": not args.no_xla, "tf": tf.__version__, "cores": os.cpu_count(),
        "warmup_s": round(warmup, 2), "images_per_s": [round(r) for r in rates],
        "median_images_per_s": round(statistics.median(rates)),
        "teardown_s": [round(t, 2) for t in teardowns],
        "loadavg_1min": round(os.getloadavg()[0], 1),
    }), flush=True)


if __name__ == "__main__":
    main()
