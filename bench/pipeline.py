"""Thin script: `python bench/pipeline.py DATA ...` runs `layerkit bench pipeline DATA ...`."""

import argparse
import sys

from layerkit.backend import select_default_backend

select_default_backend()

from layerkit.bench import pipeline  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench/pipeline.py", description=pipeline.__doc__.splitlines()[0])
    pipeline.add_arguments(parser)
    sys.exit(pipeline.run(parser.parse_args()))
