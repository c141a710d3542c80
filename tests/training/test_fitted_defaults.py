"""A newcomer's folder: a bare `layerkit train --data FOLDER` trains any folder from 2 images a
class up (batch, image size and model fitted to the data, said in the first lines); a messy
folder's problems come in one run, each with a fix that works; progress comes when stdout is a file.

The runs are CLI subprocesses kept short: one epoch on a few dozen images of about 32 px, fast
compilation, no report unless the test is about it."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layerkit.data.npz import load_npz

FLOWERS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "flowers" / "train.npz"
CHEAP = ["--epochs", "1", "fast_compile=true", "report=false", "tta=none"]


def _photos(n):
    """`n` real photos (flowers where ../shared/data has them, else the embedded CIFAR-10 sample)."""
    if FLOWERS.exists():
        pack = load_npz(FLOWERS)
    else:
        from layerkit.data import embedded

        pack = embedded.load("train")
    data, offsets = pack.data, pack.offsets
    return [Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB") for i in range(n)]


def make_folder(root, per_class, classes=("daisy", "roses", "tulips", "sunflowers", "dandelion"), mixed=True):
    """class folders of JPEGs; `mixed`: sizes vary from 24 to 48 px a side (as a phone's crops do)."""
    photos = _photos(per_class * len(classes))
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            h, w = (int(v) for v in rng.integers(24, 49, 2)) if mixed else (32, 32)
            photos[c * per_class + k].resize((w, h)).save(root / name / f"{k:04d}.jpg", quality=85)
    return root


def layerkit(*args, env=None, cwd=None, stdout=subprocess.PIPE, timeout=600):
    return subprocess.run([sys.executable, "-m", "layerkit.cli", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("per_class, limits", [(2, []), (20, []), (200, ["train_limit=64", "test_limit=32"])],
                         ids=["10-photos", "100-photos", "1000-photos"])
def test_a_bare_run_trains_any_folder_and_says_what_it_chose(tmp_path, per_class, limits):
    folder = make_folder(tmp_path / "my-photos", per_class, mixed=per_class > 2)
    proc = layerkit("train", "--data", "my-photos", *CHEAP, *limits, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("my-photos-2")  # named after the data, not the default recipe
    config = json.loads((run / "config.json").read_text())
    results = json.loads((run / "results.json").read_text())
    # what was chosen, in the first lines, with how to override it; the record holds it
    assert f"data {folder}: {5 * per_class} images in 5 classes" in err
    assert f"batch_size={config['batch_size']} (" in err and "pass --batch-size B to choose" in err
    assert f"image_size={config['image_size']} (" in err and "set image_size=N to choose" in err
    assert "model=airbench94 model_options.widths=[16, 64, 64]" in err and "pass --model M to choose" in err
    assert config["model"] == "airbench94" and config["model_options"] == {"widths": [16, 64, 64]}
    assert config["data"] == str(folder) and results["data"]["path"] == str(folder)
    assert json.loads((run / "run.json").read_text())["data"]["path"] == str(folder)
    assert config["batch_size"] >= 2 and results["splits"]["train"]["images"] >= config["batch_size"]
    if per_class > 2:
        assert "sizes from" in err and config["image_size"] == 32  # mixed sizes: the median shorter side
    else:
        assert config["image_size"] == 32 and "validation: none (no class" in err  # 1 training image a class
    for key in ("train_limit", "test_limit"):
        value = dict(o.split("=") for o in limits).get(key)
        assert results["data"].get(key) == (int(value) if value else None)
        if value:
            assert f"{key}={value}" in err
    assert "Epoch 1/1" in proc.stdout  # a header also for one epoch


def _fixes(err):
    return [line.split("fix: ", 1)[1] for line in err.splitlines() if line.strip().startswith("fix: ")]


def test_a_messy_folder_reports_every_problem_in_one_run_and_each_fix_works(tmp_path):
    folder = make_folder(tmp_path / "messy", 6)
    (folder / "empty").mkdir()  # an empty class folder
    (folder / "daisy" / "0000.jpg").write_bytes((folder / "daisy" / "0000.jpg").read_bytes()[:300])  # truncated
    os.mkfifo(folder / "roses" / "fifo.jpg")  # named like an image: a bad image, never opened to block
    for extra in list((folder / "tulips").iterdir())[1:]:
        extra.unlink()  # a class of one image: none left to test on
    args = ["train", "--data", folder, "--out", tmp_path / "run", "--batch-size", "256", *CHEAP]
    proc = layerkit(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    err = proc.stderr
    assert "4 problems, found in one pass over the data; nothing was trained" in err
    assert f"{folder / 'empty'}: class folder holds no images" in err
    assert f"{folder / 'daisy' / '0000.jpg'}: not a decodable image" in err
    assert f"{folder / 'roses' / 'fifo.jpg'}: expected an image file (a regular file), found a FIFO" in err
    assert "class 'tulips' (1)" in err and "fewer than 2 usable images" in err
    assert "batch_size=256" in err and "make no full batch" in err
    assert "images differ" not in err  # mixed sizes are no problem: image_size=0 fits them
    assert not (tmp_path / "run").exists()
    fixes = _fixes(err)
    assert len(fixes) == 4, fixes
    # Apply each suggested fix, one at a time: each makes its problem go, and then the run trains.
    overrides = []
    for fix in fixes:
        if fix.startswith("add images to an empty class folder or remove it"):
            (folder / "empty").rmdir()
        elif "on_bad_image=skip" in fix:
            overrides.append("on_bad_image=skip")
        elif fix.startswith("add images to those classes (or remove their folders)"):
            shutil.rmtree(folder / "tulips")
        else:
            batch = re.match(r"pass --batch-size (\d+) \(or batch_size=0", fix)
            assert batch, fix
            args[args.index("--batch-size") + 1] = batch.group(1)
        proc = layerkit(*args, *overrides)
        left = len(_fixes(proc.stderr))
        assert left == len(fixes) - 1 - fixes.index(fix), proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["splits"]["skipped"]["images"] == 2


def test_a_suggested_batch_size_for_an_explicit_recipe_works(tmp_path):
    folder = make_folder(tmp_path / "photos", 4, classes=("a", "b"), mixed=False)
    proc = layerkit("train", "--recipe", "cnn-flowers", "--data", folder, "--out", tmp_path / "run", *CHEAP)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (fix,) = _fixes(proc.stderr)  # cnn-flowers' batch of 64 on 4 training images
    assert "drop_remainder" not in proc.stderr
    batch = re.match(r"pass --batch-size (\d+)", fix).group(1)
    proc = layerkit("train", "--recipe", "cnn-flowers", "--data", folder, "--out", tmp_path / "run", *CHEAP,
                    "--batch-size", batch)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_progress_lines_come_when_stdout_is_a_file_and_evaluate_names_the_epoch(tmp_path):
    """A line at least every LAYERKIT_PROGRESS_SECONDS (here 0.2 s; 20 s by default) while an epoch
    and the final evaluation run, stamped as they reach the file."""
    log = tmp_path / "stdout.txt"
    run = tmp_path / "run"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "layerkit.cli", "train", "--smoke", "--out", str(run),
                                 "report=false"], stdout=out, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "LAYERKIT_PROGRESS_SECONDS": "0.2"})
        stamped, seen = [], 0
        while proc.poll() is None:
            text = log.read_text()
            lines = text.split("\n")[:-1]  # whole lines only
            stamped += [(time.monotonic(), line) for line in lines[seen:]]
            seen = len(lines)
            time.sleep(0.05)
        err = proc.stderr.read()
    assert proc.returncode == 0, err[-3000:]
    stamped += [(time.monotonic(), line) for line in log.read_text().split("\n")[seen:] if line]
    lines = [line for _, line in stamped]
    assert "Epoch 1/1" in lines  # the epoch header, also with one epoch
    # The epoch (which compiles the step) lasts seconds: several heartbeat lines. The final
    # evaluation can end within 0.2 s (seen on CI with warm compilation caches): its title line
    # at least. While either runs, no gap of 10 s or more between lines (every 0.2 s, with room
    # for a loaded machine), from its first line to the first line of what comes next.
    for phase, beats_at_least in (("epoch 1/1: step", 2), ("final evaluation: end-of-training weights", 0)):
        at = [i for i, (_, line) in enumerate(stamped) if line.lstrip().startswith(phase)]
        beats = [i for i in at if stamped[i][1].startswith("  ")]
        assert at and len(beats) >= beats_at_least, (phase, lines)
        times = [t for t, _ in stamped[at[0]:at[-1] + 2]]
        assert max(np.diff(times)) < 10, (phase, np.diff(times))
    assert any("6view TTA" in line for line in lines)  # TTA is a phase of its own

    # evaluate on a run that has not finished: which epoch's weights, and no mention of state.json
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "epochs": 3}))
    (run / "results.json").unlink()
    proc = layerkit("evaluate", run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best weights (epoch 1; the run has trained 1 of its 3 epochs so far)" in proc.stdout
    (run / "state.json").unlink()
    proc = layerkit("evaluate", run)
    assert proc.returncode == 2 and "state.json" not in proc.stderr
    assert "no epoch of it has finished yet" in proc.stderr
