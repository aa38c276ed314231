"""``speechmask info`` (what a model is), ``export`` (slim checkpoint, ONNX) and ``average``
(the mean of several models' weights)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, UserError


def add_info_parser(sub: argparse._SubParsersAction) -> None:
    inf = sub.add_parser("info", help="size, cost and training figures of a model")
    inf.add_argument("--model", default=None, help="checkpoint (default: shipped model)")
    inf.add_argument("--recipe", action="store_true",
                     help="print the recipe file the model was made by (speechmask train "
                          "--recipe), as it was run")
    inf.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                     help=argparse.SUPPRESS)
    inf.set_defaults(func=run_info)


def add_model_file_parsers(sub: argparse._SubParsersAction) -> None:
    """export and average: commands that write model files."""
    ex = sub.add_parser("export", help="write a slim checkpoint and/or an ONNX model")
    ex.add_argument("model", nargs="?", default=None,
                    help="checkpoint, e.g. RUN/best.pt (default: shipped model)")
    ex.add_argument("--out", default=None, help="slim .pt checkpoint to write")
    ex.add_argument("--onnx", default=None, help="ONNX model to write")
    ex.add_argument("--float32", action="store_true", help="keep float32 weights (default: "
                    "float16, half the size)")
    ex.add_argument("--overwrite", action="store_true")
    ex.set_defaults(func=run_export)

    av = sub.add_parser("average", help="average the weights of models of one training "
                        "lineage (e.g. a model and the run trained on from it)")
    av.add_argument("models", nargs="+", help="two or more checkpoints")
    av.add_argument("--out", required=True, help="averaged .pt checkpoint to write")
    av.add_argument("--float32", action="store_true", help="keep float32 weights (default: "
                    "float16, half the size)")
    av.add_argument("--overwrite", action="store_true")
    av.set_defaults(func=run_average)


def _info_onnx(path: Path) -> int:
    """``info`` for an exported .onnx model: what its metadata says (no torch needed)."""
    from ..onnx_backend import OnnxMaskModel, OnnxModelError, load_frame_graph, load_int8_graph

    try:
        model = OnnxMaskModel(path)
        frame = None if model.frame_graph else load_frame_graph(model, "auto")
        int8 = None if model.frame_graph else load_int8_graph(model, "auto")
    except OnnxModelError as err:
        raise UserError(str(err)) from None
    cfg, stft_cfg = model.model_config, model.stft_cfg
    gates = 4 if model.cell == "lstm" else 3
    h, f, k, out = model.hidden, model.n_freqs, model.lookahead, model.output_size
    macs = sum(gates * h * ((f * (k + 1) if i == 0 else h) + h) for i in range(model.layers))
    macs += h * out  # the dense layer and any deep filter's
    params = sum(gates * (h * (f * (k + 1) if i == 0 else h) + h * h + 2 * h)
                 for i in range(model.layers)) + h * out + out
    ms_per_sample = 1000 / stft_cfg.sample_rate
    if model.frame_graph:
        print(f"model: {path} (ONNX, one frame per call, {model.weights} weights: a stream's "
              "hop graph; runs with onnxruntime)")
    else:
        kind = "" if model.weights == "float32" else f", {model.weights} recurrences"
        print(f"model: {path} (ONNX{kind}, runs with onnxruntime)")
        print("streams with: " + (f"{frame.path.name} ({frame.weights} weights)" if frame else
                                  "this graph" if kind else "float32 (no int8 graph beside it)"))
        if int8 is not None:
            print(f"files at --precision int8: {int8.path.name} (int8 recurrences)")
    print(f"architecture: {model.cell.upper()} {model.layers}x{h} + dense {h}->{f} + sigmoid, "
          + _deep_filter(cfg) + f"{cfg.get('compression', 'log')} features, "
          + (f"look-ahead {k} frame(s)" if k else "causal"))
    print(f"parameters: {params:,}")
    print(f"multiply-accumulates: {macs:,} per frame, "
          f"{macs * stft_cfg.sample_rate / stft_cfg.hop / 1e6:.1f} M per second of audio")
    print(f"STFT: {stft_cfg.sample_rate} Hz, n_fft {stft_cfg.n_fft}, hop {stft_cfg.hop} "
          f"(algorithmic latency {stft_cfg.stream_latency(k) * ms_per_sample:.0f} ms)")
    return EXIT_OK


def _deep_filter(model_config: dict) -> str:
    """The architecture line's words for a deep filter ("" for a mask-only model)."""
    if not model_config.get("df_bins"):
        return ""
    return (f"deep filter on the lowest {model_config['df_bins']} bins over "
            f"{model_config['df_order']} frames, ")


def run_info(args: argparse.Namespace) -> int:
    if args.model and str(args.model).lower().endswith(".onnx"):
        if args.recipe:
            raise UserError(f"{args.model}: an ONNX model carries no recipe; give its .pt "
                            "checkpoint")
        return _info_onnx(Path(args.model))
    import importlib.util

    if args.model is None and importlib.util.find_spec("torch") is None:
        from ..onnx_backend import default_onnx_path

        if args.recipe:
            raise UserError("the recipe is kept in the shipped .pt checkpoint, which needs "
                            "torch to read: pip install 'speechmask[torch]'")
        return _info_onnx(default_onnx_path())
    from ..checkpoint import default_model_path, load_model, training_stages
    from ..model import describe

    path = Path(args.model) if args.model else default_model_path()
    model, stft_cfg, payload = load_model(path)
    recipe = payload.get("recipe") if isinstance(payload.get("recipe"), dict) else None
    if args.recipe:
        # Only the text, as it was run, so that it can be piped or saved as it is.
        if not recipe or not recipe.get("text"):
            raise UserError(f"{path}: no recipe recorded (made by train or finetune, not by "
                            "train --recipe)")
        print(recipe["text"].rstrip())
        return EXIT_OK
    frames_per_second = stft_cfg.sample_rate / stft_cfg.hop
    info = describe(model, frames_per_second)
    print(f"model: {path}")
    print(f"architecture: {info['cell'].upper()} {info['layers']}x{info['hidden']} + dense "
          f"{info['hidden']}->{info['n_freqs']} + sigmoid, " + _deep_filter(info)
          + f"{info['compression']} features, "
          + (f"look-ahead {info['lookahead']} frame(s)" if info["lookahead"] else "causal"))
    print(f"parameters: {info['parameters']:,}")
    print(f"multiply-accumulates: {info['macs_per_frame']:,} per frame, "
          f"{info['mmacs_per_second']:.1f} M per second of audio")
    lookahead = info["lookahead"]
    ms_per_sample = 1000 / stft_cfg.sample_rate
    latency = stft_cfg.stream_latency(lookahead) * ms_per_sample
    print(f"STFT: {stft_cfg.sample_rate} Hz, n_fft {stft_cfg.n_fft}, hop {stft_cfg.hop} "
          f"(algorithmic latency {latency:.0f} ms"
          + (f", of which {lookahead * stft_cfg.hop * ms_per_sample:.0f} ms look-ahead: "
             f"{lookahead} frame(s))" if lookahead else ")"))
    if recipe:
        print(f"recipe: {recipe.get('name')} (speechmask info --recipe prints it)")
    stages = training_stages(payload)
    # One line per run or average the weights went through (earlier ones: `train --init`).
    for i, stage in enumerate(stages, 1):
        label = f"training (stage {i} of {len(stages)})" if len(stages) > 1 else "training"
        if stage.get("averaged_from"):
            print(f"{label}: weights = mean of {', '.join(map(str, stage['averaged_from']))}")
        else:
            print(f"{label}: epoch {stage.get('epoch')}, valid SNR "
                  f"{stage.get('valid_snr_db', float('nan')):.2f} dB, "
                  f"{stage.get('seconds', 0) / 60:.0f} min")
    train_config = payload.get("train_config")
    held = train_config.get("holdout_noise") if isinstance(train_config, dict) else None
    if held:
        print(f"noise types held out of training: {', '.join(held)} (the last stage's valid "
              "SNR is on these only)")
    calibration = payload.get("calibration")
    if isinstance(calibration, dict):
        by_exponent = {s["exponent"]: s for s in calibration.get("scores", [])}
        trained, chosen = by_exponent.get(1.0), by_exponent.get(model.cfg.mask_exponent)
        gain = (f": SNR {trained['snr_db']:.2f} -> {chosen['snr_db']:.2f} dB, SI-SDR "
                f"{trained['si_sdr_db']:.2f} -> {chosen['si_sdr_db']:.2f} dB"
                if trained and chosen else "")
        print(f"mask exponent: {model.cfg.mask_exponent:g} (calibrated on the "
              f"{calibration.get('set')}{gain})")
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    from ..checkpoint import default_model_path, export_inference, load_model
    from ..outputs import refuse_target

    if not args.out and not args.onnx:
        raise UserError("give --out FILE.pt (slim checkpoint) and/or --onnx FILE.onnx")
    src = Path(args.model) if args.model else default_model_path()
    targets = [args.out, args.onnx]
    if args.onnx:
        from ..onnx_backend import frame_graph_path, int8_graph_path

        targets += [frame_graph_path(args.onnx), int8_graph_path(args.onnx)]
    for target in filter(None, targets):
        refuse_target(Path(target), [src], args.overwrite)
    model, stft_cfg, _ = load_model(src)
    if args.out:
        out = export_inference(src, args.out, half=not args.float32)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.parameter_count():,} "
              f"parameters, {'float32' if args.float32 else 'float16'} weights)")
    if args.onnx:
        try:
            import onnx  # noqa: F401

            from ..onnx_backend import (
                export_onnx,
                export_onnx_frame,
                export_onnx_int8,
                frame_graph_path,
                int8_graph_path,
            )
        except ImportError as err:  # onnx is an optional extra
            raise UserError(f"ONNX export needs the onnx package ({err.name} missing): "
                            "pip install 'speechmask[torch]'") from None
        out = export_onnx(model, stft_cfg, args.onnx)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): frame-by-frame model with its "
              "recurrent state as inputs/outputs, runs with onnxruntime alone")
        out = export_onnx_frame(model, stft_cfg, frame_graph_path(args.onnx))
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): its one-frame graph with int8 "
              "weights, which `speechmask stream` runs each 16 ms hop with")
        out = export_onnx_int8(args.onnx, int8_graph_path(args.onnx))
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): the model with int8 recurrent "
              "products, which `speechmask enhance --precision int8` runs files with")
    return EXIT_OK


def run_average(args: argparse.Namespace) -> int:
    from ..checkpoint import average_models, load_model
    from ..outputs import refuse_target

    target = Path(args.out)
    refuse_target(target, [Path(src) for src in args.models], args.overwrite)
    out = average_models(args.models, target, half=not args.float32)
    model, _, _ = load_model(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.parameter_count():,} "
          f"parameters): the mean of {len(args.models)} models' weights")
    return EXIT_OK
