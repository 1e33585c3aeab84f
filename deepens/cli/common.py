"""What the commands share: the one-line error, argument types, the table and device options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


class CommandError(ValueError):
    """Bad input found by a command; printed as one line."""


def _say(message: str) -> None:
    """Progress notes go to stderr, so stdout stays clean for results."""
    print(message, file=sys.stderr, flush=True)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _level(value: str) -> float:
    level = float(value)
    if not 0.0 < level < 1.0:
        raise argparse.ArgumentTypeError(f"level must be strictly between 0 and 1, got {value}")
    return level


def _percent(level: float) -> str:
    return f"{100 * level:g}"


def _clip_norm(text: str) -> float | str | None:
    """``--clip-norm``: a positive number, ``none`` (off) or ``auto``."""
    if text.lower() in ("none", "auto"):
        return None if text.lower() == "none" else "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, 'none' or 'auto', got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _names(text: str | None) -> tuple[str, ...] | None:
    return tuple(name.strip() for name in text.split(",") if name.strip()) if text else None


def checkpoint_dir_for(model_dir: str | Path) -> Path:
    """Where ``train`` keeps checkpoints by default: next to the model folder, ``MODEL_DIR.checkpoints``."""
    model_dir = Path(model_dir)
    return model_dir.parent / f"{model_dir.name}.checkpoints"


def _common_table_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", help="a column copied to the output and never used as a feature")
    parser.add_argument("--drop", nargs="+", default=[], metavar="COLUMN", help="columns to ignore")
    parser.add_argument(
        "--drop-missing",
        action="store_true",
        help="skip rows with missing or infinite values (default: refuse them, naming the rows)",
    )


def _device_options(parser: argparse.ArgumentParser) -> None:
    """``--devices`` and the multi-host flags, for the commands that train."""
    group = parser.add_argument_group(
        "devices and hosts",
        "Members are split over every device JAX sees (on a CPU, one per core). For a multi-host run start the "
        "same command on every host with the coordinator's address, the number of processes and each one's id "
        "(or set DEEPENS_COORDINATOR / DEEPENS_NUM_PROCESSES / DEEPENS_PROCESS_ID, or JAX's own JAX_* "
        "variables); process 0 writes the outputs.",
    )
    group.add_argument("--devices", type=_positive, metavar="N", help="use the first N devices (default: all)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 in a multi-host run")
    group.add_argument("--num-processes", type=_positive, metavar="N", help="processes in a multi-host run")
    group.add_argument("--process-id", type=int, metavar="I", help="this process's id, 0 .. N-1")


def _join_hosts(args: argparse.Namespace) -> None:
    """Start the multi-host runtime when asked for (it must come before any JAX computation); processes
    other than 0 then write their outputs to a scratch folder, so exactly one copy lands in the user's."""
    from deepens import devices

    if not hasattr(args, "coordinator"):  # a command that does not train
        return
    if not devices.initialize_distributed(args.coordinator, args.num_processes, args.process_id):
        return
    import jax

    if getattr(args, "output", None) and getattr(args, "checkpoint_dir", "unset") is None:
        # Checkpoints stay where every process can find them on --resume (process 0 writes them).
        args.checkpoint_dir = str(checkpoint_dir_for(args.output))
    if jax.process_index() != 0:
        import tempfile

        scratch = tempfile.mkdtemp(prefix=f"deepens-process{jax.process_index()}-")
        for name in ("output", "out"):
            if getattr(args, name, None):
                setattr(args, name, str(Path(scratch) / Path(getattr(args, name)).name))
