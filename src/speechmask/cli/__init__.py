"""The ``speechmask`` command line. The only package that parses arguments.

One module per command (or small group of commands), each with its parser (``add_parser``)
next to its handler (``run``); the work itself is done by library modules, called with typed
arguments. This module builds the top-level parser and reports failures: every user-facing
failure is one line on stderr (``speechmask: error: ...``) with a non-zero exit code;
tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import first_line
from . import bench, data, enhance, info, serve, stream
from .common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, UserError

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "UserError", "build_parser",
           "main"]


def _known_errors() -> tuple[type[BaseException], ...]:
    from ..audio import AudioError

    errors: tuple[type[BaseException], ...] = (UserError, AudioError, ValueError)
    try:  # these modules import torch; an ONNX-only install has neither them nor their errors
        from ..checkpoint import CheckpointError
        from ..corpus import DataError
    except ImportError:
        return errors
    return (*errors, CheckpointError, DataError)


def _needs_torch(args: argparse.Namespace) -> int:
    raise ModuleNotFoundError("No module named 'torch'", name="torch")


# Help of the training commands in a parser built without them (see _needs_training).
_LIGHT_HELP = {"train": "train a mask model on the corpus", "finetune": "adapt a model to your "
               "data or your noise", "tune": "hyper-parameter search with Optuna",
               "evaluate": "score a model on a fixed evaluation set", "calibrate": "fit a "
               "trained model's mask exponent and write the calibrated model"}


def _needs_training(argv: list[str]) -> bool:
    """Whether the command line may need the training parsers, whose defaults import torch
    (~1.5 s): not for --version, enhance, stream, info and other inference commands."""
    if "--version" in argv[:1]:
        return False
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in (None, *_LIGHT_HELP)


def _add_training_parsers(sub: argparse._SubParsersAction, training: bool) -> None:
    """train, finetune, tune, evaluate and calibrate; as stubs when not ``training`` or when
    torch is missing (their parsers' defaults come from torch-importing modules)."""
    try:
        if not training:  # a command that needs no torch: do not import it for these parsers
            raise ImportError("not needed")
        # First, so a missing torch is an ImportError here and not a failure deep inside
        # another library that probes for torch (scipy does, and chokes on a blocked one).
        import torch  # noqa: F401

        from . import evaluate, finetune, train, tune

        train.add_parser(sub)
        finetune.add_parser(sub)
        tune.add_parser(sub)
        evaluate.add_parsers(sub)
    except ImportError:  # an ONNX-only install: no torch, so no training tools
        for name in _LIGHT_HELP:
            if name in sub.choices:  # added before the import that failed
                continue
            stub = sub.add_parser(name, help="(needs PyTorch: pip install 'speechmask[torch]')"
                                  if training else _LIGHT_HELP[name])
            stub.set_defaults(func=_needs_torch)


def build_parser(training: bool = True) -> argparse.ArgumentParser:
    """The parser; ``training=False`` builds train/finetune/tune/evaluate/calibrate as stubs,
    without importing torch."""
    from .. import __version__

    p = argparse.ArgumentParser(prog="speechmask", description="Speech denoising with a "
                                "recurrent time-frequency mask network.")
    p.add_argument("--version", action="version", version=f"speechmask {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)
    # In this order in `speechmask --help`.
    data.add_parser(sub)
    _add_training_parsers(sub, training)
    enhance.add_parser(sub)
    info.add_info_parser(sub)
    stream.add_parser(sub)
    info.add_model_file_parsers(sub)
    bench.add_parser(sub)
    serve.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(training=_needs_training(argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "func", None) is not _needs_torch:
        args = parser.parse_args(argv)  # reports the unknown arguments as usual
    if getattr(args, "command", None) == "train" and hasattr(args, "epochs"):
        args.argv = argv  # `train --nproc N` re-runs this command line in N processes
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s: %(message)s" if not args.debug else
        "%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("speechmask: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:
        if args.debug or err.name != "torch":
            raise
        print(f"speechmask: error: `speechmask {args.command}` needs PyTorch, which is not "
              "installed: pip install 'speechmask[torch]' (enhance and stream run without it)",
              file=sys.stderr)
        return EXIT_ERROR
    except _known_errors() as err:
        if args.debug:
            raise
        message = first_line(err)
        print(f"speechmask: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # Whoever read stdout has gone (`speechmask info | head -3`): stop quietly, as Unix
        # tools do; stdout now points at devnull so the interpreter's last flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the shell's status for a tool stopped by a closed pipe
    except OSError as err:
        if args.debug:
            raise
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"speechmask: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_ERROR

