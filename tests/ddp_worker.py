"""One training process for test_distributed: the CLI (``speechmask ARGS``), as each process
of ``train --nproc N`` runs it, that also saves this rank's final weights to DUMP/rank<R>.pt, so
the test can compare the ranks with each other and with the checkpoint rank 0 wrote (the
shipped CLI has no flag for that).

    python -m ddp_worker DUMP ARGS...   (started by distributed.launch_local or torchrun)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import speechmask.train
from speechmask.cli import main


def main_dumping_weights(dump: Path, argv: list[str]) -> int:
    real_train = speechmask.train.train

    def train_and_dump(*args, **kwargs):
        result = real_train(*args, **kwargs)
        dump.mkdir(parents=True, exist_ok=True)
        torch.save(result["model"].state_dict(), dump / f"rank{kwargs['dist'].rank}.pt")
        return result

    # The train command looks train up when it runs, so it runs this one.
    speechmask.train.train = train_and_dump
    return main(argv)


if __name__ == "__main__":
    sys.exit(main_dumping_weights(Path(sys.argv[1]), sys.argv[2:]))
