"""``deepens demo``, ``deepens bench`` and ``deepens reproduce``: the experiments of :mod:`deepens.experiments`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from deepens.cli.common import CommandError, _device_options, _names, _positive


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise CommandError(f"--seed must be an integer >= 0, got {seed}")


def _check_out_folder(out: str) -> None:
    """``--out`` must be a folder or not exist yet; no part of its path may be a file."""
    path = Path(out)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise CommandError(f"--out {out}: {part} is a file, not a folder")


def _demo(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from deepens.experiments import demo

    _check_seed(args.seed)
    _check_out_folder(args.out)
    base = demo.FULL if args.full else demo.Settings()
    if args.practical:  # the practical's unclipped regression, beside the default run's figures
        base = dataclasses.replace(base, clip_norm=demo.PRACTICAL.clip_norm, experiments=demo.PRACTICAL.experiments)
    demo.run(
        os.path.join(args.out, "practical") if args.practical else args.out, dataclasses.replace(base, seed=args.seed)
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from deepens.experiments import bench

    if args.members is not None and args.members < 1:
        raise CommandError(f"--members must be an integer >= 1, got {args.members}")
    if args.json:
        target = Path(args.json)
        if target.is_dir():
            raise CommandError(f"--json {args.json} is a folder; name a file")
        if not target.parent.is_dir():
            raise CommandError(f"--json {args.json}: the folder {target.parent} does not exist")
    record = bench.run(args.workload, args.members, sequential=not args.no_sequential, methods=args.methods)
    text = json.dumps(record, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


def _uci_settings(args: argparse.Namespace, *, members: int | None, epochs: int | None):
    from deepens.experiments import uci

    optimizer = None
    if args.learning_rate is not None:
        optimizer = uci.OptimizerConfig(args.learning_rate, args.schedule, args.weight_decay)
    elif args.schedule != "constant" or args.weight_decay:
        raise CommandError(
            "--schedule and --weight-decay need --learning-rate (without it the optimiser is "
            "chosen per data set on a validation split)"
        )
    fields = dict(
        data_dir=args.data_dir,
        datasets=_names(args.datasets),
        splits=args.splits,
        optimizer=optimizer,
        seed=args.seed,
        devices=args.devices,
    )
    if members is not None:
        fields["members"] = members
    if epochs is not None:
        fields["epochs"] = epochs
    return uci.Settings(**fields)


def _mnist_settings(args: argparse.Namespace, *, members: int | None, epochs: int | None):
    from deepens.experiments import mnist

    fields = dict(
        data_dir=args.data_dir,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        seed=args.seed,
        devices=args.devices,
    )
    if members is not None:
        fields["members"] = members
    if epochs is not None:
        fields["epochs"] = epochs
    if getattr(args, "mnist_learning_rate", None) is not None:
        fields["learning_rate"] = args.mnist_learning_rate
    if getattr(args, "calibrated", None) is not None:
        fields["calibrated"] = args.calibrated
    if getattr(args, "calibration_fraction", None) is not None:
        fields["calibration_fraction"] = args.calibration_fraction
    return mnist.Settings(**fields)


def _mimo_settings(args: argparse.Namespace, *, members: int | None, epochs: int | None) -> Any:
    """The :class:`deepens.experiments.mimo.Settings` the options give (``reproduce mimo`` and ``all``)."""
    from deepens.experiments import mimo

    fields = {
        k: v
        for k, v in dict(
            data_dir=args.data_dir,
            seed=args.seed,
            train_limit=args.train_limit,
            test_limit=args.test_limit,
            datasets=_names(args.datasets),
            splits=args.splits,
            benchmarks=_names(getattr(args, "benchmarks", None)),
            members=members,
            devices=args.devices,
        ).items()
        if v is not None
    }
    if members is not None:
        fields["mimo_members"] = tuple(k for k in mimo.Settings.mimo_members if k < members) + (members,)
    if epochs is not None:
        fields.update(mnist_epochs=epochs, uci_epochs=epochs)
    return mimo.Settings(**fields)


def _reproduce(args: argparse.Namespace) -> int:
    from deepens.experiments import mnist, report, uci

    # The data sets are read and checked by each benchmark's run before it trains anything; ``all`` runs
    # MNIST after UCI, so its MNIST data are checked here first.
    _check_seed(args.seed)
    _check_out_folder(args.out)
    if args.benchmark == "all":
        from deepens.data import mnist as mnist_data

        mnist_data.load_mnist(args.data_dir)
        mnist_data.load_test_set("notmnist", args.data_dir)
    if args.benchmark == "uci":
        result = uci.run(args.out, _uci_settings(args, members=args.members, epochs=args.epochs))
        report.write(args.out, result, None)
    elif args.benchmark == "mnist":
        result = mnist.run(args.out, _mnist_settings(args, members=args.members, epochs=args.epochs))
        report.write(args.out, None, result)
    elif args.benchmark == "shift":
        from deepens.experiments import shift

        base = _mnist_settings(args, members=args.members or shift.Settings.members, epochs=args.epochs)
        shift.run(args.out, shift.Settings(**{f: getattr(base, f) for f in base.__dataclass_fields__}))
        print(f"dataset shift: {args.out}/shift.md")
        return 0
    elif args.benchmark == "mimo":
        from deepens.experiments import mimo

        mimo.run(args.out, _mimo_settings(args, members=args.members, epochs=args.epochs))
        print(f"MIMO and BatchEnsemble against deep ensembles: {args.out}/mimo.md")
        return 0
    else:
        from deepens.experiments import shift

        base = _mnist_settings(args, members=args.mnist_members or shift.Settings.members, epochs=args.mnist_epochs)
        # The MIMO comparison keeps its own sizes (M = 4; MNIST 20 and UCI 40 epochs) unless --mimo-* say.
        report.run(
            args.out,
            _uci_settings(args, members=args.uci_members, epochs=args.uci_epochs),
            _mnist_settings(args, members=args.mnist_members, epochs=args.mnist_epochs),
            shift_settings=shift.Settings(**{f: getattr(base, f) for f in base.__dataclass_fields__}),
            mimo_settings=_mimo_settings(args, members=args.mimo_members, epochs=args.mimo_epochs),
        )
    print(f"report: {args.out}/report.md")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the command(s) of this module to the ``deepens`` parser."""
    demo = commands.add_parser("demo", help="run the practical's toy experiments and write figures and metrics.json")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument(
        "--full",
        action="store_true",
        help="train Part II (MIMO, BatchEnsemble) for the practical's 10,000 epochs (minutes)",
    )
    demo.add_argument(
        "--practical",
        action="store_true",
        help="the practical's regression exactly (no gradient clipping), into OUT/practical",
    )
    demo.set_defaults(run=_demo)

    bench = commands.add_parser("bench", help="measure training speed on a standard workload")
    bench.add_argument(
        "--workload",
        choices=("w1", "w2", "w3"),
        required=True,
        help="w1 toy regression, w2 40,000 x 9 regression, w3 10,000 x 784 ten-class",
    )
    bench.add_argument("--members", type=int, help="ensemble size (default: the workload's)")
    bench.add_argument("--json", help="also write the record to this file")
    bench.add_argument("--no-sequential", action="store_true", help="skip the sequential baselines")
    bench.add_argument(
        "--methods",
        action="store_true",
        help="also time one network, the deep ensemble, MIMO and BatchEnsemble (train and predict)",
    )
    bench.set_defaults(run=_bench)

    reproduce = commands.add_parser("reproduce", help="reproduce the paper's benchmarks and write a report")
    benchmarks = reproduce.add_subparsers(dest="benchmark", required=True)
    uci_parser = benchmarks.add_parser("uci", help="UCI regression (Table 1 and supplementary Table 2)")
    mnist_parser = benchmarks.add_parser("mnist", help="MNIST: ensemble size, FGSM, NotMNIST (Figures 2, 3, 6)")
    shift_parser = benchmarks.add_parser(
        "shift", help="MNIST under rotation, translation and corruptions (Ovadia et al. 2019)"
    )
    mimo_parser = benchmarks.add_parser(
        "mimo", help="MIMO and BatchEnsemble against deep ensembles on MNIST and UCI (issue 8)"
    )
    all_parser = benchmarks.add_parser("all", help="uci, mnist, shift and mimo, and report.md")
    for sub, default_out in (
        (uci_parser, "results/uci"),
        (mnist_parser, "results/mnist"),
        (shift_parser, "results/shift"),
        (mimo_parser, "results/mimo"),
        (all_parser, "results"),
    ):
        sub.add_argument("--out", default=default_out, help=f"output folder (default: {default_out})")
        sub.add_argument(
            "--data-dir",
            default=None,
            help="data folder (default: ../shared/data beside the repository, or $DEEPENS_DATA)",
        )
        sub.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        _device_options(sub)
        sub.set_defaults(run=_reproduce)
    for sub in (uci_parser, all_parser):
        sub.add_argument("--datasets", default=None, help="comma-separated data set folder names (default: all)")
        sub.add_argument("--splits", type=_positive, default=None, help="use the first N splits (default: all)")
        sub.add_argument(
            "--learning-rate",
            type=float,
            default=None,
            help="one Adam learning rate for every data set (default: chosen per data set on validation)",
        )
        sub.add_argument(
            "--schedule",
            choices=("constant", "cosine"),
            default="constant",
            help="learning-rate schedule with --learning-rate (default: constant)",
        )
        sub.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay with --learning-rate")
    for sub in (mnist_parser, shift_parser, all_parser):
        sub.add_argument("--train-limit", type=_positive, default=None, help="use the first N training images")
        sub.add_argument("--test-limit", type=_positive, default=None, help="use the first N images of each test set")
    for sub, name in ((uci_parser, "uci"), (mnist_parser, "mnist"), (shift_parser, "shift")):
        defaults = {"uci": "5, 40", "mnist": "10, 20", "shift": "5, 20"}[name]
        sub.add_argument(
            "--members", type=_positive, default=None, help=f"ensemble size (default: {defaults.split(',')[0]})"
        )
        sub.add_argument("--epochs", type=_positive, default=None, help=f"epochs (default:{defaults.split(',')[1]})")
    for flag, text in (
        ("--train-limit", "use the first N MNIST training images"),
        ("--test-limit", "use the first N images of each MNIST test set"),
        ("--splits", "use the first N splits of each UCI set (default: all)"),
    ):
        mimo_parser.add_argument(flag, type=_positive, default=None, help=text)
    mimo_parser.add_argument("--datasets", default=None, help="comma-separated UCI folder names (default: all)")
    mimo_parser.add_argument("--benchmarks", default=None, help="comma-separated: mnist,uci (default: both)")
    mimo_parser.add_argument(
        "--members",
        type=_positive,
        default=None,
        help="M of the ensemble, MIMO and BatchEnsemble (default: 4; MIMO also 2, 3)",
    )
    mimo_parser.add_argument("--epochs", type=_positive, default=None, help="epochs (default: MNIST 20, UCI 40)")
    mnist_parser.add_argument(
        "--learning-rate",
        dest="mnist_learning_rate",
        type=float,
        default=None,
        help="Adam learning rate, cosine-decayed (default: 0.001)",
    )
    for sub in (mnist_parser, all_parser):
        sub.add_argument(
            "--no-calibrated",
            dest="calibrated",
            action="store_false",
            default=None,
            help="skip the MNIST calibrated columns (networks retrained without the held-out rows, a temperature "
            "fitted on them; about doubles the MNIST training time)",
        )
        sub.add_argument(
            "--calibration-fraction",
            type=float,
            default=None,
            help="held-out fraction of the MNIST training rows for the temperature (default: 0.1)",
        )
    all_parser.add_argument("--uci-members", type=_positive, default=None, help="UCI ensemble size (default: 5)")
    all_parser.add_argument("--uci-epochs", type=_positive, default=None, help="UCI epochs (default: 40)")
    all_parser.add_argument(
        "--mnist-members", type=_positive, default=None, help="largest MNIST ensemble (default: 10)"
    )
    all_parser.add_argument("--mnist-epochs", type=_positive, default=None, help="MNIST epochs (default: 20)")
    all_parser.add_argument(
        "--mimo-members", type=_positive, default=None, help="M of the MIMO comparison (default: 4; MIMO also 2, 3)"
    )
    all_parser.add_argument(
        "--mimo-epochs", type=_positive, default=None, help="epochs of the MIMO comparison (default: MNIST 20, UCI 40)"
    )
