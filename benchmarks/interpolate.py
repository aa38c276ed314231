"""Models on the line between two checkpoints of one lineage, scored on a recipe's valid set.

    python -m benchmarks.interpolate --start recipes/init/vcc2016.pt \
        --mid src/speechmask/pretrained/default/model.pt --weights 0.3,0.4,0.5,0.6,1.0 \
        [--extra runs/polish/best.pt ...] [--recipe recipes/default.toml] [--save DIR]
        [--only rnn.weight_ih_l0,rnn.weight_hh_l0,...]

The shipped model is the mean of its recipe's starting weights and the broad stage, so the
broad stage itself is ``2 * mid - start`` and any other share ``w`` of it is
``start + 2 * w * (mid - start)`` (w = 0.5 is ``mid``; the fp16 rounding of ``mid`` is doubled
at w = 1, far below the differences measured). Every model is scored on the validation pairs a
training run of the recipe selects on (corpus valid + held-out speakers, and the clean held-out
speech as its own row); the table gives per-model means and the paired difference to ``mid``
with its standard error over files (docs/experiments.md). ``--only`` moves the named weights
along the line and keeps every other one at ``mid`` (one layer of the far end in the shipped
model: ``--weights 1.0 --only rnn.weight_ih_l0,rnn.weight_hh_l0,rnn.bias_ih_l0,rnn.bias_hh_l0``).
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import numpy as np
import torch

from speechmask import checkpoint as ckpt
from speechmask.features import istft, stft
from speechmask.metrics import si_sdr_db
from speechmask.recipe import load_recipe
from speechmask.sources import training_data

from .stats import mean_se


def line_state(start: dict, mid: dict, share: float, only: set[str] | None = None) -> dict:
    """Weights at ``share`` of the way from ``start`` (0) to the far end ``2 * mid - start``
    (1); floating-point tensors only (and only those named in ``only``, when given), the rest
    taken from ``mid``."""
    unknown = (only or set()) - set(mid)
    if unknown:
        raise SystemExit(f"--only: no such weights {sorted(unknown)}; the model has {list(mid)}")
    return {k: start[k].float() + 2 * share * (v.float() - start[k].float())
            if v.is_floating_point() and (only is None or k in only) else v
            for k, v in mid.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", required=True, help="starting weights of the lineage")
    parser.add_argument("--mid", required=True, help="the mean of start and the far end")
    parser.add_argument("--weights", default="0.3,0.4,0.5,0.6,1.0",
                        help="shares of the far end to score (comma list)")
    parser.add_argument("--extra", nargs="*", default=[], help="other checkpoints to score")
    parser.add_argument("--recipe", default="recipes/default.toml",
                        help="whose valid set: the speech/noise sources of its first stage")
    parser.add_argument("--save", default=None, metavar="DIR",
                        help="also write each share's model as DIR/share_W.pt (e.g. --weights "
                        "1.0 rebuilds the far stage to train on from)")
    parser.add_argument("--only", default=None,
                        help="comma list of weight names to move; the others stay at --mid")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    torch.set_num_threads(1)

    mix = load_recipe(args.recipe).stages[0].config.mix
    valid = training_data(mix.speech_sources, mix.noise_sources).valid
    start = ckpt.load_raw(args.start)["state_dict"]
    mid_model, stft_cfg, mid = ckpt.load_model(args.mid)
    models: dict[str, torch.nn.Module] = {}
    for share in (float(w) for w in args.weights.split(",")):
        state = line_state(start, mid["state_dict"], share, only)
        model = copy.deepcopy(mid_model)
        model.load_state_dict(state)
        models[f"share {share:.2f}"] = model.eval()
        if args.save:
            payload = {k: v for k, v in mid.items() if k not in ("format", "version")}
            ckpt.save(Path(args.save) / f"share_{share:.2f}.pt", {**payload, "state_dict": state})
    for path in args.extra:
        models[path] = ckpt.load_model(path)[0].eval()

    scores: dict[str, dict[str, list[float]]] = {k: {"noisy": [], "clean": []} for k in models}
    with torch.inference_mode():
        for pair in valid:
            noisy = torch.from_numpy(pair.noisy)[None]
            spec = stft(noisy, stft_cfg)
            part = "clean" if math.isinf(pair.input_snr_db) else "noisy"
            for name, model in models.items():
                est = istft(spec * model.offline(spec.abs()), noisy.shape[-1], stft_cfg)[0]
                scores[name][part].append(si_sdr_db(pair.clean, est.numpy()))

    ref = "share 0.50" if "share 0.50" in scores else next(iter(scores))
    print(f"| model | valid pairs | n | SI-SDR dB | minus {ref} (± s.e.) |")
    print("|---|---|---:|---:|---:|")
    for name, parts in scores.items():
        for part, values in parts.items():
            a = np.array(values)
            mean, se, _ = mean_se(a - np.array(scores[ref][part]))
            print(f"| {name} | {part} | {len(a)} | {a.mean():.2f} | {mean:+.2f} ± {se:.2f} |")


if __name__ == "__main__":
    main()
