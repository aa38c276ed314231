"""A training recipe: one TOML file that says how a model is made, run stage by stage.

A recipe is the whole story of a shipped model in one place instead of a chain of hand-typed
commands. Its format (see ``recipes/default.toml``)::

    name = "default"                 # what the model is called in `speechmask info`
    description = "..."              # one line, for people
    init = "init/vcc2016.pt"         # optional: weights the first stage starts from, relative
                                     # to the recipe file ("" or absent: random weights)
    [base]                           # TrainConfig fields every stage shares (as --config)
    loss = "bce+snr+sisdr"
    [base.mix]
    snr_low_db = -10.0
    [[stage]]                        # one table per stage, run in order
    name = "broad"                   # folder name of the stage: OUT/01_broad
    epochs = 24                      # TrainConfig fields of this stage, over [base]
    [[stage]]
    name = "polish"
    lr = 1e-4

Each stage starts from the best weights of the one before (the first from ``init``) and writes
an ordinary run folder (``best.pt``, ``last.pt``, ``train_log.csv``, ``loss_curve.png``). A
finished stage leaves ``done.json``; running the recipe again skips finished stages and resumes
an interrupted one from its ``last.pt``, so a long recipe can be spread over sessions by
re-running the same command. The last stage's best model is copied to ``OUT/model.pt`` with
the recipe's text inside, so ``speechmask info`` can say how it was made.

A stage whose ``model.hidden`` (or ``model.lookahead``) is larger than its starting model's,
or that sets a ``model.df_bins`` deep filter the starting model lacks, grows it first (new
units, inputs and coefficients start silent: the same output, ``train.grown_init``), so a
recipe can widen the init (``--set model.hidden=512``); the grown start is kept as ``start.pt``
in the stage's folder, and an ``average`` naming ``init`` uses it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from .atomic import write_text_atomic
from .config import ConfigError, from_dict, merge
from .features import StftConfig
from .train import TrainConfig, adopt_architecture, grown_init
from .trainsetup import load_init

log = logging.getLogger(__name__)

RECIPE_KEYS = ("name", "description", "init", "base", "stage", "average")
# Where and how fast to run: given per command, never part of what a recipe records.
RUNTIME_FIELDS = ("threads", "device", "loader_workers")
DONE = "done.json"
RECIPE_COPY = "recipe.toml"
FINAL = "model.pt"
# A stage that grows its starting model (model.hidden or model.lookahead above the init's, or
# a deep filter it lacks)
# keeps the grown start here, in its folder: what an average naming "init" then means.
GROWN_START = "start.pt"


@dataclass(frozen=True)
class Stage:
    """One stage of a recipe: its folder name, its full training configuration and the
    settings the recipe names for it (``[base]``, the stage's table, overrides)."""

    name: str
    config: TrainConfig
    settings: dict


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``text`` is the file as written; ``overrides`` the settings given on
    top of it for every stage (``--set``)."""

    name: str
    description: str
    init: Path | None  # absolute path of the first stage's starting weights, or None
    stages: tuple[Stage, ...]
    text: str
    path: Path
    overrides: tuple[str, ...] = ()
    # The final model is the uniform average of these ("init" or stage names), when given;
    # else the last stage's best epoch.
    average: tuple[str, ...] = ()
    # True when ``init`` was given on the command line (``train --recipe R --init M``: the same
    # recipe from other weights, e.g. a widened starting model) instead of the file's own.
    init_overridden: bool = False

    @property
    def record(self) -> str:
        """What the run folder and the final model keep: the text, and the command-line init
        and overrides as a closing comment, so a run says exactly what it ran."""
        flags = [f"--init {self.init}"] if self.init_overridden else []
        flags += [f"--set {item}" for item in self.overrides]
        if not flags:
            return self.text
        return self.text.rstrip("\n") + "\n# run with " + " ".join(flags) + "\n"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such recipe file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the recipe ({err})") from None


def parse_recipe(text: str, path: Path, overrides: tuple[str, ...] = (),
                 init: str | os.PathLike | None = None) -> Recipe:
    """Parse a recipe's ``text`` (``path`` names it in errors and anchors ``init``);
    ``overrides`` (``KEY=VALUE`` strings as ``--set`` takes them) apply to every stage, after
    the file; ``init`` (a model file, relative to the working directory) replaces the file's
    ``init``, also where ``average`` names it. Every stage's configuration is built here, so a
    typo in the last stage fails before the first one trains for an hour."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    unknown = sorted(set(data) - set(RECIPE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown recipe key {unknown[0]!r}; a recipe has "
                          f"{', '.join(RECIPE_KEYS)} (training settings go in [base] or a "
                          "[[stage]])")
    stages_raw = data.get("stage")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise ConfigError(f"{path}: no [[stage]] table; a recipe needs at least one stage")
    from .config import parse_overrides

    extra = parse_overrides(list(overrides))
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise ConfigError(f"{path}: [base] must be a table of training settings")
    stages, names = [], set()
    for i, raw in enumerate(stages_raw, 1):
        settings = dict(raw)
        name = settings.pop("name", f"stage{i}")
        if not isinstance(name, str) or not name or not all(
                c.isalnum() or c in "-_" for c in name):
            raise ConfigError(f"{path}: stage {i} name {name!r}: use letters, digits, - and _")
        if name in names:
            raise ConfigError(f"{path}: two stages named {name!r}")
        names.add(name)
        named = merge(merge(base, settings), extra)
        try:
            cfg = from_dict(TrainConfig, named)
        except ConfigError as err:
            raise ConfigError(f"{path}: stage {name!r}: {err}") from None
        if cfg.teacher:
            # A path in the file is relative to the file, as init is; one given with --set,
            # like --init, to the working directory.
            teacher = (Path(cfg.teacher) if "teacher" in extra
                       else path.parent / cfg.teacher).resolve()
            if not teacher.is_file():
                raise ConfigError(f"{path}: stage {name!r}: teacher {cfg.teacher!r}: no such "
                                  f"model file ({teacher})")
            cfg = replace(cfg, teacher=str(teacher))
        stages.append(Stage(name, cfg, named))
    init_override, init = init, data.get("init") or None
    if init is not None and not isinstance(init, str):
        raise ConfigError(f"{path}: init must be a path (text), got {init!r}")
    override = Path(init_override).resolve() if init_override is not None else None
    if override is not None:
        if not override.is_file():
            raise ConfigError(f"{init_override}: no such model file to start the recipe from")
        init_path: Path | None = override
    else:
        init_path = (path.parent / init).resolve() if init else None
        if init_path is not None and not init_path.is_file():
            raise ConfigError(f"{path}: init {init!r}: no such model file ({init_path})")
    average = data.get("average", [])
    known = {"init"} | names if init_path is not None else names
    if not isinstance(average, list) or any(not isinstance(a, str) for a in average):
        raise ConfigError(f"{path}: average must be a list of stage names (or \"init\")")
    for item in average:
        if item not in known:
            raise ConfigError(f"{path}: average names {item!r}, which is neither a stage nor "
                              f"init; use some of {', '.join(sorted(known))}")
    if len(average) == 1:
        raise ConfigError(f"{path}: average needs two or more models, got {average}")
    return Recipe(name=str(data.get("name") or path.stem),
                  description=str(data.get("description") or ""), init=init_path,
                  stages=tuple(stages), text=text, path=path, overrides=tuple(overrides),
                  init_overridden=override is not None,
                  average=tuple(average))


def split_runtime(overrides: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """``--set`` items -> (recipe overrides, runtime settings such as ``threads``)."""
    from .config import parse_overrides

    runtime = {k: v for item in overrides
               for k, v in parse_overrides([item]).items() if k in RUNTIME_FIELDS}
    kept = tuple(item for item in overrides
                 if item.partition("=")[0].strip() not in RUNTIME_FIELDS)
    return kept, runtime


def load_recipe(path: str | os.PathLike, overrides: tuple[str, ...] = (),
                init: str | os.PathLike | None = None) -> Recipe:
    """Read and parse the recipe file ``path`` (see :func:`parse_recipe`)."""
    path = Path(path)
    return parse_recipe(_read_text(path), path, overrides, init)


def stage_dir(out: Path, index: int, stage: Stage) -> Path:
    """``OUT/01_broad``: numbered, so the folders sort in the order they ran."""
    return out / f"{index + 1:02d}_{stage.name}"


def stage_status(out: Path, recipe: Recipe) -> list[str]:
    """Per stage: "done", "interrupted" (has ``last.pt``) or "pending"."""
    status = []
    for i, stage in enumerate(recipe.stages):
        d = stage_dir(out, i, stage)
        status.append("done" if (d / DONE).is_file() else
                      "interrupted" if (d / "last.pt").is_file() else "pending")
    return status


def check_out_dir(out: Path, recipe: Recipe) -> None:
    """Refuse to continue in ``out`` a run of another recipe (its stages would mix)."""
    copy = out / RECIPE_COPY
    if copy.is_file() and copy.read_text(encoding="utf-8") != recipe.record:
        raise ConfigError(f"{out}: was made by another recipe (see {copy}); choose another "
                          "--out, or delete the folder to start again")


def run_recipe(
    recipe: Recipe,
    out_dir: str | os.PathLike,
    train_fn: Callable[..., dict] | None = None,
    runtime: dict[str, Any] | None = None,
    **train_kwargs: Any,
) -> Path:
    """Run the stages of ``recipe`` that are not done into ``out_dir`` and return the final
    model's path (``OUT/model.pt``).

    ``runtime`` (e.g. ``{"threads": 2, "loader_workers": 1, "device": "cpu"}``) says where and
    how fast to run: not part of the recipe, so it replaces those fields of every stage.
    ``train_fn`` is :func:`speechmask.train.train` (given by callers that wrap it);
    ``train_kwargs`` go to it (``corpus``, ``progress``, ``dist``)."""
    from .train import train

    train_fn = train_fn or train
    out = Path(out_dir)
    check_out_dir(out, recipe)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / RECIPE_COPY, recipe.record)
    previous: Path | None = recipe.init
    status = stage_status(out, recipe)
    for i, (stage, state) in enumerate(zip(recipe.stages, status, strict=True)):
        d = stage_dir(out, i, stage)
        if state == "done":
            log.info("stage %d/%d %s: done, skipped", i + 1, len(recipe.stages), stage.name)
            previous = d / "best.pt"
            continue
        cfg = replace(stage.config, **(runtime or {}))
        init_model = init_history = None
        resume = state == "interrupted"
        if not resume and previous is not None:
            # As `train --init` does: the same checks, the architecture of the weights.
            init_model, init_history = load_init(previous)
            grown = stage.settings.get("model", {})
            try:
                cfg = adopt_architecture(cfg, init_model.cfg, "lookahead" in grown,
                                         "hidden" in grown,
                                         "df_bins" in grown or "df_order" in grown)
            except ValueError as err:
                raise ConfigError(f"{recipe.path}: stage {stage.name!r}: {err}") from None
            start = grown_init(init_model, cfg.model, cfg.seed)
            if start is not init_model:
                # Kept, so that an average naming "init" averages the very weights the stage
                # started from (training finds nothing more to grow).
                init_model = start
                d.mkdir(parents=True, exist_ok=True)
                ckpt.save(d / GROWN_START, ckpt.model_payload(
                    start, StftConfig(), history=init_history,
                    metrics={"grown_from": str(previous), "hidden": cfg.model.hidden,
                             "lookahead": cfg.model.lookahead,
                             "df_bins": cfg.model.df_bins}))
        log.info("stage %d/%d %s: %s%s", i + 1, len(recipe.stages), stage.name,
                 "resuming" if resume else "training",
                 f" from {previous}" if init_model is not None else "")
        result = train_fn(cfg, d, resume=resume, init_model=init_model,
                          init_history=init_history, **train_kwargs)
        best = {k: v for k, v in (result.get("best") or {}).items()
                if isinstance(v, (int, float, str))}
        write_text_atomic(d / DONE, json.dumps({"stage": stage.name, "epochs": result.get("epochs"),
                                          "best": best}, indent=2))
        previous = d / "best.pt"
    final = out / FINAL
    if recipe.average:
        bests = {stage.name: stage_dir(out, i, stage) / "best.pt"
                 for i, stage in enumerate(recipe.stages)}
        first_start = stage_dir(out, 0, recipe.stages[0]) / GROWN_START
        init = first_start if first_start.is_file() else recipe.init
        sources = [init if name == "init" else bests[name] for name in recipe.average]
        log.info("recipe %s: final model = mean of %s", recipe.name, ", ".join(recipe.average))
        previous = ckpt.average_models(sources, out / "average.pt", half=False)
    payload = ckpt.load_raw(previous)
    payload["recipe"] = {"name": recipe.name, "text": recipe.record}
    ckpt.save(final, payload)
    log.info("recipe %s finished: %s", recipe.name, final)
    return final
