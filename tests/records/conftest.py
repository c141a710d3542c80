from importlib import resources

import pytest

from layerkit.records import write_records


@pytest.fixture()
def embedded_pack():
    """The embedded test sample's file: 1,000 real CIFAR-10 JPEGs, 100 per class."""
    with resources.as_file(resources.files("layerkit.data") / "embedded" / "cifar10-test.npz") as pack:
        yield pack


@pytest.fixture()
def written(tmp_path, embedded_pack):
    """The embedded test sample as 3 shards of 333, 334, 333 records."""
    write_records(embedded_pack, tmp_path / "o", shards=3, seed=1)
    return tmp_path / "o"
