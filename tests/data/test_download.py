"""The explicit download: checksum checked, shards written where open_dataset finds them.

No network: the "remote" is a local file:// URL of a CIFAR-10-format tarball.
"""

import tarfile

import pytest

from layerkit.data.download import Remote, download, sha256_of
from layerkit.data.sources import open_dataset
from tests.records.test_records import make_cifar


@pytest.fixture
def tarball(tmp_path):
    root = tmp_path / "src" / "cifar-10-batches-py"
    make_cifar(root, n=4)
    tgz = tmp_path / "src" / "cifar-10-python.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(root, arcname="cifar-10-batches-py")
    return tgz


def test_download_writes_shards_that_open_dataset_finds(tarball, tmp_path):
    remote = Remote(tarball.as_uri(), sha256_of(tarball), "cifar-10-python.tar.gz", {"train": 2, "test": 1})
    root = download("cifar10", tmp_path / "data", remote)
    assert (root / "cifar-10-python.tar.gz").is_file()
    train = open_dataset("cifar10", "train", data_dir=tmp_path / "data")
    test = open_dataset("cifar10", "test", data_dir=tmp_path / "data")
    assert (len(train), len(test)) == (20, 4)
    assert train.classes[0] == "airplane"


def test_checksum_mismatch_discards_the_file(tarball, tmp_path):
    remote = Remote(tarball.as_uri(), "0" * 64, "cifar-10-python.tar.gz", {"test": 1})
    with pytest.raises(ValueError, match="SHA-256 mismatch: expected 0{64}, received"):
        download("cifar10", tmp_path / "data", remote)
    assert not list((tmp_path / "data" / "cifar10").iterdir())  # nor its temporary file


def test_unreachable_source_says_how_to_provide_the_file(tmp_path):
    remote = Remote((tmp_path / "missing.tar.gz").as_uri(), "0" * 64, "cifar-10-python.tar.gz", {"test": 1})
    with pytest.raises(ConnectionError, match="copy the file to .*cifar-10-python.tar.gz yourself"):
        download("cifar10", tmp_path / "data", remote)


def test_unknown_name():
    with pytest.raises(ValueError, match="Downloadable: cifar10"):
        download("imagenet", "/tmp/nowhere")
