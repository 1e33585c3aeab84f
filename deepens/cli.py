"""The ``deepens`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _demo(args: argparse.Namespace) -> int:
    from deepens.experiments import demo

    demo.run(args.out, demo.Settings(seed=args.seed))
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from deepens.experiments import bench

    record = bench.run(args.workload, args.members, sequential=not args.no_sequential)
    text = json.dumps(record, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepens", description="Deep Ensembles in JAX: predictive uncertainty.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the practical's toy experiments and write figures and metrics.json")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(run=_demo)

    bench = commands.add_parser("bench", help="measure training speed on a standard workload")
    bench.add_argument("--workload", choices=("w1", "w2", "w3"), required=True,
                       help="w1 toy regression, w2 40,000 x 9 regression, w3 10,000 x 784 ten-class")
    bench.add_argument("--members", type=int, help="ensemble size (default: the workload's)")
    bench.add_argument("--json", help="also write the record to this file")
    bench.add_argument("--no-sequential", action="store_true", help="skip the sequential baselines")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
