"""The ``deepens`` command line: ``demo``, ``bench``, ``reproduce``, and ``train`` / ``predict`` / ``evaluate`` on
CSV and Parquet tables.

Bad input (a missing file or column, non-numeric values, missing values, a class or a feature count
the model never saw) ends the command with one line on stderr and exit code 2, before anything is
written: models and tables are written atomically (see :mod:`deepens.io` and :mod:`deepens.tables`).

Each command lives in its own module with an ``add_parser(commands)``; :data:`COMMANDS` lists them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from deepens.cli import experiments, predict, train
from deepens.cli.common import EXIT_BAD_INPUT, CommandError, _join_hosts, _one_line, checkpoint_dir_for

COMMANDS = (experiments, train, predict)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepens", description="Deep Ensembles in JAX: predictive uncertainty.")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="do not use the persistent compilation cache (also DEEPENS_NO_CACHE=1; "
        "DEEPENS_CACHE_DIR moves it, default ~/.cache/deepens/jax)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import os

    args = build_parser().parse_args(argv)  # builds without JAX, so --help and usage errors are quick
    from deepens import cache, devices

    try:
        devices.use_cpu_cores()  # one JAX device per core, before JAX starts (a no-op once it has)
    except ValueError as err:  # a bad DEEPENS_CPU_DEVICES
        print(f"deepens: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT

    if args.no_cache:
        # Through the environment, so the estimators' own call (in fit) sees it too.
        os.environ[cache.NO_CACHE_ENV] = "1"
    elif args.command != "bench":  # bench times compilation itself, so it must not load it from disk
        cache.enable_compilation_cache()
    try:
        _join_hosts(args)
        return args.run(args)
    except (ValueError, OSError) as err:
        # Bad input or an unreadable file: one line, exit code 2; nothing was written (writes are atomic;
        # demo, bench and reproduce check their arguments and data before any work, see cli.experiments).
        print(f"deepens {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "CommandError", "build_parser", "checkpoint_dir_for", "main"]
