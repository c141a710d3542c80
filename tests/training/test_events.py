"""Our TensorBoard event files, read by TensorBoard's own reader."""

import os
from pathlib import Path

from layerkit.training.events import EventWriter
from tests.conftest import tensorboard_scalars


def test_a_resumed_session_replaces_the_points_of_the_killed_one(tmp_path):
    first = EventWriter(tmp_path, first_step=1)
    first.scalars(1, {"loss": 1.0, "lr": 0.1})
    first.scalars(2, {"loss": 2.0, "lr": 0.2})  # epoch 2 logged, then killed before its checkpoint
    os.rename(first.path, tmp_path / "events.out.tfevents.1000.host.1")  # the older file sorts first
    second = EventWriter(tmp_path, first_step=2)  # --resume: epoch 2 again
    second.scalars(2, {"loss": 2.5, "lr": 0.2})
    second.scalars(3, {"loss": 3.0, "lr": 0.3})
    scalars = tensorboard_scalars(tmp_path)
    assert scalars["loss"] == [(1, 1.0), (2, 2.5), (3, 3.0)]
    assert [s for s, _ in scalars["lr"]] == [1, 2, 3]
    assert sorted(p.name for p in Path(tmp_path).iterdir())[0] == "events.out.tfevents.1000.host.1"
