"""Thin script: `python bench/inference.py ...` runs `layerkit bench inference ...`."""

import argparse
import sys

from layerkit.backend import select_default_backend

select_default_backend()

from layerkit.bench import inference  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench/inference.py", description=inference.__doc__.splitlines()[0])
    inference.add_arguments(parser)
    sys.exit(inference.run(parser.parse_args()))
