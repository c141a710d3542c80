"""`layerkit models [NAME]`: list the zoo, or summarise one model.

The list's parameter counts come from `layerkit.models._parameters` (written by
``tools/make_model_table.py``), so listing builds no model unless the shape or classes change.
"""


def add_parser(subparsers):
    p = subparsers.add_parser("models", help="list the model zoo, or print one model's summary")
    p.add_argument("name", nargs="?", help="a model name, e.g. wrn-40-2 (omit to list all)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="listing with this (or --input-shape) builds every model: minutes")
    p.add_argument("--input-shape", default=None, help="HxWxC, e.g. 32x32x3")
    p.set_defaults(func=run)


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3:
        raise ValueError(f"--input-shape must look like 32x32x3. Received: {text!r}")
    return shape


def run(args):
    from layerkit import models

    overrides = {}
    if args.num_classes is not None:
        overrides["num_classes"] = args.num_classes
    if args.input_shape:
        overrides["input_shape"] = _shape(args.input_shape)
    if args.name:
        model = models.create(args.name, **overrides)
        model.summary()
        return 0
    from layerkit.models._parameters import PARAMETERS

    print(f"{'name':<18} {'family':<28} {'input':<11} {'parameters':>12}  description")
    for name in models.names():
        shape, _, count = PARAMETERS.get(name, (None, None, None))
        if overrides or count is None:  # the table holds the builders' defaults only
            model = models.create(name, **overrides)
            shape, count = model.input_shape[1:], model.count_params()
        print(f"{name:<18} {models.family(name):<28} {'x'.join(map(str, shape)):<11} {count:>12,}  "
              f"{models.describe(name)}")
    print("patterns: " + ", ".join(p for p in models.patterns() if "{" in p))
    return 0
