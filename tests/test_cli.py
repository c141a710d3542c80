"""The command line: it lists its commands and turns bad input into one clear line."""

import pytest

from layerkit.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--recipe", "nope"], "Valid recipes:"),
    (["train", "--smoke", "lrr=0.1"], "Unknown config key 'lrr'. Valid keys:"),
    (["train", "--smoke", "epochs=many"], "'epochs' expects int. Received: 'many'"),
    (["train", "--resume"], "--resume needs --out DIR"),
    (["models", "resnet-33"], "Received: depth=33"),
    (["models", "vgg19"], "Unknown model 'vgg19'. Valid names:"),
    (["models", "wrn-40-2", "--input-shape", "32x32"], "--input-shape must look like 32x32x3"),
])
def test_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_recipes_lists_recipes_and_keys(capsys):
    assert main(["recipes"]) == 0
    assert "wrn-40-2-cifar10" in capsys.readouterr().out
    assert main(["recipes", "--keys"]) == 0
    assert "label_smoothing" in capsys.readouterr().out


def test_models_summary(capsys):
    assert main(["models", "wrn-16-1", "--input-shape", "8x8x3"]) == 0
    assert "group0 (WideResidualGroup)" in capsys.readouterr().out
