"""A checkpoint with another number of recurrent units, to train against its original.

    python -m benchmarks.resize src/speechmask/pretrained/default/model.pt --hidden 512 \\
        --out runs/h512.pt

Wider: the new units start with zero outgoing weights (same masks as the original). Narrower:
each layer keeps its units with the largest outgoing weights (see ``model.with_hidden``). Train
the result with ``speechmask train --init OUT --set teacher=ORIGINAL ...``
(docs/experiments/distill_width.toml).
"""

from __future__ import annotations

import argparse

import torch

from speechmask import checkpoint as ckpt
from speechmask.features import StftConfig, stft
from speechmask.model import with_hidden


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint to resize")
    parser.add_argument("--hidden", type=int, required=True, help="units per recurrent layer")
    parser.add_argument("--out", required=True, help="where to write the resized checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="init of new units' weights")
    args = parser.parse_args(argv)
    model, stft_cfg, payload = ckpt.load_model(args.model)
    resized = with_hidden(model, args.hidden, args.seed).eval()
    ckpt.save(args.out, ckpt.model_payload(resized, stft_cfg, history=ckpt.training_stages(
        payload), metrics={"resized_from": str(args.model), "hidden": args.hidden}))
    # How far the start is from the original, on a second of noise: 0 when growing.
    torch.manual_seed(0)
    mag = stft(torch.randn(1, 16000) * 0.1, StftConfig()).abs()
    with torch.no_grad():
        diff = (resized.offline(mag) - model.offline(mag)).abs().mean().item()
    print(f"{args.out}: {model.cfg.hidden} -> {args.hidden} units, "
          f"{model.parameter_count():,} -> {resized.parameter_count():,} parameters, "
          f"{model.macs_per_frame():,} -> {resized.macs_per_frame():,} MACs per frame; "
          f"mean |mask change| {diff:.4f}")


if __name__ == "__main__":
    main()
