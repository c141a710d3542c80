"""Thin script: `python bench/throughput.py [DATA] ...` runs `layerkit bench throughput DATA ...`."""

import argparse
import sys

from layerkit.backend import select_default_backend

select_default_backend()

from layerkit.bench import throughput  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench/throughput.py", description=throughput.__doc__.splitlines()[0])
    throughput.add_arguments(parser)
    sys.exit(throughput.run(parser.parse_args()))
