"""A real run on the embedded sample leaves every artefact, well-formed."""

import csv
import json
import numpy as np
import pytest
from PIL import Image

from layerkit.saving import load_model
from layerkit.training import apply_overrides, get_recipe, train
from layerkit.training.run import RunError

from tests.conftest import tensorboard_scalars


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = apply_overrides(get_recipe("sample", smoke_run=True), ["epochs=2", "tta=true"])
    results = train(config, out, verbose=0)
    return out, results


def test_every_artefact_is_written(run_dir):
    out, results = run_dir
    for name in ("config.json", "run.json", "classes.json", "history.csv", "state.json", "best.keras",
                 "last.keras", "results.json", "report.md", "confusion_matrix.csv", "per_class_accuracy.csv"):
        assert (out / name).is_file(), name
    for png in ("accuracy", "loss", "lr", "samples", "samples_augmented", "predictions_correct",
                "predictions_incorrect", "confusion_matrix"):
        with Image.open(out / f"{png}.png") as img:
            img.verify()
        assert f"({png}.png)" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "model graph" in report or (out / "model.png").is_file()


def test_history_csv_has_a_row_per_epoch_with_lr_and_speed(run_dir):
    out, _ = run_dir
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # 1-based, as everywhere
    for col in ("accuracy", "loss", "val_accuracy", "val_loss", "lr", "images_per_sec"):
        assert all(float(r[col]) >= 0 for r in rows), col
    assert float(rows[0]["lr"]) != float(rows[1]["lr"])  # the one-cycle schedule moved


def test_tensorboard_events_hold_the_epoch_scalars(run_dir):
    out, _ = run_dir
    files = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    scalars = tensorboard_scalars(out / "tensorboard")  # TensorBoard's own reader
    assert [s for s, _ in scalars["val_accuracy"]] == [1, 2]
    history = list(csv.DictReader(open(out / "history.csv")))
    np.testing.assert_allclose([v for _, v in scalars["loss"]], [float(r["loss"]) for r in history], rtol=1e-6)


def test_results_and_checkpoints(run_dir):
    out, results = run_dir
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for key in ("test_accuracy_final", "test_accuracy_best", "test_accuracy_final_tta", "best_epoch"):
        assert key in saved
    assert 0 <= saved["test_accuracy_final"] <= 1 and saved["test_images"] == 16
    model = load_model(out / "last.keras")
    assert model.count_params() == saved["parameters"]
    state = json.loads((out / "state.json").read_text())
    assert state["epochs_completed"] == 2 and state["best_epoch"] in (1, 2)
    matrix = np.loadtxt(out / "confusion_matrix.csv", delimiter=",", dtype=int)
    assert matrix.shape == (10, 10) and matrix.sum() == 16
    assert np.trace(matrix) / 16 == pytest.approx(saved["test_accuracy_final"])


def test_evaluate_and_predict_commands(run_dir, tmp_path, capsys):
    from layerkit.cli import main
    from layerkit.data import embedded

    out, results = run_dir
    assert main(["evaluate", str(out), "--weights", "last"]) == 0
    assert f"{results['test_accuracy_final']:.4f}" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--weights", "best"]) == 0  # the file, loaded anew, agrees
    assert f"{results['test_accuracy_best']:.4f}" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--weights", "best", "--tta", "flip"]) == 0  # finish()'s one TTA model
    assert f"{results['test_accuracy_best_tta']:.4f}" in capsys.readouterr().out  # served the best weights too
    img = tmp_path / "x.jpg"
    img.write_bytes(embedded.load("test").encoded(0))
    assert main(["predict", str(out), str(img), "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    names = json.loads((out / "classes.json").read_text())
    assert line.startswith(str(img)) and sum(n in line for n in names) == 2
    assert main(["evaluate", str(tmp_path)]) == 2  # not a run directory: a clear error, exit 2
    assert "not a layerkit run directory" in capsys.readouterr().err


def test_evaluate_and_predict_a_checkpoint_with_garbage_weights_is_one_line_exit_2(run_dir, tmp_path, capsys):
    import shutil
    import zipfile

    from layerkit.cli import main
    from layerkit.data import embedded

    out = shutil.copytree(run_dir[0], tmp_path / "run")
    best = out / json.loads((out / "state.json").read_text())["best"]
    with zipfile.ZipFile(best) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["model.weights.h5"] = b"garbage" * 100
    best.unlink()
    with zipfile.ZipFile(best, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    img = tmp_path / "x.jpg"
    img.write_bytes(embedded.load("test").encoded(0))
    for argv in (["evaluate", str(out)], ["predict", str(out), str(img)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "file signature not found" in err and len(err.strip().splitlines()) == 1, err


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(run_dir, tmp_path):
    out, _ = run_dir
    with pytest.raises(RunError, match="already holds a run") as err:
        train(get_recipe("sample", smoke_run=True), out)
    assert "resume=True" in str(err.value) and "--resume" not in str(err.value)  # Python speaks Python
    assert "--resume" in err.value.cli and "--out" in err.value.cli  # the CLI its flags
    with pytest.raises(RunError, match="no run"):
        train(None, tmp_path / "empty", resume=True)


def test_a_start_that_failed_before_any_epoch_can_be_retried(tmp_path):
    from layerkit.training.rundir import MARKER

    config = apply_overrides(get_recipe("sample", smoke_run=True), ["data=/no/such/pack.npz"])
    with pytest.raises(FileNotFoundError):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # the data is checked before the folder is made
    (tmp_path / "run").mkdir()  # a folder the user made stays as it was
    with pytest.raises(FileNotFoundError):
        train(config, tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []
    # a start layerkit made that never completed an epoch (its marker, no state.json) is claimed
    # afresh: its checkpoint files go, a file layerkit did not write stays
    run = tmp_path / "run"
    (run / MARKER).write_text("{}")
    (run / "config.json").write_text("{}")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "epoch-0001.keras").write_bytes(b"partial")
    (run / "checkpoints" / "notes.txt").write_text("mine")
    retry = apply_overrides(get_recipe("sample", smoke_run=True), ["steps_per_epoch=1", "test_limit=32",
                                                                  "report=false"])
    assert train(retry, tmp_path / "run", verbose=0)["epochs"] == 1
    assert (run / "checkpoints" / "notes.txt").read_text() == "mine"
    assert json.loads((run / "config.json").read_text())["steps_per_epoch"] == 1
