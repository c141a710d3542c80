"""The `layerkit` command: it only parses arguments and calls the library.

Each subcommand lives in `layerkit.commands.<name>` and exposes
``add_parser(subparsers)``, which registers its parser and sets ``func``.
"""

import argparse
import importlib
import sys

# Subcommand modules, in the order `layerkit --help` lists them.
COMMANDS = ["train", "evaluate", "predict", "export", "recipes", "models", "records", "data", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerkit",
        description="Build, feed and train convolutional image classifiers with Keras 3 (JAX).",
    )
    from layerkit import __version__

    parser.add_argument("--version", action="version", version=f"layerkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"layerkit.commands.{name}").add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RuntimeError as err:
        from layerkit.training.checkpoints import RunWriteError
        from layerkit.training.stop import DIVERGED, DivergedError

        if not isinstance(err, (RunWriteError, DivergedError)):
            raise
        print(f"layerkit {args.command}: error: {_cli_words(err)}", file=sys.stderr)
        return DIVERGED if isinstance(err, DivergedError) else 1
    except KeyboardInterrupt:
        print("layerkit: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ConnectionError) as err:
        print(f"layerkit {args.command}: error: {_cli_words(err)}", file=sys.stderr)
        return 2


def _cli_words(err) -> str:
    """The error as the CLI words it (flags, not Python arguments: `rundir.Worded`)."""
    return getattr(err, "cli", None) or str(err)


if __name__ == "__main__":
    sys.exit(main())
