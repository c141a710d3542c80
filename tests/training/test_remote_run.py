"""Runs in a bucket (moto's S3 server, fake-gcs-server, on 127.0.0.1): `layerkit train --out
s3://…`, SIGKILL at every stage of a commit's copy to the bucket, resume on a "new machine" (a
fresh staging folder) each time; the final weights equal the uninterrupted local run's; a
second trainer into the same bucket run is refused."""

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from layerkit import storage
from layerkit.saving import load_model
from layerkit.training import apply_overrides, get_recipe, train
from layerkit.training.checkpoints import FAULT_ENV, REMOTE_STAGES
from layerkit.training.remote import LEASE_ENV

EPOCHS = 3
OVERRIDES = [f"epochs={EPOCHS}", "train_limit=256", "test_limit=64", "batch_size=32", "report=false",
             "warmup_epochs=1"]
LEASE = "2"

CHAIN = [
    ("kill@uploaded:1", 0),          # its files uploaded, the manifest not: not committed
    ("kill@remote-committed:1", 1),  # the manifest uploaded: committed; last/best copies not made
    ("kill@uploaded:2", 1),          # epoch 2's files uploaded, its manifest not (after a resume from the bucket)
    ("random", None),                # a random moment after the second epoch's commit
]


def _weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.variables] + [
        keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]


def _remote_weights(url, tmp_path, name):
    local = tmp_path / f"{name}-{random.random()}.keras"
    storage.download(storage.join(url, name), local)
    return _weights(load_model(local))


def _done(url):
    try:
        return json.loads(storage.read(storage.join(url, "state.json")))["epochs_completed"]
    except FileNotFoundError:
        return 0


def _start(url, resume, fault="", lease=LEASE):
    cmd = [sys.executable, "-m", "layerkit.cli", "train", "--out", url]
    cmd += ["--resume"] if resume else ["--smoke", *OVERRIDES]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", FAULT_ENV: fault, LEASE_ENV: lease}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def test_the_chain_covers_the_copy_to_the_bucket():
    assert {f.split("@")[1].split(":")[0] for f, _ in CHAIN if "@" in f} >= set(REMOTE_STAGES)


def test_sigkill_anywhere_then_resume_from_the_bucket_equals_uninterrupted(tmp_path, s3_bucket):
    url = storage.join(s3_bucket, "runs", "killed")
    config = apply_overrides(get_recipe("sample", smoke_run=True), OVERRIDES)
    whole = train(config, tmp_path / "whole", verbose=0)

    for i, (fault, expected) in enumerate(CHAIN):
        if fault == "random":
            proc = _start(url, resume=True)
            deadline = time.time() + 600
            while _done(url) < 2 and proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(random.Random(0).uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
        else:
            proc = _start(url, resume=i > 0, fault=fault)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == -signal.SIGKILL, (fault, err.decode()[-3000:])
        if expected is not None:
            assert _done(url) == expected, fault
        else:
            assert 2 <= _done(url) < EPOCHS, "the random kill landed after the run"

    # as a launch killed after uploading a step checkpoint it never committed would leave it
    storage.write(storage.join(url, "checkpoints", "step-00000099.keras"), b"uncommitted")
    proc = _start(url, resume=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "lapsed" in err.decode()  # the killed run's lease was taken over, not ignored
    results = json.loads(storage.read(storage.join(url, "results.json")))
    assert results["test_accuracy_final"] == whole["test_accuracy_final"]
    rows = list(csv.DictReader(io.StringIO(storage.read(storage.join(url, "history.csv")).decode())))
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))  # none lost or repeated
    for a, b in zip(_weights(load_model(tmp_path / "whole" / "last.keras")),
                    _remote_weights(url, tmp_path, "last.keras"), strict=True):
        np.testing.assert_array_equal(a, b)
    names = storage.listing(url)
    state = json.loads(storage.read(storage.join(url, "state.json")))
    assert sorted(n for n in names if n.startswith("checkpoints/")) == sorted({state["last"], state["best"]})
    assert {"config.json", "run.json", "history.csv", "best.keras", "last.keras", "results.json"} <= set(names)
    assert any(n.startswith("tensorboard/") for n in names)
    assert not [n for n in names if ".tmp" in n]
    assert not os.listdir(tmp_path / "cache" / "runs") if (tmp_path / "cache" / "runs").exists() else True


def test_a_second_trainer_into_a_bucket_run_is_refused(tmp_path, bucket):
    url = storage.join(bucket, "run")
    cmd = [sys.executable, "-m", "layerkit.cli", "train", "--out", url, "--smoke", *OVERRIDES, "epochs=40"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, LEASE_ENV: "3"})  # long enough to be alive throughout
    deadline = time.time() + 300
    while "config.json" not in storage.listing(url) and time.time() < deadline:
        assert first.poll() is None, first.stderr.read().decode()[-3000:]
        time.sleep(0.1)
    second = subprocess.run([sys.executable, "-m", "layerkit.cli", "train", "--resume", "--out", url],
                            capture_output=True, text=True, timeout=300, env={**os.environ, LEASE_ENV: "3"})
    alive = first.poll() is None
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=300)
    assert alive, err.decode()[-3000:]
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"{url} is in use by another layerkit run" in second.stderr, second.stderr[-3000:]
    assert "renewed its lease" in second.stderr


def test_a_gcs_run_trains_then_evaluate_predict_and_export_read_it_from_the_bucket(tmp_path, _cloud_servers, capsys):
    from layerkit.cli import main

    url = storage.join(_cloud_servers["gs"].make_bucket(), "runs", "one")
    config = apply_overrides(get_recipe("sample", smoke_run=True), ["epochs=2", "report=false"])
    results = train(config, url, verbose=0)
    names = storage.listing(url)
    assert {"state.json", "config.json", "results.json", "best.keras", "last.keras", "history.csv"} <= set(names)
    assert storage.read(storage.join(url, "best.keras")) == storage.read(
        storage.join(url, json.loads(storage.read(storage.join(url, "state.json")))["best"]))
    assert not [p for p in (tmp_path.parent).glob("run-*")]  # (the staging folders live in the runs cache)

    capsys.readouterr()
    assert main(["evaluate", url, "--weights", "last"]) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {results['test_accuracy_final']:.4f}" in out, out
    image = tmp_path / "cat.png"
    keras.utils.save_img(image, np.full((32, 32, 3), 127, np.uint8))
    assert main(["predict", url, str(image)]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: ")
    assert main(["export", url, "--format", "keras"]) == 0
    assert "best-inference.keras" in storage.listing(url)
    exported = storage.join(storage.parent(url), "exports", "m.keras")
    assert main(["export", url, "--format", "keras", "--weights", "last", "--out", exported]) == 0
    assert storage.exists(exported)


def test_a_fresh_start_refuses_a_bucket_folder_holding_other_objects(s3_bucket):
    url = storage.join(s3_bucket, "data")
    storage.write(storage.join(url, "photo.jpg"), b"not layerkit's")
    config = apply_overrides(get_recipe("sample", smoke_run=True), ["epochs=1"])
    from layerkit.training.rundir import RunError

    with pytest.raises(RunError, match=r"is not empty \(photo.jpg\) and holds no layerkit start"):
        train(config, url, verbose=0)
    assert storage.listing(url) == {"photo.jpg": 14}  # nothing written, not even a lock
    with pytest.raises(RunError, match="holds no run to resume"):
        train(None, storage.join(s3_bucket, "nothing"), resume=True, verbose=0)


def test_a_data_url_carrying_a_token_is_refused_before_config_json_could_keep_it():
    with pytest.raises(ValueError, match=r"https://host/b/shards\?\*\*\* carries a user or a query") as err:
        apply_overrides(get_recipe("sample", smoke_run=True), ["data=https://host/b/shards?X-Goog-Signature=s3cr3t"])
    assert "s3cr3t" not in str(err.value)


def test_a_bucket_that_does_not_exist_exits_2_naming_it(bucket, capsys):
    from layerkit.cli import main

    missing = bucket.split("://")[0] + "://no-such-bucket-" + bucket[-6:]
    assert main(["train", "--smoke", "--out", storage.join(missing, "run")]) == 2
    err = capsys.readouterr().err
    assert f"the bucket no-such-bucket-{bucket[-6:]} does not exist" in err, err


def test_the_lease_lock_refuses_a_live_holder_takes_over_a_dead_one_and_the_loser_commits_nothing(s3_bucket):
    from layerkit.training.remote import LeaseLock
    from layerkit.training.rundir import RunLockedError

    url, said = storage.join(s3_bucket, "run"), []
    a = LeaseLock(url, lease=1.0, say=said.append).acquire()
    with pytest.raises(RunLockedError, match="in use by another layerkit run .*renewed its lease"):
        LeaseLock(url, lease=1.0, say=said.append).acquire()  # a renews every third of the lease
    a._stop.set()
    a._thread.join()  # a "dies": no more renewals
    b = LeaseLock(url, lease=1.0, say=said.append).acquire()
    assert "lapsed" in said[-1]
    assert not a.renew()  # a wakes up: its next number is taken
    with pytest.raises(RunLockedError, match="this run lost its lock: another run took the lease"):
        a.check()
    b.check()
    b.release()
    t = time.monotonic()
    c = LeaseLock(url, lease=30.0, say=said.append).acquire()  # released: taken at once, no wait
    assert time.monotonic() - t < 25
    c.release()
    assert len(storage.listing(storage.join(url, ".lock"))) <= 2  # old numbers pruned


def test_the_readmes_bucket_commands_records_write_then_train_with_data_and_out_on_gs(_cloud_servers, capsys):
    """README, "Data and runs in a bucket": shards written to gs://, a run reading them and
    writing its record to gs://, resumed from there."""
    from importlib.resources import files

    from layerkit.cli import main

    bucket = _cloud_servers["gs"].make_bucket()
    data, out = storage.join(bucket, "sample"), storage.join(bucket, "runs", "sample-1")
    src = str(files("layerkit") / "data" / "embedded" / "cifar10-test.npz")
    assert main(["records", "write", src, data]) == 0
    assert "dataset.json" in storage.listing(data)
    assert main(["train", "--smoke", "--data", data, "--out", out]) == 0
    config = json.loads(storage.read(storage.join(out, "config.json")))
    assert config["data"] == data
    results = json.loads(storage.read(storage.join(out, "results.json")))
    assert results["status"] == "done" if "status" in results else results["epochs"] == 1
    assert main(["train", "--resume", "--out", out, "--epochs", "2"]) == 0
    assert json.loads(storage.read(storage.join(out, "state.json")))["epochs_completed"] == 2


def test_an_https_out_is_refused_as_read_only_before_any_request(capsys):
    from layerkit.cli import main

    assert main(["train", "--smoke", "--out", "https://example.com/runs/1?token=abc"]) == 2
    err = capsys.readouterr().err
    assert "https://example.com/runs/1?***: https:// locations are read-only" in err, err
    assert "abc" not in err


def test_a_failed_start_deletes_only_what_it_uploaded(s3_bucket):
    from layerkit.training.rundir import MARKER

    url = storage.join(s3_bucket, "run")
    storage.write(storage.join(url, MARKER), b"{}")  # a start of layerkit's that never saved an epoch
    storage.write(storage.join(url, "notes.txt"), b"the user's")  # and a file the user put beside it
    config = apply_overrides(get_recipe("sample", smoke_run=True), ["epochs=1"])
    config = apply_overrides(config, {"data": "/no/such/data/folder"})
    with pytest.raises((ValueError, FileNotFoundError)):
        train(config, url, verbose=0)
    names = storage.listing(url)
    assert {MARKER, "notes.txt"} <= set(names), names
    assert storage.read(storage.join(url, "notes.txt")) == b"the user's"
