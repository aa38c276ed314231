"""Self-describing checkpoints: plain dicts of configs, tensors and metrics (no pickled classes),
written atomically and loaded with ``weights_only=True``."""

from __future__ import annotations

import os
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .atomic import write_atomic
from .errors import first_line
from .features import StftConfig
from .model import MaskNet, ModelConfig

FORMAT = "speechmask-checkpoint"
# Bump when the checkpoint layout changes incompatibly; load() refuses other versions.
VERSION = 1


class CheckpointError(Exception):
    """A model file cannot be used. ``str(err)`` is one line naming the file."""


def default_model_path() -> Path:
    """The shipped pretrained model (package data, so it works from a wheel too)."""
    return Path(str(resources.files("speechmask") / "pretrained" / "default" / "model.pt"))


def save(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plus format/version) to ``path``."""
    return write_atomic(
        path, lambda handle: torch.save({"format": FORMAT, "version": VERSION, **payload}, handle))


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s weights and buffers as detached CPU tensors, as checkpoints store them."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def model_payload(model: MaskNet, stft_cfg: StftConfig, **extra: Any) -> dict[str, Any]:
    """What an inference checkpoint holds: configs, weights (incl. normalisation), extras."""
    return {
        "model_config": asdict(model.cfg),
        "stft_config": asdict(stft_cfg),
        "state_dict": cpu_state_dict(model),
        **extra,
    }


def load_raw(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a checkpoint dict, or raise :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        first = first_line(err)
        raise CheckpointError(
            f"{path}: not a readable speechmask model ({first[:120]}); re-download or retrain it"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a speechmask checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')} is not supported by this "
            f"speechmask (expects {VERSION}); retrain or use a matching speechmask release"
        )
    return payload


def load_model(path: str | os.PathLike | None = None) -> tuple[MaskNet, StftConfig, dict]:
    """Model (in eval mode), its STFT config and the whole checkpoint dict."""
    path = Path(path) if path is not None else default_model_path()
    payload = load_raw(path)
    try:
        model = MaskNet(ModelConfig(**payload["model_config"]))
        model.load_state_dict(payload["state_dict"])
        stft_cfg = StftConfig(**payload["stft_config"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = first_line(err, 120)
        raise CheckpointError(f"{path}: model does not match this speechmask ({first})") from None
    model.eval()
    return model, stft_cfg, payload


def training_stages(payload: dict[str, Any]) -> list[dict]:
    """The training stages of a checkpoint, oldest first: the best-epoch metrics of each run its
    weights went through (earlier runs it was started from, kept as ``history``, then its own
    ``metrics``). An average (:func:`average_models`) is a stage too, ``{"averaged_from":
    [paths]}``, so a model trained on from an average still says its weights were one."""
    history = [m for m in payload.get("history") or [] if isinstance(m, dict)]
    own = payload.get("metrics")
    is_stage = isinstance(own, dict) and ("valid_snr_db" in own or "averaged_from" in own)
    return history + ([own] if is_stage else [])


def average_models(srcs: list[str | os.PathLike], dst: str | os.PathLike,
                   half: bool = True) -> Path:
    """Write the uniform average of the weights of ``srcs`` to ``dst`` ("model soup").

    Only meaningful for models on one training lineage (one was started from the other with
    ``train --init``), whose weights stay in one basin, where the mean often scores above both
    (docs/experiments.md, docs/training.md).
    The models must share architecture and STFT; the result keeps the training history of the
    source with the longest one, records the sources, and drops any mask calibration (the
    average needs its own)."""
    if len(srcs) < 2:
        raise CheckpointError("average needs at least two models")
    payloads = [load_raw(src) for src in srcs]
    first = payloads[0]
    for src, payload in zip(srcs[1:], payloads[1:], strict=True):
        if (payload.get("model_config") != first.get("model_config")
                or payload.get("stft_config") != first.get("stft_config")
                or payload["state_dict"].keys() != first["state_dict"].keys()):
            raise CheckpointError(f"{src}: architecture or STFT differs from {srcs[0]}; only "
                                  "models of one training lineage can be averaged")
    state = {key: sum(p["state_dict"][key].float() for p in payloads) / len(payloads)
             if tensor.is_floating_point() else tensor
             for key, tensor in first["state_dict"].items()}
    # The stages an average records are its longest source's (the others are on its lineage).
    lineage, history = max(((p, training_stages(p)) for p in payloads), key=lambda ps: len(ps[1]))
    return save(dst, {
        "model_config": first["model_config"], "stft_config": first["stft_config"],
        "train_config": lineage.get("train_config"), "history": history,
        "metrics": {"averaged_from": [str(src) for src in srcs]},
        "state_dict": _half(state) if half else state,
    })


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors as float16 (half the file; cast back to float32 on load)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def export_inference(src: str | os.PathLike, dst: str | os.PathLike, half: bool = True) -> Path:
    """Write a slim inference checkpoint of ``src``: configs, weights, metrics and the recipe
    it was made by (no optimiser state); with ``half`` the weights are stored as float16,
    halving the file (they are cast back to float32 on load; masks change by < 1e-3)."""
    payload = load_raw(src)
    keep = {k: payload[k] for k in ("model_config", "stft_config", "metrics", "train_config",
                                    "epoch", "history", "calibration", "recipe")
            if k in payload}
    state = payload["state_dict"]
    return save(dst, {**keep, "state_dict": _half(state) if half else state})
