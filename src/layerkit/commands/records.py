"""`layerkit records write|verify|info|index`: image data sets as TFRecord shards (no TensorFlow needed)."""

import sys


def add_parser(subparsers):
    p = subparsers.add_parser("records", help="write, verify or describe TFRecord shards of images")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    w = sub.add_parser("write", help="write SRC (class folders, .npz pack, CIFAR-10 batches) as shards in OUT")
    w.add_argument("src", metavar="SRC", help="folder of class subfolders, .npz pack, cifar-10-batches-py/ or its .tar.gz")
    w.add_argument("out", metavar="OUT", help="output folder (created if missing), or a bucket folder "
                                              "gs://BUCKET/PREFIX or s3://BUCKET/PREFIX (an empty prefix)")
    w.add_argument("--shards", type=int, default=1, help="number of shards (default 1)")
    w.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    w.add_argument("--name", default="records", help="shard file prefix (default 'records')")
    w.add_argument("--split", choices=["train", "test"], default="train", help="CIFAR-10 batches only")
    w.add_argument("--keys", default="default", metavar="KEYS",
                   help="feature names: default (image/encoded, image/class/label, image/format, height, "
                        "width), flowers (image, class), tfds (image, label), or encoded=KEY,label=KEY")
    w.add_argument("--overwrite", action="store_true", help="replace shards already in OUT")
    w.add_argument("--on-bad-image", choices=["error", "skip"], default="error",
                   help="an image that does not read or decode: error (default; every one is named, nothing "
                        "is written) or skip (left out, listed in dataset.json)")
    w.set_defaults(func=run_write)

    v = sub.add_parser("verify", help="check every CRC, Example, label and image in OUT (a records folder, "
                                      "with or without dataset.json, or one shard)")
    v.add_argument("out", metavar="OUT")
    v.add_argument("--no-decode", action="store_true", help="skip decoding the images")
    _reading_options(v)
    v.set_defaults(func=run_verify)

    i = sub.add_parser("info", help="counts per class, image sizes and bytes of OUT")
    i.add_argument("out", metavar="OUT")
    _reading_options(i)
    i.set_defaults(func=run_info)

    x = sub.add_parser("index", help="write the index and labels file of every shard in DIR (e.g. shards "
                                     "TensorFlow wrote), so that opening DIR reads no record")
    x.add_argument("dir", metavar="DIR")
    _reading_options(x)
    x.set_defaults(func=run_index)


def _reading_options(p):
    p.add_argument("--keys", default=None, metavar="KEYS",
                   help="feature names: default, flowers (image, class), tfds (image, label) or "
                        "encoded=KEY,label=KEY (default: dataset.json's, else detected from the first record)")
    p.add_argument("--compression", default=None, choices=["GZIP", "ZLIB", "none"],
                   help="as TensorFlow's compression_type (default: detected from each shard's first bytes)")


def run_write(args) -> int:
    from layerkit.records import write_records
    from layerkit.records.example import ImageKeys

    keys = ImageKeys.parse(args.keys)
    info = write_records(args.src, args.out, shards=args.shards, seed=args.seed, keys=keys,
                         name=args.name, split=args.split, overwrite=args.overwrite, on_bad_image=args.on_bad_image)
    skipped = f" ({len(info['skipped'])} bad images skipped, listed in dataset.json)" if info.get("skipped") else ""
    print(f"wrote {info['records']} records of {len(info['classes'])} classes in {len(info['shards'])} shards "
          f"to {args.out}{skipped}")
    return 0


def run_verify(args) -> int:
    from layerkit.records import verify_records
    from layerkit.records.tfrecord import RecordError

    try:
        result = verify_records(args.out, decode=not args.no_decode, keys=args.keys, compression=args.compression)
    except RecordError as err:
        print(f"layerkit records verify: FAILED: {err}", file=sys.stderr)
        return 1
    print(f"ok: {result['records']} records in {result['shards']} shards, {result['classes']} classes "
          f"(keys: {result['keys']})")
    return 0


def run_info(args) -> int:
    import warnings

    from layerkit.records import records_info

    with warnings.catch_warnings(record=True) as caught:  # a side file skipped: one line each
        warnings.simplefilter("always")
        info = records_info(args.out, keys=args.keys, compression=args.compression)
    for w in caught:
        print(f"layerkit records info: warning: {w.message}", file=sys.stderr)
    b = info["bytes"]
    print(f"records: {info['records']} in {len(info['shards'])} shards, {b['shards']:,} bytes "
          f"({b['images']:,} of images, {b['mean_image']:.0f} per image)")
    print(f"keys: {info['keys']}; compression: {', '.join(info['compression']) or 'none'}")
    width = max(len(c) for c in info["classes"]) if info["classes"] else 0
    print("classes:")
    for c, k in info["classes"].items():
        print(f"  {c:<{width}}  {k}")
    print("image sizes (HxW): " + ", ".join(f"{s}: {k}" for s, k in info["image_sizes"].items()))
    print("formats: " + ", ".join(f"{f}: {k}" for f, k in info["formats"].items()))
    return 0


def run_index(args) -> int:
    from layerkit.records import index_records

    result = index_records(args.dir, args.keys, compression=args.compression)
    print(f"indexed {result['records']} records in {result['shards']} shards of {args.dir} "
          f"({result['indexes_written']} offset indexes written; keys: {result['keys']})")
    return 0
