"""Import user datasets into a normalised folder that training and fine-tuning can read.

Three source layouts are recognised (:data:`LAYOUTS`):

``course``
    The original course data: ``trs*`` clean speech, ``trn*`` noise and ``trx*`` mixture
    triplets for training and ``vs*``/``vn*``/``vx*`` triplets for validation, found anywhere
    under the source folder and matched by the part of the name after the prefix
    (``trs0001.wav``, ``trn0001.wav``, ``trx0001.wav``).
``pairs``
    VoiceBank-DEMAND style: folders ``clean_<X>`` and ``noisy_<X>`` holding files with the same
    names. A set whose ``<X>`` contains ``test`` or ``val`` is the validation split.
``mixed``
    A folder of clean speech (``clean/`` or ``speech/``) and a folder of noise (``noise/``, or
    any folder passed as ``noise_dir``), mixed on the fly during training.

:func:`import_dataset` converts everything to 16 kHz mono FLAC and writes::

    OUT/dataset.json             layout, counts, hours (written last: its presence = complete)
    OUT/train/pairs.csv          + clean/ noisy/      (course, pairs)
    OUT/train/speech/*.flac      + noise/*.flac       (mixed)
    OUT/valid/pairs.csv          + clean/ noisy/      (always; the evalsets.write_pairs format)

:func:`load_user_data` reads such a folder back and :func:`make_train_dataset` turns it into a
training :class:`torch.utils.data.Dataset` (:class:`PairDataset` or
:class:`~speechmask.dataset.MixtureDataset`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import write_text_atomic
from .audio import MODEL_RATE, AudioError, find_audio_files, load_mono, write_audio
from .corpus import DataError
from .dataset import MixtureDataset, training_item
from .evalsets import EVAL_SNRS_DB, PAIRS_COLUMNS, EvalPair, load_pair, read_pairs
from .features import StftConfig
from .mixing import MixConfig, Mixture, mix

log = logging.getLogger(__name__)

LAYOUTS = ("course", "pairs", "mixed")
# Version of the OUT folder format, stored in dataset.json.
DATASET_FORMAT = 1
# Clean/noisy length difference tolerated (and trimmed away): 10 ms at the model rate.
MAX_LENGTH_MISMATCH = MODEL_RATE // 100
# Fewest usable training items (pairs, or speech files for "mixed") and validation pairs.
MIN_TRAIN_ITEMS = 2
MIN_VALID_PAIRS = 1
# Random gain range of PairDataset crops, dB. Gains <= 0 dB never push a file past full scale.
PAIR_GAIN_LOW_DB = -10.0
PAIR_GAIN_HIGH_DB = 0.0
# Default configs (module-level singletons: both dataclasses are frozen).
DEFAULT_STFT = StftConfig()
DEFAULT_MIX = MixConfig()

_LAYOUT_HELP = (
    "course (trs*/trn*/trx* and vs*/vn*/vx* audio triplets), "
    "pairs (clean_<X>/ and noisy_<X>/ folders with matching file names), "
    "mixed (clean/ or speech/ plus noise/ subfolders)"
)
_COURSE_RE = re.compile(r"^(trs|trn|trx|vs|vn|vx)(.+)$", re.IGNORECASE)
_PAIR_DIR_RE = re.compile(r"^(clean|noisy)[_-](.+)$", re.IGNORECASE)
_SPEAKER_RE = re.compile(r"^([A-Za-z0-9]+)_.+$")
_ROLE_PREFIX = {"train": {"s": "trs", "n": "trn", "x": "trx"},
                "valid": {"s": "vs", "n": "vn", "x": "vx"}}


# ---------------------------------------------------------------------------------------------
# Layout detection


def _course_files(src: Path, warn: bool = False) -> dict[str, dict[str, dict[str, Path]]]:
    """``{split: {key: {role: path}}}`` of course files under ``src`` (roles s, n, x)."""
    groups: dict[str, dict[str, dict[str, Path]]] = {"train": {}, "valid": {}}
    for path in find_audio_files(src):
        m = _COURSE_RE.match(path.stem)
        if not m:
            continue
        prefix, key = m.group(1).lower(), m.group(2).lower()
        split = "train" if prefix.startswith("tr") else "valid"
        slot = groups[split].setdefault(key, {})
        role = prefix[-1]
        if role in slot:
            if warn:
                log.warning("duplicate course file %s (already have %s); ignored", path,
                            slot[role])
            continue
        slot[role] = path
    return groups


def _has_course_files(src: Path) -> bool:
    groups = _course_files(src)
    return any(len(slot) >= 2 for split in groups.values() for slot in split.values())


def _pair_sets(src: Path, warn: bool = False) -> list[tuple[str, Path, Path]]:
    """``(X, clean_dir, noisy_dir)`` for every ``clean_<X>``/``noisy_<X>`` sibling pair."""
    found: dict[tuple[str, str], dict[str, Path]] = {}
    for dirpath, dirnames, _ in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in list(dirnames):
            m = _PAIR_DIR_RE.match(name)
            if m:
                found.setdefault((dirpath, m.group(2).lower()), {})[m.group(1).lower()] = (
                    Path(dirpath) / name
                )
                dirnames.remove(name)  # do not descend into the audio folders themselves
    sets = []
    for (_, x), dirs in sorted(found.items()):
        if len(dirs) == 2:
            sets.append((x, dirs["clean"], dirs["noisy"]))
        elif warn:
            (kind, folder), = dirs.items()
            other = "noisy" if kind == "clean" else "clean"
            log.warning("%s has no matching %s_%s folder; ignored", folder, other, x)
    return sets


def _mixed_dirs(src: Path, noise_dir: Path | None) -> tuple[Path, Path] | None:
    """``(speech_dir, noise_dir)`` of a "mixed" layout, or None."""
    children = {c.name.lower(): c for c in sorted(src.iterdir()) if c.is_dir()}
    speech = children.get("clean") or children.get("speech")
    noise = noise_dir if noise_dir is not None else (
        children.get("noise") or children.get("noises"))
    if noise_dir is not None and speech is None:
        speech = src
    if speech is None or noise is None:
        return None
    return speech, noise


def _check_src(src: Path) -> None:
    if not src.exists():
        raise DataError(f"{src}: no such folder; expected a dataset in one of these layouts: "
                        f"{_LAYOUT_HELP}")
    if not src.is_dir():
        raise DataError(f"{src}: not a folder; expected a dataset folder in one of these "
                        f"layouts: {_LAYOUT_HELP}")
    if not any(src.iterdir()):
        raise DataError(f"{src}: folder is empty; expected a dataset in one of these layouts: "
                        f"{_LAYOUT_HELP}")


def detect_layout(src: str | os.PathLike, noise_dir: str | os.PathLike | None = None) -> str:
    """The layout of the dataset in ``src``: ``"course"``, ``"pairs"`` or ``"mixed"``.

    With ``noise_dir`` the layout is always ``"mixed"`` (speech from ``src/clean``,
    ``src/speech`` or ``src`` itself). Otherwise explicit ``clean/``+``noise/`` subfolders win,
    then ``clean_<X>``/``noisy_<X>`` folder pairs, then course triplets. Raises
    :class:`DataError` when ``src`` is missing, empty or matches none of them.
    """
    src = Path(src)
    _check_src(src)
    if noise_dir is not None:
        noise = Path(noise_dir)
        if not noise.is_dir():
            raise DataError(f"{noise}: noise folder does not exist")
        return "mixed"
    if _mixed_dirs(src, None) is not None:
        return "mixed"
    if _pair_sets(src):
        return "pairs"
    if _has_course_files(src):
        return "course"
    raise DataError(f"{src}: no known dataset layout found; expected one of: {_LAYOUT_HELP}")


# ---------------------------------------------------------------------------------------------
# Helpers


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Input SNR of a pair: ``10*log10(sum(clean**2) / sum((noisy - clean)**2))`` in dB
    (``inf`` when noisy equals clean)."""
    c = clean.astype(np.float64)
    pn = float(np.sum((noisy.astype(np.float64) - c) ** 2))
    ps = float(np.sum(c**2))
    if pn <= 0:
        return math.inf
    if ps <= 0:
        return -math.inf
    return 10.0 * math.log10(ps / pn)


def _safe_id(text: str) -> str:
    """A file-name-safe id from a relative path or stem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "item"


def _unique(base: str, used: set[str]) -> str:
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}_{n}"
    used.add(name)
    return name


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _speaker_of(stem: str) -> str:
    """``p226`` for ``p226_001``; ``""`` when the name does not look like ``<speaker>_<utt>``."""
    m = _SPEAKER_RE.match(stem)
    return m.group(1) if m else ""


# Largest share of the items a single held-out group (speaker, folder) may take when every group
# is bigger than the validation fraction asks for: validation never takes more than a third of
# the data. 3 or 4 equal speakers still split by speaker; 2 folders of 1,786 and 900 files
# (67 % and 33.5 %) split by file instead (the old rule held out the 1,786).
MAX_SINGLE_GROUP_SHARE = 1 / 3


def _holdout(groups: Sequence[str], fraction: float, seed: int, salt: int) -> set[str]:
    """Whole groups holding about ``fraction`` of the items (``groups``: one label per item).

    Groups are taken in a seeded order when they fit within ``round(fraction * n)`` items (at
    least 1, never all). When no group is that small, the smallest one is held if it takes at
    most :data:`MAX_SINGLE_GROUP_SHARE` of the items; otherwise the result is empty and the
    caller splits by file. Empty too when there are fewer than 2 groups."""
    counts = Counter(groups)
    uniq = sorted(counts)
    total = sum(counts.values())
    if len(uniq) < 2:
        return set()
    target = min(total - 1, max(1, round(fraction * total)))
    order = np.random.default_rng([seed, salt]).permutation(len(uniq))
    held: set[str] = set()
    size = 0
    for i in order:
        group = uniq[int(i)]
        if size + counts[group] <= target:
            held.add(group)
            size += counts[group]
        if size >= target:
            break
    if not held:
        smallest = min(uniq, key=lambda g: (counts[g], g))
        if counts[smallest] <= MAX_SINGLE_GROUP_SHARE * total:
            held = {smallest}
    return held


def _load(path: Path) -> np.ndarray | None:
    """Mono 16 kHz audio, or None (with a one-line warning) for an unusable or silent file."""
    try:
        audio = load_mono(path)
    except AudioError as err:
        log.warning("skipped %s", err)
        return None
    if not np.any(audio):
        log.warning("skipped %s: audio is silent (all zeros)", path)
        return None
    return audio


def _load_pair_files(clean_path: Path, noisy_path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(clean, noisy) at 16 kHz trimmed to the same length, or None (warned) when unusable."""
    clean = _load(clean_path)
    if clean is None:
        return None
    try:
        noisy = load_mono(noisy_path)
    except AudioError as err:
        log.warning("skipped %s", err)
        return None
    diff = abs(len(clean) - len(noisy))
    if diff > MAX_LENGTH_MISMATCH:
        log.warning("skipped pair %s / %s: lengths differ by %.1f ms (%d vs %d samples at "
                    "16 kHz; at most 10 ms is trimmed)", clean_path, noisy_path,
                    1000.0 * diff / MODEL_RATE, len(clean), len(noisy))
        return None
    n = min(len(clean), len(noisy))
    return clean[:n], noisy[:n]


class _PairWriter:
    """Writes ``clean/ID.flac``, ``noisy/ID.flac`` one pair at a time, then ``pairs.csv`` in
    the :func:`speechmask.evalsets.write_pairs` format."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.rows: list[dict] = []

    def add(self, pair: EvalPair) -> None:
        noisy = write_audio(self.folder / "noisy" / f"{pair.id}.flac", pair.noisy, MODEL_RATE)
        clean = write_audio(self.folder / "clean" / f"{pair.id}.flac", pair.clean, MODEL_RATE)
        self.rows.append({
            "id": pair.id,
            "noisy": noisy.relative_to(self.folder).as_posix(),
            "clean": clean.relative_to(self.folder).as_posix(),
            "input_snr_db": f"{pair.input_snr_db:g}",
            "noise_type": pair.noise_type,
            "speaker": pair.speaker,
            "speech_file": pair.speech_file,
            "noise_file": pair.noise_file,
            "_samples": len(pair.clean),
        })

    def move(self, rows: Sequence[dict], other: _PairWriter) -> None:
        """Move written pairs (files and rows) to ``other``."""
        moving = {id(r) for r in rows}
        for row in rows:
            for key in ("noisy", "clean"):
                dst = other.folder / row[key]
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.folder / row[key], dst)
        self.rows = [r for r in self.rows if id(r) not in moving]
        other.rows.extend(rows)

    @property
    def samples(self) -> int:
        return sum(r["_samples"] for r in self.rows)

    def close(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=PAIRS_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.folder / "pairs.csv", text.getvalue())


@dataclass
class _Job:
    """State of one import."""

    src: Path
    out: Path
    valid_fraction: float
    seed: int
    train: _PairWriter = field(init=False)
    valid: _PairWriter = field(init=False)
    used: dict[str, set[str]] = field(default_factory=lambda: {"train": set(), "valid": set()})

    def __post_init__(self) -> None:
        self.train = _PairWriter(self.out / "train")
        self.valid = _PairWriter(self.out / "valid")

    def add_pair(self, split: str, base_id: str, clean_path: Path, noisy_path: Path,
                 speaker: str, noise_file: str) -> bool:
        """Load, check and write one clean/noisy pair into ``split``. False when skipped."""
        loaded = _load_pair_files(clean_path, noisy_path)
        if loaded is None:
            return False
        clean, noisy = loaded
        pair_id = _unique(_safe_id(base_id), self.used[split])
        writer = self.train if split == "train" else self.valid
        writer.add(EvalPair(
            id=pair_id, clean=clean, noisy=noisy, input_snr_db=measured_snr_db(clean, noisy),
            noise_type="", speaker=speaker, speech_file=_rel(clean_path, self.src),
            noise_file=noise_file,
        ))
        return True

    def hold_out_pairs(self, by_speaker: bool) -> None:
        """Move ``valid_fraction`` of the written training pairs (whole speakers when
        ``by_speaker``) to the validation split."""
        rows = list(self.train.rows)
        need = MIN_TRAIN_ITEMS + MIN_VALID_PAIRS
        if len(rows) < need:
            raise DataError(
                f"{self.src}: {len(rows)} usable pair(s) and no validation set; need at least "
                f"{need} ({MIN_TRAIN_ITEMS} to train on, {MIN_VALID_PAIRS} to validate)"
            )
        moving: list[dict] = []
        if by_speaker:
            held = _holdout([r["speaker"] for r in rows], self.valid_fraction, self.seed, 1)
            moving = [r for r in rows if r["speaker"] in held]
            if len(rows) - len(moving) < MIN_TRAIN_ITEMS:
                moving = []
            else:
                log.info("holding out speakers %s for validation", ", ".join(sorted(held)))
        if not moving:
            held = _holdout([r["id"] for r in rows], self.valid_fraction, self.seed, 2)
            moving = [r for r in rows if r["id"] in held]
        self.train.move(moving, self.valid)


def _check_counts(src: Path, train: int, valid: int, what: str = "training pair") -> None:
    if train < MIN_TRAIN_ITEMS:
        raise DataError(f"{src}: {train} usable {what}(s); need at least {MIN_TRAIN_ITEMS} "
                        "(bad, silent or mismatched files are skipped; see the warnings)")
    if valid < MIN_VALID_PAIRS:
        raise DataError(f"{src}: {valid} usable validation pair(s); need at least "
                        f"{MIN_VALID_PAIRS} (bad, silent or mismatched files are skipped)")


# ---------------------------------------------------------------------------------------------
# The three importers


def _import_course(job: _Job) -> dict:
    groups = _course_files(job.src, warn=True)
    complete = {"train": 0, "valid": 0}
    for split in ("train", "valid"):
        for key, slot in sorted(groups[split].items()):
            names = _ROLE_PREFIX[split]
            missing = [names[r] for r in "snx" if r not in slot]
            if missing:
                have = ", ".join(p.name for p in slot.values())
                log.warning("course %s triplet %s: missing %s (have %s); skipped", split, key,
                            "+".join(missing), have)
                continue
            complete[split] += 1
            job.add_pair(split, key, slot["s"], slot["x"], "", _rel(slot["n"], job.src))
    if not complete["train"] and not complete["valid"]:
        raise DataError(f"{job.src}: no complete course triplets (trs/trn/trx or vs/vn/vx with "
                        "the same number) found")
    if not complete["valid"]:
        log.warning("%s: no vs/vn/vx validation triplets; holding out %.0f %% of the training "
                    "triplets for validation", job.src, 100 * job.valid_fraction)
        job.hold_out_pairs(by_speaker=False)
    return {}


def _import_pairs(job: _Job) -> dict:
    sets = _pair_sets(job.src, warn=True)
    if not sets:
        raise DataError(f"{job.src}: no clean_<X>/noisy_<X> folder pairs found")
    is_valid = {x: ("test" in x or "val" in x) for x, _, _ in sets}
    if all(is_valid.values()):
        log.warning("%s: only validation/test pair sets (%s); using them for training and "
                    "holding out %.0f %%", job.src, ", ".join(is_valid), 100 * job.valid_fraction)
        is_valid = dict.fromkeys(is_valid, False)
    for x, clean_dir, noisy_dir in sets:
        split = "valid" if is_valid[x] else "train"
        clean_files = {p.relative_to(clean_dir).with_suffix("").as_posix(): p
                       for p in find_audio_files(clean_dir)}
        noisy_files = {p.relative_to(noisy_dir).with_suffix("").as_posix(): p
                       for p in find_audio_files(noisy_dir)}
        for side, only in (("clean", clean_files.keys() - noisy_files.keys()),
                           ("noisy", noisy_files.keys() - clean_files.keys())):
            if only:
                examples = ", ".join(sorted(only)[:3])
                log.warning("%s: %d %s file(s) without a match in the other folder (e.g. %s); "
                            "skipped", clean_dir if side == "clean" else noisy_dir, len(only),
                            side, examples)
        for key in sorted(clean_files.keys() & noisy_files.keys()):
            base = key.replace("/", "_")
            job.add_pair(split, base, clean_files[key], noisy_files[key],
                         _speaker_of(Path(key).name), _rel(noisy_files[key], job.src))
    if not any(is_valid.values()):
        speakers = [r["speaker"] for r in job.train.rows]
        by_speaker = (all(speakers) and 2 <= len(set(speakers)) < len(speakers))
        job.hold_out_pairs(by_speaker=by_speaker)
    return {}


def _write_mono(path: Path, audio: np.ndarray) -> None:
    write_audio(path, audio, MODEL_RATE)


def _import_mixed(job: _Job, noise_dir: Path | None) -> dict:
    dirs = _mixed_dirs(job.src, noise_dir)
    if dirs is None:
        raise DataError(f"{job.src}: no clean/ (or speech/) and noise/ subfolders; pass the "
                        "noise folder separately if it lives elsewhere")
    speech_dir, noise_dir = dirs
    noise_root = noise_dir.resolve()
    speech_files = [p for p in find_audio_files(speech_dir)
                    if noise_root not in p.resolve().parents]
    depth = [len(p.relative_to(speech_dir).parts) for p in speech_files]
    subfolders = {p.relative_to(speech_dir).parts[0] for p in speech_files}
    per_speaker = bool(speech_files) and min(depth) >= 2 and len(subfolders) >= 2

    speech_out, noise_out = job.out / "train" / "speech", job.out / "train" / "noise"
    speech: list[dict] = []  # id, speaker, samples, source
    used: set[str] = set()
    for path in speech_files:
        audio = _load(path)
        if audio is None:
            continue
        rel = path.relative_to(speech_dir)
        item_id = _unique(_safe_id(rel.with_suffix("").as_posix().replace("/", "_")), used)
        _write_mono(speech_out / f"{item_id}.flac", audio)
        speech.append({"id": item_id, "speaker": rel.parts[0] if per_speaker else "",
                       "samples": len(audio), "source": _rel(path, job.src)})
    noise: list[dict] = []
    used = set()
    for path in find_audio_files(noise_dir):
        audio = _load(path)
        if audio is None:
            continue
        item_id = _unique(_safe_id(path.relative_to(noise_dir).with_suffix("").as_posix()
                                   .replace("/", "_")), used)
        _write_mono(noise_out / f"{item_id}.flac", audio)
        noise.append({"id": item_id, "samples": len(audio), "source": _rel(path, job.src)})

    need = MIN_TRAIN_ITEMS + 1
    if len(speech) < need:
        raise DataError(f"{speech_dir}: {len(speech)} usable speech file(s); need at least "
                        f"{need} ({MIN_TRAIN_ITEMS} to train on, 1 to validate)")
    if not noise:
        raise DataError(f"{noise_dir}: no usable noise files; need at least 1")

    # Held-out speech: whole speakers when the files sit in per-speaker subfolders.
    held_speech: list[dict] = []
    if per_speaker:
        held = _holdout([s["speaker"] for s in speech], job.valid_fraction, job.seed, 3)
        held_speech = [s for s in speech if s["speaker"] in held]
        if len(speech) - len(held_speech) < MIN_TRAIN_ITEMS:
            held_speech = []
    if not held_speech:
        held = _holdout([s["id"] for s in speech], job.valid_fraction, job.seed, 4)
        held_speech = [s for s in speech if s["id"] in held]

    valid_speech_dir, valid_noise_dir = job.out / "valid" / "speech", job.out / "valid" / "noise"
    valid_speech_dir.mkdir(parents=True, exist_ok=True)
    valid_noise_dir.mkdir(parents=True, exist_ok=True)
    for s in held_speech:
        os.replace(speech_out / f"{s['id']}.flac", valid_speech_dir / f"{s['id']}.flac")
    held_ids = {s["id"] for s in held_speech}
    speech = [s for s in speech if s["id"] not in held_ids]

    # Held-out noise: whole files, or the tail of the only noise file.
    valid_noise: list[tuple[dict, np.ndarray]] = []
    if len(noise) == 1:
        only = noise[0]
        audio = load_mono(noise_out / f"{only['id']}.flac")
        cut = min(len(audio) - 1, max(1, round(len(audio) * (1 - job.valid_fraction))))
        if len(audio) >= 2:
            _write_mono(noise_out / f"{only['id']}.flac", audio[:cut])
            _write_mono(valid_noise_dir / f"{only['id']}.flac", audio[cut:])
            only["samples"] = cut
            valid_noise.append((only, audio[cut:]))
        else:
            valid_noise.append((only, audio))
        log.warning("only one noise file (%s): training uses its first %.0f %%, validation "
                    "its last %.0f %%; add more noise files for a fair validation",
                    only["source"], 100 * (1 - job.valid_fraction), 100 * job.valid_fraction)
    else:
        held_noise = _holdout([n["id"] for n in noise], job.valid_fraction, job.seed, 5)
        for n in [n for n in noise if n["id"] in held_noise]:
            dst = valid_noise_dir / f"{n['id']}.flac"
            os.replace(noise_out / f"{n['id']}.flac", dst)
            valid_noise.append((n, load_mono(dst)))
        noise = [n for n in noise if n["id"] not in held_noise]

    # Fixed validation mixtures: every held-out utterance at every EVAL_SNRS_DB.
    for rank, s in enumerate(sorted(held_speech, key=lambda s: s["id"])):
        utt = load_mono(valid_speech_dir / f"{s['id']}.flac")
        for j, snr in enumerate(EVAL_SNRS_DB):
            rng = np.random.default_rng([job.seed, 6, rank, j])
            info, audio = valid_noise[int(rng.integers(len(valid_noise)))]
            m = mix(utt, audio, float(snr), rng)
            job.valid.add(EvalPair(
                id=_unique(f"valid_{rank:04d}_{s['id']}_snr{int(snr):+d}", job.used["valid"]),
                clean=m.clean, noisy=m.noisy, input_snr_db=float(snr), noise_type=info["id"],
                speaker=s["speaker"], speech_file=s["source"], noise_file=info["source"],
            ))
    return {
        "train_speech": len(speech),
        "train_noise": len(noise),
        "train_hours": sum(s["samples"] for s in speech) / MODEL_RATE / 3600,
        "train_noise_hours": sum(n["samples"] for n in noise) / MODEL_RATE / 3600,
        "valid_speech": len(held_speech),
        "valid_noise": len(valid_noise),
    }


# ---------------------------------------------------------------------------------------------
# import_dataset


def _inside(path: Path, folder: Path) -> bool:
    """``path`` equals ``folder`` or lies inside it (both resolved)."""
    return path == folder or folder in path.parents


def _prepare_out(out: Path, inputs: Sequence[Path], overwrite: bool) -> bool:
    """Check ``out`` is safe to write and clear previous import outputs when ``overwrite``.
    Returns True when ``out`` was created."""
    out_r = out.resolve()
    for inp in inputs:
        if _inside(out_r, inp.resolve()):
            raise DataError(f"{out}: output folder is {inp} or inside it; choose a folder "
                            "outside the input data (inputs are never overwritten)")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another output folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out}: folder is not empty; pass --overwrite to replace its "
                            "train/, valid/ and dataset.json, or choose a new folder")
        owned = [out_r / "train", out_r / "valid"]
        for inp in inputs:
            for sub in owned:
                if _inside(inp.resolve(), sub):
                    raise DataError(f"{inp}: input lies inside {sub}, which --overwrite would "
                                    "replace; move the input or choose another output folder")
        (out / "dataset.json").unlink(missing_ok=True)
        for sub in owned:
            if sub.is_dir():
                shutil.rmtree(sub)
            elif sub.exists():
                sub.unlink()
        return False
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    return created


def import_dataset(
    src: str | os.PathLike,
    out: str | os.PathLike,
    layout: str = "auto",
    noise_dir: str | os.PathLike | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Convert the dataset in ``src`` to a normalised 16 kHz FLAC dataset folder ``out``.

    ``layout`` is ``"auto"`` (see :func:`detect_layout`) or one of :data:`LAYOUTS`.
    ``noise_dir`` gives the noise folder of a ``"mixed"`` dataset kept outside ``src``.
    ``valid_fraction`` of the speakers/files is held out when the source has no validation
    split; the choice is seeded by ``seed``. Unusable files are skipped with one warning each.

    Returns the summary also saved as ``out/dataset.json``: ``layout``, ``train_pairs`` (course,
    pairs) or ``train_speech``/``train_noise`` (mixed), ``valid_pairs``, ``train_hours``,
    ``valid_hours`` and the import settings. Raises :class:`DataError` (one line) for a bad
    source, an unsafe ``out`` or too little usable data; nothing half-written is left behind.
    """
    src, out = Path(src), Path(out)
    noise = Path(noise_dir) if noise_dir is not None else None
    if not 0.0 < valid_fraction < 1.0:
        raise DataError(f"valid fraction must be between 0 and 1, got {valid_fraction}")
    if layout == "auto":
        layout = detect_layout(src, noise)
    elif layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; use auto or one of: {_LAYOUT_HELP}")
    else:
        _check_src(src)
    if noise is not None and layout != "mixed":
        raise DataError(f"a separate noise folder only applies to the mixed layout, not {layout}")
    if noise is not None and not noise.is_dir():
        raise DataError(f"{noise}: noise folder does not exist")
    inputs = [src] + ([noise] if noise is not None else [])
    created = _prepare_out(out, inputs, overwrite)
    job = _Job(src, out, valid_fraction, seed)
    try:
        if layout == "course":
            extra = _import_course(job)
        elif layout == "pairs":
            extra = _import_pairs(job)
        else:
            extra = _import_mixed(job, noise)
        train_items = extra.get("train_speech", len(job.train.rows))
        _check_counts(src, train_items, len(job.valid.rows),
                      "speech file" if layout == "mixed" else "training pair")
        if layout != "mixed":
            job.train.close()
        job.valid.close()
        summary = {
            "format": DATASET_FORMAT,
            "layout": layout,
            "source": str(src.resolve()),
            "noise_dir": str(noise.resolve()) if noise is not None else None,
            "valid_fraction": valid_fraction,
            "seed": seed,
            "sample_rate": MODEL_RATE,
            "train_pairs": 0 if layout == "mixed" else len(job.train.rows),
            "train_speech": 0,
            "train_noise": 0,
            "valid_pairs": len(job.valid.rows),
            "train_hours": job.train.samples / MODEL_RATE / 3600,
            "valid_hours": job.valid.samples / MODEL_RATE / 3600,
            **extra,
        }
        write_text_atomic(out / "dataset.json", json.dumps(summary, indent=2) + "\n")
    except BaseException:
        for sub in ("train", "valid"):
            shutil.rmtree(out / sub, ignore_errors=True)
        if created:
            try:
                out.rmdir()
            except OSError:
                pass
        raise
    train_desc = (f"{summary['train_speech']} speech + {summary['train_noise']} noise files"
                  if layout == "mixed" else f"{summary['train_pairs']} pairs")
    log.info("imported %s dataset %s -> %s: train %s (%.2f h), valid %d pairs (%.2f h)",
             layout, src, out, train_desc, summary["train_hours"], summary["valid_pairs"],
             summary["valid_hours"])
    return summary


# ---------------------------------------------------------------------------------------------
# Loading an imported dataset


@dataclass(frozen=True)
class UserData:
    """An imported dataset in memory (mono float32 16 kHz waveforms)."""

    layout: str
    # (clean, noisy) pairs of the same length: layouts course and pairs.
    train_pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    # Clean utterances and noise recordings to mix on the fly: layout mixed.
    train_speech: list[np.ndarray] = field(default_factory=list)
    train_noise: list[np.ndarray] = field(default_factory=list)
    # Fixed validation pairs.
    valid: list[EvalPair] = field(default_factory=list)
    # The dataset.json summary.
    info: dict = field(default_factory=dict)


def _read_valid(csv_path: Path) -> list[EvalPair]:
    rows = read_pairs(csv_path)
    # read_pairs drops the provenance columns; read them separately.
    with open(csv_path, newline="") as handle:
        extra = {r["id"]: r for r in csv.DictReader(handle)}
    pairs = []
    for row in rows:
        clean, noisy = load_pair(row)
        snr = row.input_snr_db
        if math.isnan(snr):
            snr = measured_snr_db(clean, noisy)
        more = extra.get(row.id, {})
        pairs.append(EvalPair(row.id, clean, noisy, snr, row.noise_type, row.speaker,
                              more.get("speech_file") or "", more.get("noise_file") or ""))
    return pairs


def load_user_data(dataset_dir: str | os.PathLike) -> UserData:
    """Read a folder written by :func:`import_dataset` into memory.

    Raises :class:`DataError` (one line) when the folder is not a complete import or a file in
    it cannot be read.
    """
    root = Path(dataset_dir)
    meta = root / "dataset.json"
    if not meta.is_file():
        raise DataError(f"{root}: not an imported dataset (dataset.json missing); run "
                        "`speechmask data import SRC OUT` first and train on OUT")
    try:
        info = json.loads(meta.read_text())
        layout = info["layout"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{meta}: cannot read ({type(err).__name__}: {err}); re-run "
                        "`speechmask data import` with --overwrite") from None
    if layout not in LAYOUTS:
        raise DataError(f"{meta}: unknown layout {layout!r}; re-run `speechmask data import`")
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    speech: list[np.ndarray] = []
    noise: list[np.ndarray] = []
    try:
        if layout == "mixed":
            speech = [load_mono(p) for p in sorted((root / "train" / "speech").glob("*.flac"))]
            noise = [load_mono(p) for p in sorted((root / "train" / "noise").glob("*.flac"))]
            if not speech or not noise:
                raise DataError(f"{root / 'train'}: no speech or no noise files; re-run "
                                "`speechmask data import` with --overwrite")
        else:
            train_csv = root / "train" / "pairs.csv"
            if not train_csv.is_file():
                raise DataError(f"{train_csv}: missing; re-run `speechmask data import` with "
                                "--overwrite")
            pairs = [load_pair(r) for r in read_pairs(train_csv)]
        valid_csv = root / "valid" / "pairs.csv"
        if not valid_csv.is_file():
            raise DataError(f"{valid_csv}: missing; re-run `speechmask data import` with "
                            "--overwrite")
        valid = _read_valid(valid_csv)
    except AudioError as err:
        raise DataError(f"{err} (imported dataset damaged; re-run `speechmask data import` "
                        "with --overwrite)") from None
    return UserData(layout, pairs, speech, noise, valid, info)


# ---------------------------------------------------------------------------------------------
# Training datasets


class PairDataset(torch.utils.data.Dataset):
    """Random fixed-length crops of recorded (clean, noisy) pairs.

    Item ``i`` of epoch ``e`` is a deterministic function of ``(seed, e, i)``: a random pair, a
    random crop of ``crop_seconds`` (zero-padded at a random position when the pair is shorter)
    and a random gain in [:data:`PAIR_GAIN_LOW_DB`, :data:`PAIR_GAIN_HIGH_DB`] dB applied to
    both. Items are the same dict as :class:`~speechmask.dataset.MixtureDataset`: ``noisy, clean,
    noise: [N]`` (``noise = noisy - clean``), ``mag, mask: [T, F]``.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[np.ndarray, np.ndarray]],
        crop_seconds: float = 3.0,
        examples_per_epoch: int = 4000,
        target: str = "irm",
        seed: int = 0,
        stft_cfg: StftConfig = DEFAULT_STFT,
    ):
        if not pairs:
            raise DataError("no clean/noisy pairs to train on")
        if target not in ("ibm", "irm"):
            raise ValueError(f"target must be 'ibm' or 'irm', got {target!r}")
        if crop_seconds <= 0 or examples_per_epoch <= 0:
            raise ValueError("crop_seconds and examples_per_epoch must be > 0")
        self.pairs = []
        for clean, noisy in pairs:
            n = min(len(clean), len(noisy))
            if n == 0:
                raise DataError("a training pair has 0 samples")
            self.pairs.append((np.asarray(clean[:n], np.float32),
                               np.asarray(noisy[:n], np.float32)))
        self.target, self.seed, self.stft_cfg = target, seed, stft_cfg
        self.examples_per_epoch = examples_per_epoch
        self.length = int(round(crop_seconds * stft_cfg.sample_rate))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.examples_per_epoch

    def draw(self, index: int) -> Mixture:
        """The crop of item ``index`` in the current epoch, as waveforms."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        clean, noisy = self.pairs[int(rng.integers(len(self.pairs)))]
        n = self.length
        if len(clean) >= n:
            start = int(rng.integers(0, len(clean) - n + 1))
            c, y = clean[start : start + n], noisy[start : start + n]
        else:
            pos = int(rng.integers(0, n - len(clean) + 1))
            c, y = np.zeros(n, np.float32), np.zeros(n, np.float32)
            c[pos : pos + len(clean)], y[pos : pos + len(noisy)] = clean, noisy
        gain = np.float32(10.0 ** (float(rng.uniform(PAIR_GAIN_LOW_DB, PAIR_GAIN_HIGH_DB)) / 20))
        c, y = c * gain, y * gain
        noise = (y - c).astype(np.float32)
        # A recorded pair's SNR is measured on the crop (over the whole crop: the speech of a
        # recording is not marked).
        return Mixture(c.astype(np.float32), noise, measured_snr_db(c, y))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return training_item(self.draw(index), self.target, self.stft_cfg)


def make_train_dataset(
    user: UserData,
    mix_cfg: MixConfig = DEFAULT_MIX,
    target: str = "irm",
    seed: int = 0,
    stft_cfg: StftConfig = DEFAULT_STFT,
) -> torch.utils.data.Dataset:
    """The training dataset of an imported dataset: :class:`PairDataset` over the recorded
    pairs (crop length and epoch size from ``mix_cfg``), or a
    :class:`~speechmask.dataset.MixtureDataset` over speech and noise for the mixed layout.
    """
    if user.train_pairs:
        return PairDataset(user.train_pairs, mix_cfg.crop_seconds, mix_cfg.examples_per_epoch,
                           target, seed, stft_cfg)
    if not user.train_speech or not user.train_noise:
        raise DataError("imported dataset has no training pairs and no speech/noise to mix")
    return MixtureDataset(user.train_speech, user.train_noise, mix_cfg, target, seed, stft_cfg)
