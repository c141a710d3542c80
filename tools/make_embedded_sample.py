"""Make the embedded CIFAR-10 sample shipped inside the package (run once; output committed).

    python tools/make_embedded_sample.py ../shared/data/cifar10 src/layerkit/data/embedded

Takes a seeded, class-balanced random selection (500 train and 100 test images per
class) from the shared JPEG CIFAR-10 packs, keeping each image's original JPEG bytes,
and writes two packs in the same `.npz` format, shuffled.
"""

import sys
from pathlib import Path

import numpy as np

from layerkit.data.npz import load_npz

PER_CLASS = {"train": 500, "test": 100}
SEED = 20261123


def sample(src: Path, split: str, per_class: int, rng) -> dict:
    pack = load_npz(src / f"{split}.npz")
    chosen = np.concatenate([
        rng.choice(np.flatnonzero(pack.labels == c), per_class, replace=False)
        for c in range(len(pack.classes))
    ])
    rng.shuffle(chosen)
    blobs = [pack.encoded(i) for i in chosen]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    return dict(
        jpeg=np.frombuffer(b"".join(blobs), np.uint8),
        offsets=offsets,
        labels=pack.labels[chosen].astype(np.uint8),
        classes=np.array(pack.classes),
    )


def main(src, out):
    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for split, n in PER_CLASS.items():
        arrays = sample(src, split, n, rng)
        np.savez(out / f"cifar10-{split}.npz", **arrays)
        print(split, len(arrays["labels"]), arrays["jpeg"].nbytes, "bytes")


if __name__ == "__main__":
    main(*sys.argv[1:3])
