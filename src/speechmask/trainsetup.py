"""How a training run is set up before :func:`speechmask.train.train` starts: which settings it
trains with and whether its run folder may be used.

The settings of a run are the :class:`~speechmask.train.TrainConfig` defaults, then a TOML file,
then the shorthand settings the command names, then ``KEY=VALUE`` overrides
(:func:`explicit_settings`). :func:`prepare` applies the run-folder rules: a new run needs an
empty (or ``overwrite``) folder; ``resume`` continues with the config stored in ``last.pt``
(only the epochs, patience, threads and device given this time change it); an ``--init`` model
gives the run its architecture (:func:`load_init`).

Errors users can cause are :class:`SetupError` (a ``ValueError``): one line, no traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch-importing modules: loaded only when a run is set up
    from .model import MaskNet
    from .train import TrainConfig


class SetupError(ValueError):
    """A run that cannot start as asked (one line saying what to do instead)."""


def explicit_settings(config: str | os.PathLike | None = None,
                      shorthands: Mapping[str, Any] | None = None, *,
                      snr_range: tuple[float, float] | None = None,
                      holdout_noise: Sequence[str] | None = None,
                      augment: bool = True,
                      overrides: Sequence[str] = ()) -> dict:
    """The TrainConfig settings a command names, as one nested dict: ``config``'s TOML file,
    then ``shorthands`` (dotted key -> value, e.g. ``{"model.hidden": 64}``), the SNR range,
    the held-out noise types and ``augment=False`` (every augmentation off), then each
    ``overrides`` ``KEY=VALUE`` (a TOML value)."""
    from .config import merge, nest, parse_overrides, read_toml

    settings = read_toml(config) if config else {}
    if isinstance(settings.get("teacher"), str) and settings["teacher"]:
        # A path in a file is relative to that file, as a recipe's are.
        settings["teacher"] = str((Path(config).parent / settings["teacher"]).resolve())
    settings = merge(settings, nest(shorthands or {}))
    if snr_range is not None:
        settings = merge(settings, {"mix": {"snr_low_db": snr_range[0],
                                            "snr_high_db": snr_range[1]}})
    if holdout_noise is not None:
        settings["holdout_noise"] = list(holdout_noise)
    if not augment:
        from .augment import AugmentConfig
        from .config import to_dict

        settings = merge(settings, {"mix": {"augment": to_dict(AugmentConfig.off())}})
    return merge(settings, parse_overrides(list(overrides)))


def train_config(settings: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of :func:`explicit_settings`' dict (unnamed settings: the defaults)."""
    from .config import from_dict
    from .train import TrainConfig

    return from_dict(TrainConfig, dict(settings))


@dataclass(frozen=True)
class RunRequest:
    """A training run as asked for: where, with which settings, new or continued."""

    # Run folder: best.pt, last.pt, log, curve.
    out: Path
    # The explicitly named settings (explicit_settings()); the rest are the defaults.
    settings: dict = field(default_factory=dict)
    # Continue the run in `out` from its last.pt (its stored config, not `settings`).
    resume: bool = False
    # Start again in an `out` that holds a run.
    overwrite: bool = False
    # Given for this invocation (None: not given). On resume these replace last.pt's: more
    # epochs extend the run, patience changes when it stops; threads and device say where and
    # how fast to run, which is not part of the run's recipe.
    epochs: int | None = None
    patience: int | None = None
    threads: int | None = None
    device: str | None = None


def prepare(request: RunRequest, init_model: MaskNet | None = None) -> TrainConfig:
    """Check the run folder against resume/overwrite and return the run's TrainConfig (from
    last.pt when resuming; with the architecture of ``init_model``, the loaded --init model,
    when given). Runs where the run folder is: in the launching process, or on rank 0 of a
    multi-process run."""
    out = request.out
    if request.resume and not (out / "last.pt").is_file():
        raise SetupError(f"{out / 'last.pt'}: nothing to resume; drop --resume to start fresh")
    if not request.resume and (out / "last.pt").exists() and not request.overwrite:
        raise SetupError(f"{out}: holds a training run; pass --resume to continue it or "
                         "--overwrite to start again")
    explicit = request.settings
    cfg = train_config(explicit)
    if init_model is not None:
        if request.resume:
            raise SetupError("--init starts a new run from a model's weights; --resume "
                             f"continues the run in {out}: use one of them")
        from .train import adopt_architecture

        try:
            grown = explicit.get("model", {})
            cfg = adopt_architecture(cfg, init_model.cfg, "lookahead" in grown,
                                     "hidden" in grown,
                                     "df_bins" in grown or "df_order" in grown)
        except ValueError as err:
            raise SetupError(f"--init: {err}") from None
    if request.resume:
        from .checkpoint import load_raw
        from .train import config_from_dict

        try:
            cfg = config_from_dict(load_raw(out / "last.pt")["train_config"])
        except (KeyError, TypeError, ValueError) as err:
            raise SetupError(f"{out / 'last.pt'}: holds no usable training config ({err}); "
                             "start again with --overwrite") from None
        if request.epochs is not None and request.epochs > cfg.epochs:
            # More epochs stretch the cosine schedule from here on (the rate rises a little).
            cfg = replace(cfg, epochs=request.epochs)
        cfg = replace(cfg, threads=request.threads or 0, device=request.device or cfg.device,
                      loader_workers=explicit.get("loader_workers", cfg.loader_workers))
        if request.patience is not None:
            cfg = replace(cfg, patience=request.patience)
    return cfg


def load_init(path: str | os.PathLike | None) -> tuple[MaskNet | None, list[dict] | None]:
    """``(model, training stages)`` of the --init checkpoint (``(None, None)`` without one);
    one-line error when it cannot seed a run (unreadable, or trained on another STFT than
    training uses)."""
    from .checkpoint import load_model, training_stages
    from .features import StftConfig

    if path is None:
        return None, None
    if not Path(path).is_file():
        raise SetupError(f"{path}: no such model file; pass a checkpoint such as "
                         "runs/NAME/best.pt or the shipped model.pt")
    model, stft_cfg, payload = load_model(path)
    if stft_cfg != StftConfig():
        raise SetupError(f"{path}: trained on another STFT ({stft_cfg}); training uses "
                         f"{StftConfig()}")
    return model, training_stages(payload)
