"""Do TensorFlow's usual globs list only shards in a records folder, before and after layerkit
touched it? (issue 21: layerkit's side files must never be matched by them.)

Run with the Python of a throwaway venv holding TensorFlow (too big for CI)::

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0
    /tmp/tfvenv/bin/python tools/check_tf_globs.py [--layerkit-python /work/main/.venv/bin/python]

On copies of the folders TensorFlow wrote (tests/records/fixtures/tf_folders) and on a folder
``layerkit records write --name train`` wrote, it runs ``tf.io.gfile.glob`` and reads every
match with ``tf.data.TFRecordDataset`` for each glob, before and after ``layerkit records
index``, ``verify`` and ``info`` (run as subprocesses with the layerkit Python, this checkout's
``src`` first on PYTHONPATH, side-file cache in a temporary folder). Last, the layout before
``.layerkit/`` (side files beside the shards) is simulated, to show what the move avoids. Prints
one table row per folder, stage and glob; exits 1 if a glob matched anything but shards or a
match did not read, in any stage but the simulated old layout.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "records" / "fixtures" / "tf_folders"
GLOBS = ["train-*", "train-*-of-*", "*-of-*", "*.tfrec*", "*.tfrecord"]
COMPRESSION = {"gzip": "GZIP", "zlib": "ZLIB"}
SAMPLE = ROOT / "src" / "layerkit" / "data" / "embedded" / "cifar10-test.npz"


def layerkit(python, env, *args):
    out = subprocess.run([python, "-m", "layerkit.cli", "records", *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"layerkit records {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")


def check(tf, folder: Path, shards: set, compression: str):
    """Rows (glob, matched names, only shards?, records read or the error) for `folder`."""
    rows = []
    for pattern in GLOBS:
        matched = sorted(tf.io.gfile.glob(str(folder / pattern)))
        names = [os.path.relpath(m, folder) for m in matched]
        only = all(n in shards for n in names)
        if not matched:
            read = "-"
        else:
            try:
                read = str(sum(1 for _ in tf.data.TFRecordDataset(matched, compression_type=compression)))
            except Exception as err:  # noqa: BLE001 - a side file read as a shard: the point of the check
                read = f"ERROR {type(err).__name__}: {str(err).splitlines()[0][:60]}"
        rows.append((pattern, names, only, read))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layerkit-python", default="/work/main/.venv/bin/python",
                        help="a Python with layerkit's dependencies (this checkout's src goes first on PYTHONPATH)")
    args = parser.parse_args()
    import tensorflow as tf

    tmp = Path(tempfile.mkdtemp(prefix="tf-globs-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "KERAS_BACKEND": "jax",
           "LAYERKIT_RECORDS_CACHE": str(tmp / "side-cache")}
    folders = {}
    for name in ["standard", "flowers", "tfds", "gzip", "zlib", "empty_shard"]:
        folders[f"tf/{name}"] = (Path(shutil.copytree(FIXTURES / name, tmp / "tf" / name)), COMPRESSION.get(name, ""))
    ours = tmp / "layerkit" / "train"
    layerkit(args.layerkit_python, env, "write", str(SAMPLE), str(ours), "--name", "train", "--shards", "4")
    folders["layerkit (records write --name train)"] = (ours, "")

    print(f"TensorFlow {tf.__version__}; tf.io.gfile.glob + tf.data.TFRecordDataset over every match")
    print(f"| folder | stage | glob | matches | only shards | records TF read |")
    print("| --- | --- | --- | --- | --- | --- |")
    failed = False
    for label, (folder, compression) in folders.items():
        shards = {p.name for p in folder.iterdir() if p.is_file() and p.suffix not in (".json",)}
        stages = [("before", None), ("after index", "index"), ("after verify", "verify"), ("after info", "info")]
        for stage, action in stages:
            if action:
                layerkit(args.layerkit_python, env, action, str(folder))
            top = sorted(p.name for p in folder.iterdir())
            for pattern, names, only, read in check(tf, folder, shards, compression):
                failed |= not only or read.startswith("ERROR")
                print(f"| {label} | {stage} | `{pattern}` | {len(names)} | {'yes' if only else 'NO: ' + ', '.join(names)} "
                      f"| {read} |")
            star = sorted(os.path.relpath(m, folder) for m in tf.io.gfile.glob(str(folder / "*")))
            print(f"| {label} | {stage} | (folder holds) | {', '.join(top)} | | |")
            print(f"| {label} | {stage} | `*` (TF's glob of a dot-name) | {', '.join(star)} | | |")
    # The layout before .layerkit/: the side files beside the shards (simulated by moving them).
    side = ours / ".layerkit"
    for f in side.iterdir():
        f.rename(ours / f.name)
    side.rmdir()
    shards = {p.name for p in ours.iterdir() if p.name.endswith(".tfrecord")}
    for pattern, names, only, read in check(tf, ours, shards, ""):
        print(f"| layerkit, side files beside (layout before) | simulated | `{pattern}` | {len(names)} | "
              f"{'yes' if only else 'NO: ' + ', '.join(n for n in names if n not in shards)} | {read} |")
    shutil.rmtree(tmp, ignore_errors=True)
    print("RESULT:", "FAIL: a glob matched something other than shards" if failed else
          "every glob matched shards only and every match read, in every stage")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
