"""Input pipeline: per-example (Pillow + numpy per image) against batch-first (batched decode + jitted augmentation).

    layerkit bench pipeline ../shared/data/cifar10 --images 20000
    layerkit bench pipeline ../shared/data/flowers

Measures whole epochs over the first `--images` images of the train split, side by
side in one process, and prints images/s for: (a) the per-example pipeline a user would
write (Pillow decode each record, numpy augment and normalise each image, stack a
batch); (b) the batch-first `Pipeline` (batched libjpeg-turbo decode every epoch, the
augmentation preset and normalisation compiled with `jax.jit` on the CPU, one batch in
flight), and the same with the decoded images cached; (c) the decoder alone; (d) the
augmentation layers alone. The variants run interleaved, one epoch of each per round, so
a change in the machine's load falls on all; each figure is the median over the rounds, and
the speedup is also given round by round (its spread). The last line is
``speedup batch-first/per-example: X`` (decoding every epoch, as the per-example pipeline
does). ``--variants batch-first,cached --json`` times only those (the tf.data comparison,
``bench/tfdata_compare.py``) and ends with one JSON line.
"""

import io
import json
import os
import statistics
import time

import numpy as np

AUGMENT_FOR = {"cifar": "cifar", "flowers": "flowers"}


def add_arguments(parser):
    parser.add_argument("data", help="data set name (cifar10, flowers, sample) or path to an "
                        ".npz pack, a folder holding train.npz, TFRecord shards or class folders")
    parser.add_argument("--images", type=int, default=20000, help="images per epoch (default 20000)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default 256 for images up to 64x64, else 64")
    parser.add_argument("--augment", default=None, help="preset: cifar, flowers, svgg-scheme1 "
                        "(default: cifar for images up to 64x64, else flowers)")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per figure (median)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--no-layers", action="store_true",
                        help="skip (d), the augmentation layers measured alone")
    parser.add_argument("--variants", default="per-example,batch-first,cached,decode",
                        help="comma-separated subset of per-example, batch-first, cached, decode")
    parser.add_argument("--processes", type=int, default=0,
                        help="decoding worker processes for batch-first (Pipeline(processes=N); default 0)")
    parser.add_argument("--also", default=None, metavar="DATA2",
                        help="the same images elsewhere (e.g. the shards in a bucket, s3://B/P): batch-first timed "
                             "on it too, interleaved with DATA, and the ratio printed")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of every figure")


# === (a) the per-example pipeline a user would write ===


def _pillow_decode(blob):
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as img:
        return np.asarray(img.convert("RGB"))


def _augment_one(image, preset, rng, mean, std):
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if preset == "cifar":
        padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="reflect")
        r, c = rng.integers(0, 9, 2)
        image = padded[r : r + image.shape[0], c : c + image.shape[1]]
    elif preset == "flowers":
        x = image.astype(np.float32)
        gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
        image = np.clip(gray[..., None] + rng.uniform(0.6, 1.4) * (x - gray[..., None]), 0, 255)
    return (image.astype(np.float32) - mean) / std


def per_example_epoch(source, order, batch_size, preset, rng, mean, std):
    n = 0
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]
        batch = np.stack([_augment_one(_pillow_decode(b), preset, rng, mean, std)
                          for b in source.encoded_many(idx)])
        n += len(batch)
    return n


# === (b) batch-first ===


def jitted_augmentation(preset, shape, mean, std):
    """A jitted function (uint8 batch, seed state) -> (float32 batch, new state)."""
    import jax
    import keras

    from layerkit.augment import FeatureNormalization, augmentation

    model = keras.Sequential([keras.Input(shape, dtype="uint8"), *augmentation(preset, seed=0),
                              FeatureNormalization(mean=mean.tolist(), std=std.tolist())])
    trainable = [v.value for v in model.trainable_variables]
    state = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def step(state, x):
        return model.stateless_call(trainable, state, x, training=True)

    return step, state


def batch_first_epoch(pipeline, step, state):
    n, out = 0, None
    for x, _ in pipeline:
        if out is not None:
            out.block_until_ready()
        out, state = step(state, x)
        n += len(x)
    out.block_until_ready()
    return n, state


def _median_rate(run, repeats):
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = run()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def run(args):
    import jax

    from layerkit.data.decode import decode_batch, decode_image
    from layerkit.data.pipeline import Pipeline
    from layerkit.data.sources import Subset, open_dataset

    if args.images < 1 or args.repeats < 1:
        raise ValueError(f"--images and --repeats must be positive. Received: {args.images}, "
                         f"{args.repeats}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - {"per-example", "batch-first", "cached", "decode"}
    if unknown or not variants:
        raise ValueError(f"--variants takes per-example, batch-first, cached, decode. Received: {args.variants!r}")
    full = open_dataset(args.data, args.split)
    if not hasattr(full, "encoded_many"):
        raise ValueError(f"{args.data}: holds decoded arrays; this benchmark needs encoded images")
    source = Subset(full, np.arange(min(args.images, len(full))))
    shape = decode_image(source.encoded_many([0])[0]).shape
    small = shape[0] * shape[1] <= 64 * 64
    batch_size = args.batch_size or (256 if small else 64)
    preset = args.augment or ("cifar" if small else "flowers")
    n = len(source)
    rng = np.random.default_rng(0)
    cores = os.cpu_count()
    print(f"pipeline benchmark: {args.data} ({n} images of {shape[1]}x{shape[0]}, batch "
          f"{batch_size}, augment {preset!r}), {cores} cores, jax {jax.__version__} on "
          f"{jax.default_backend()}, median of {args.repeats} interleaved epochs, load average "
          f"(1 min) {os.getloadavg()[0]:.1f}", flush=True)

    # Normalisation statistics from a sample (both pipelines use the same).
    sample = decode_batch(source.encoded_many(np.arange(min(n, 1024))), threads=1)
    mean = sample.reshape(-1, 3).mean(0).astype(np.float32)
    std = sample.reshape(-1, 3).std(0).astype(np.float32)

    order = rng.permutation(n)
    step, state = jitted_augmentation(preset, shape, mean, std)
    holder = {"state": state}

    def epoch(pipeline):
        count, holder["state"] = batch_first_epoch(pipeline, step, holder["state"])
        return count

    runs = {}
    if "per-example" in variants:
        runs["per-example"] = lambda: per_example_epoch(source, order, batch_size, preset, rng, mean, std)
    pipes = []
    if "batch-first" in variants:
        decoding = Pipeline(source, batch_size, seed=0, cache_decoded=False, processes=args.processes)
        pipes.append(decoding)
        epoch(decoding)  # compiles the augmentation (and starts any worker processes)
        runs["batch-first"] = lambda: epoch(decoding)
    also = {}
    if args.also:
        if "batch-first" not in variants:
            raise ValueError("--also times the batch-first variant: keep batch-first in --variants")
        from layerkit.records import shardbytes

        fetched = shardbytes.CACHE.fetched  # from the opening on (a first image decoded for its shape)
        start = time.perf_counter()
        other_full = open_dataset(args.also, args.split)
        also["open_s"] = time.perf_counter() - start
        if len(other_full) < n:
            raise ValueError(f"--also {args.also} holds {len(other_full)} images, fewer than the {n} timed")
        other = Pipeline(Subset(other_full, np.arange(n)), batch_size, seed=0, cache_decoded=False,
                         processes=args.processes)
        pipes.append(other)
        start = time.perf_counter()
        also["first_epoch"] = epoch(other) / (time.perf_counter() - start)  # every block fetched in it
        also["fetched_mb"] = (shardbytes.CACHE.fetched - fetched) / 1e6
        runs["also"] = lambda: epoch(other)
    if "cached" in variants:
        cached = Pipeline(source, batch_size, seed=0, cache_decoded=True)
        pipes.append(cached)
        epoch(cached)  # fills the cache
        runs["cached"] = lambda: epoch(cached)
    if "decode" in variants:
        blobs = source.encoded_many(np.arange(n))

        def decode_only(threads):
            return sum(len(decode_batch(blobs[i : i + batch_size], threads=threads))
                       for i in range(0, n - batch_size + 1, batch_size))

        runs.update({f"decode {t}": (lambda t=t: decode_only(t)) for t in sorted({1, cores})})
    # Interleaved, one epoch of each per round, so a change in the machine's load falls on all.
    rates = {name: [] for name in runs}
    loads = []
    for _ in range(args.repeats):
        for name, fn in runs.items():
            rates[name].append(_median_rate(fn, 1))
        loads.append(os.getloadavg()[0])
    rate = {name: statistics.median(r) for name, r in rates.items()}
    for pipe in pipes:
        pipe.close()

    if "per-example" in rate:
        print(f"(a) per-example: Pillow decode, numpy augment + normalise per image, stack: "
              f"{rate['per-example']:,.0f} images/s")
    if "batch-first" in rate:
        print(f"(b) batch-first: batched decode every epoch, jitted augment + normalise: "
              f"{rate['batch-first']:,.0f} images/s"
              + (f" ({args.processes} decoding processes)" if args.processes else ""))
    if "also" in rate:
        ratios = [b / a for a, b in zip(rates["batch-first"], rates["also"])]
        print(f"    batch-first on {args.also}: {rate['also']:,.0f} images/s; its first epoch "
              f"{also['first_epoch']:,.0f} images/s ({also['fetched_mb']:.1f} MB of blocks fetched by then); "
              f"opened in {also['open_s']:.2f} s")
        print(f"    {args.also} / {args.data} per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    if "cached" in rate:
        print(f"    batch-first, decoded once and cached: {rate['cached']:,.0f} images/s")
    if "decode" in variants:
        bounds = {t: rate[f"decode {t}"] for t in sorted({1, cores})}
        print("(c) decode bound (decode_batch alone): " + ", ".join(
            f"{t} thread{'s' if t > 1 else ''} {r:,.0f}" for t, r in bounds.items()) + " images/s")
        if "batch-first" in rate:
            print(f"    batch-first / decode bound: {rate['batch-first'] / max(bounds.values()):.2f}", flush=True)

    if not args.no_layers:
        _augment_layers(shape, batch_size, preset, mean, std, args.repeats)
    print(f"load average (1 min) per round: {', '.join(f'{v:.1f}' for v in loads)} on {cores} cores")
    result = {"data": str(args.data), "images": n, "batch_size": batch_size, "augment": preset,
              "processes": args.processes, "cores": cores, "loadavg_1min": loads,
              "images_per_s": {k: [round(v) for v in r] for k, r in rates.items()},
              "median_images_per_s": {k: round(v) for k, v in rate.items()}}
    if "per-example" in rate and "batch-first" in rate:
        ratios = [b / a for a, b in zip(rates["per-example"], rates["batch-first"])]
        result["speedup_per_round"] = [round(r, 2) for r in ratios]
        print(f"speedup per round: {', '.join(f'{r:.2f}' for r in ratios)} "
              f"(spread {min(ratios):.2f}-{max(ratios):.2f})")
    if "also" in rate:
        result["also"] = {"data": args.also, "first_epoch_images_per_s": round(also["first_epoch"]),
                          "first_epoch_fetched_mb": round(also["fetched_mb"], 1), "open_s": round(also["open_s"], 3),
                          "ratio": round(rate["also"] / rate["batch-first"], 3)}
    if args.json:
        print(json.dumps(result), flush=True)
    if "also" in rate:
        print(f"ratio {args.also} vs {args.data} (batch-first, median): {rate['also'] / rate['batch-first']:.2f}")
    if "per-example" in rate and "batch-first" in rate:
        print(f"speedup batch-first/per-example: {rate['batch-first'] / rate['per-example']:.2f}")
    return 0


def _augment_layers(shape, batch_size, preset, mean, std, repeats):
    """(d) images/s of the augmentation layers alone, jitted, on one resident uint8 batch."""
    import jax
    import keras

    from layerkit.augment import Cutout, RandomAffine, RandomReflectCrop, RandomReflectTranslate

    x = jax.device_put(np.random.default_rng(0).integers(0, 256, (batch_size, *shape), np.uint8))
    layers = {
        f"preset {preset} + normalise": None,
        "RandomReflectCrop(4)": lambda: RandomReflectCrop(4, seed=0),
        "RandomReflectTranslate(0.125)": lambda: RandomReflectTranslate(0.125, seed=0),
        "Cutout(8)": lambda: Cutout(8, seed=0),
        "RandomAffine(15, 0.1, 0.1)": lambda: RandomAffine(15, 0.1, 0.1, seed=0),
        "keras RandomFlip": lambda: keras.layers.RandomFlip("horizontal", seed=0),
        # RandomSaturation refuses uint8 input: a cast first (RandomFlip casts in the presets)
        "keras RandomSaturation": lambda: [keras.layers.Rescaling(1.0), keras.layers.RandomSaturation(
            (0.3, 0.7), value_range=(0, 255), seed=0)],
    }
    figures = []
    for name, make in layers.items():
        if make is None:
            step, state = jitted_augmentation(preset, shape, mean, std)
        else:
            made = make()
            made = made if isinstance(made, list) else [made]
            model = keras.Sequential([keras.Input(shape, dtype="uint8"), *made])
            state = [v.value for v in model.non_trainable_variables]
            step = jax.jit(lambda s, x, m=model: m.stateless_call([], s, x, training=True))
        holder = {"state": state}

        def loop():
            out = None
            for _ in range(20):
                out, holder["state"] = step(holder["state"], x)
            out.block_until_ready()
            return 20 * batch_size

        loop()  # compile
        figures.append(f"{name} {_median_rate(loop, repeats):,.0f}")
    print(f"(d) augmentation layers alone (jit, CPU, batch {batch_size}, images/s): "
          + "; ".join(figures), flush=True)
