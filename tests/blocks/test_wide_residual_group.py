import pytest

from layerkit.blocks import WideResidualGroup
from tests.layer_checks import check_layer


def test_group_contract(tmp_path):
    # block 0: BN(16) + 3x3 16->32 + BN(32) + 3x3 32->32 + 1x1 projection 16->32
    first = 4 * 16 + 9 * 16 * 32 + 4 * 32 + 9 * 32 * 32 + 16 * 32
    # block 1: BN(32) + 3x3 32->32 + BN(32) + 3x3 32->32
    other = 4 * 32 + 9 * 32 * 32 + 4 * 32 + 9 * 32 * 32
    model = check_layer(lambda: WideResidualGroup(32, 2, strides=2, dropout=0.3),
                        (8, 8, 16), first + other, (4, 4, 32), tmp_path)
    group = model.layers[0]
    assert [b.strides for b in group.residuals] == [(2, 2), (1, 1)]
    assert all(b.preactivation and b.dropout == 0.3 for b in group.residuals)


@pytest.mark.parametrize("kwargs, name", [(dict(filters=8, blocks=0), "blocks"),
                                          (dict(filters=8, blocks=2, dropout=-0.1), "dropout")])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        WideResidualGroup(**kwargs)
