"""Write `src/layerkit/models/_parameters.py`: every listed model's parameter count at its
builder's default input shape and number of classes, so `layerkit models` lists the zoo
without building 18 models (2 minutes on 2 CPU cores). Run it after adding or changing a model;
`tests/models/test_parameter_table.py` fails until the table matches the registry.

    .venv/bin/python tools/make_model_table.py
"""

import sys
from pathlib import Path

import layerkit  # noqa: F401  (sets the backend)
import keras
from layerkit import models

OUT = Path(__file__).resolve().parents[1] / "src" / "layerkit" / "models" / "_parameters.py"

HEADER = '''"""Parameter counts of the listed models at their builders' defaults (generated; do not edit).

Written by ``tools/make_model_table.py``; `layerkit models` reads it.
name: (input_shape, num_classes or None, parameters)
"""

PARAMETERS = {
'''


def main() -> int:
    rows = []
    for name in models.names():
        d = models.defaults(name)
        model = models.create(name)
        rows.append(f"    {name!r}: ({tuple(d.get('input_shape', ()))!r}, {d.get('num_classes')!r}, "
                    f"{model.count_params():_}),\n")
        print(f"{name:<20} {model.count_params():>12,}", flush=True)
        keras.utils.clear_session()
    OUT.write_text(HEADER + "".join(rows) + "}\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
