"""Thin script: `python bench/revnet.py ...` runs `layerkit bench revnet ...`."""

import argparse
import sys

from layerkit.backend import select_default_backend

select_default_backend()

from layerkit.bench import revnet  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench/revnet.py", description=revnet.__doc__.splitlines()[0])
    revnet.add_arguments(parser)
    sys.exit(revnet.run(parser.parse_args()))
