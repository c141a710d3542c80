"""The embedded default data: a class-balanced real sample of the JPEG CIFAR-10.

5,000 train and 1,000 test images (500 and 100 per class), original JPEG bytes,
made by ``tools/make_embedded_sample.py``; ships inside the package, no download.
"""

from importlib import resources

from layerkit.data.npz import EncodedImages, load_npz

SPLITS = ("train", "test")


def load(split: str = "train") -> EncodedImages:
    if split not in SPLITS:
        raise ValueError(f"The embedded sample has splits {SPLITS}. Received: split={split!r}")
    ref = resources.files("layerkit.data") / "embedded" / f"cifar10-{split}.npz"
    with resources.as_file(ref) as path:
        return load_npz(path)
