"""The fixed evaluation sets: :class:`EvalPair`, the corpus' valid and test splits
(:func:`eval_pairs`), the sets beyond them, and their ``pairs.csv`` form on disk.

- ``ood`` (out of domain): crowd-sourced speakers and real noises that no training source
  holds (the corpus extension's test parts: 100 Speech Commands speakers, 13 recordings of
  applause, rain, typing, engines, music, ...), at -5/0/5/10/20 dB input SNR, every other
  speaker in a simulated room (speech and noise reverberated; the reference is the reverberant
  speech: we remove noise, not the room). Room pairs also carry a second reference, the direct
  sound and the first :data:`EARLY_REF_MS` of reflections, for a model that removes the tail.
- ``clean``: clean speech of unseen speakers (the same 100 crowd-sourced speakers plus the
  corpus' four test speakers) fed with no noise at all; the output is scored against the input.
  A denoiser should give it back untouched.
- ``heldout`` (validation): the speakers :mod:`speechmask.sources` holds out of training, with
  the corpus' validation noise and generated noise at -5..20 dB, half in simulated rooms, plus
  their clean pass-through. Training selects checkpoints on it together with the corpus' valid
  split, so the choice rewards what carries beyond the training speakers.

Every set is a pure function of the bundled data and a seed (:data:`SEED`).
"""

from __future__ import annotations

import csv
import io
import os
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import write_text_atomic
from .audio import MODEL_RATE, AudioError, load_mono, write_audio
from .augment import GENERATORS, generated_noise
from .corpus import SPLITS, Corpus, CorpusFile, DataError
from .mixing import mix
from .rooms import RoomConfig, early_part, reverberate, rir_bank
from .sources import Utterance, default_ext_dir, noise_files, speech_utterances

# Input SNRs of every fixed evaluation set, in dB: from hard (-5) to easy (10).
EVAL_SNRS_DB = (-5.0, 0.0, 5.0, 10.0)
# Seed of the corpus' valid and test sets; changing it changes every published figure.
EVAL_SEED = 20261125

# Seed of the ood, clean and held-out sets; changing it changes every published ood/clean figure.
SEED = 20261201
# Input SNRs of the ood and held-out sets, dB: the corpus' four plus 20 dB, where a good
# recording with a little noise must not come back worse.
OOD_SNRS_DB = (-5.0, 0.0, 5.0, 10.0, 20.0)
# Rooms of the held-out validation set and of the ood test set: other seeds than training's
# bank (seed 0), so no test response was ever trained on.
VALID_ROOMS = RoomConfig(count=20, seed=1)
TEST_ROOMS = RoomConfig(count=50, seed=2)
# The early reference of a room pair: direct sound + the first 50 ms of reflections, the
# boundary of the C50 clarity index (what reaches a listener within 50 ms adds to intelligibility,
# what comes later blurs it); mix.augment.room_early_ms trains towards the same kind of target.
EARLY_REF_MS = 50.0
# Corpus test utterances per speaker in the clean set (4 speakers).
CLEAN_VCC_PER_SPEAKER = 10

# Names of every fixed set: the corpus splits and the sets here.
SETS = ("valid", "test", "ood", "clean", "heldout")
# Every pair id of the held-out set starts with this (training validation tells the held-out
# speakers from the corpus' valid speakers by it).
HELDOUT_ID_PREFIX = "heldout"


# ---------------------------------------------------------------------------------------------
# The corpus' valid and test sets


@dataclass(frozen=True)
class EvalPair:
    """One fixed evaluation mixture. Waveforms are ``[samples]`` float32 at 16 kHz."""

    id: str  # unique within its set; names the pair's files in pairs.csv
    clean: np.ndarray  # [samples] the reference (reverberant speech for a room pair)
    noisy: np.ndarray  # [samples] the input: clean + noise
    input_snr_db: float  # SNR of the input in dB (+inf for a clean pass-through pair)
    noise_type: str  # noise type label ("none" for a clean pass-through pair)
    speaker: str  # speaker label
    speech_file: str  # where the speech came from (corpus path or utterance name)
    noise_file: str  # where the noise came from (corpus path, file name, "generated:KIND", "")
    # "" for a dry pair, else the simulated room both speech and noise were played in.
    room: str = ""
    # [samples] a room pair's early reference (direct sound + EARLY_REF_MS of reflections, at
    # the level of ``clean``); None for a dry or clean pair.
    early: np.ndarray | None = None


def eval_pairs(
    corpus: Corpus,
    split: str,
    count: int | None = None,
    snrs_db: Sequence[float] = EVAL_SNRS_DB,
    seed: int = EVAL_SEED,
    noise_types: Collection[str] | None = None,
) -> list[EvalPair]:
    """The deterministic evaluation set of a split: every utterance at every SNR in ``snrs_db``,
    each with its own noise file and offset. ``count`` keeps the first ``count`` pairs of a
    seeded shuffle of utterances (all SNRs of an utterance stay together). ``noise_types``
    draws the noise from files of those types only (e.g. the types a run held out of
    training); the default, all types, gives the fixed valid and test sets."""
    speech = corpus.select(split, "speech")
    noises = corpus.select(split, "noise")
    if noise_types is not None:
        if not noise_types:
            raise DataError("no noise types given; name one or more, e.g. city,doing_the_dishes")
        corpus.check_noise_types(noise_types, split)
        noises = [f for f in noises if f.label in noise_types]
    order = np.random.default_rng([seed, SPLITS.index(split)]).permutation(len(speech))
    total = len(speech) * len(snrs_db)
    n_pairs = total if count is None else min(count, total)
    if n_pairs <= 0:
        raise DataError(f"--count must be >= 1, got {count}")
    noise_cache: dict[int, np.ndarray] = {}
    pairs: list[EvalPair] = []
    for rank, u in enumerate(order):
        if len(pairs) >= n_pairs:
            break
        utt_file = speech[int(u)]
        utt = load_mono(utt_file.path)
        for j, snr in enumerate(snrs_db):
            if len(pairs) >= n_pairs:
                break
            rng = np.random.default_rng([seed, SPLITS.index(split), int(u), j])
            k = int(rng.integers(len(noises)))
            if k not in noise_cache:
                noise_cache[k] = load_mono(noises[k].path)
            m = mix(utt, noise_cache[k], float(snr), rng)
            spk = utt_file.label
            pairs.append(EvalPair(
                id=f"{split}_{rank:04d}_{spk}_{utt_file.path.stem}_snr{int(snr):+d}",
                clean=m.clean,
                noisy=m.noisy,
                input_snr_db=float(snr),
                noise_type=noises[k].label,
                speaker=spk,
                speech_file=str(utt_file.path.relative_to(corpus.root)),
                noise_file=str(noises[k].path.relative_to(corpus.root)),
            ))
    return pairs


# ---------------------------------------------------------------------------------------------
# The sets beyond the corpus


def _first_per_speaker(utts: Sequence[Utterance]) -> list[Utterance]:
    seen: set[str] = set()
    out = []
    for u in utts:
        if u.speaker not in seen:
            seen.add(u.speaker)
            out.append(u)
    return out


def _noisy_pairs(
    name: str,
    utts: Sequence[Utterance],
    noises: Sequence[CorpusFile],
    generated: Sequence[str],
    snrs_db: Sequence[float],
    rooms: RoomConfig,
    count: int | None,
) -> list[EvalPair]:
    """Every utterance at every SNR; the noise of pair (u, j) is drawn from ``noises`` (files)
    or, a third of the time, ``generated`` (families) by a seeded rng; utterances of odd rank
    are reverberated, with their noise, in a room of ``rooms``."""
    salt = zlib.crc32(name.encode())  # each set its own draws
    order = np.random.default_rng([SEED, salt]).permutation(len(utts))
    bank = rir_bank(rooms)
    cache: dict[int, np.ndarray] = {}
    pairs: list[EvalPair] = []
    for rank, u in enumerate(order):
        utt = utts[int(u)]
        room = int(np.random.default_rng([SEED, salt, rank]).integers(len(bank))) if (
            rank % 2) else None
        speech = reverberate(utt.audio, bank[room]) if room is not None else utt.audio
        early = (reverberate(utt.audio, early_part(bank[room], EARLY_REF_MS))
                 if room is not None else None)
        for j, snr in enumerate(snrs_db):
            if count is not None and len(pairs) >= count:
                return pairs
            rng = np.random.default_rng([SEED, salt, rank, j])
            # A third of the pairs get a generated family when there are any: a file each
            # would leave 5 families among ~90 recordings.
            use_generated = bool(generated) and (not noises or rng.random() < 1 / 3)
            k = (len(noises) + int(rng.integers(len(generated))) if use_generated
                 else int(rng.integers(len(noises))))
            if k < len(noises):
                if k not in cache:
                    cache[k] = load_mono(noises[k].path)
                noise, label, file = cache[k], noises[k].label, noises[k].path.name
            else:
                label = generated[k - len(noises)]
                noise, file = generated_noise(label, len(speech), rng), f"generated:{label}"
            if room is not None:
                noise = reverberate(noise, bank[(room + 1) % len(bank)])
            m = mix(speech, noise, float(snr), rng)
            pairs.append(EvalPair(
                id=f"{name}_{rank:04d}_{utt.speaker}_snr{int(snr):+d}"
                   + ("_room" if room is not None else ""),
                clean=m.clean, noisy=m.noisy, input_snr_db=float(snr), noise_type=label,
                speaker=utt.speaker, speech_file=utt.name, noise_file=file,
                room=f"room{room:02d}" if room is not None else "",
                # The speech's gain in the mixture: clean - early is the late tail exactly.
                early=(early * m.gain).astype(np.float32) if early is not None else None,
            ))
    return pairs


def _clean_pairs(name: str, utts: Sequence[Utterance]) -> list[EvalPair]:
    return [EvalPair(id=f"{name}_{i:04d}_{u.speaker}", clean=u.audio, noisy=u.audio,
                     input_snr_db=float("inf"), noise_type="none", speaker=u.speaker,
                     speech_file=u.name, noise_file="") for i, u in enumerate(utts)]


def ood_pairs(ext: Corpus | None = None, count: int | None = None) -> list[EvalPair]:
    """The out-of-domain test set: one utterance (3-4 joined words) of each of the 100 test
    speakers x the 13 test noises x :data:`OOD_SNRS_DB`, every other speaker reverberated in a
    room of :data:`TEST_ROOMS` (500 pairs)."""
    ext = ext if ext is not None else Corpus(default_ext_dir())
    utts = _first_per_speaker(speech_utterances("speechcommands", "test", ext=ext))
    noises = [f for f in ext.files if f.kind == "noise" and f.split == "test"]
    if not noises:
        raise DataError(f"{ext.root}: no test noise for the ood set")
    return _noisy_pairs("ood", utts, noises, (), OOD_SNRS_DB, TEST_ROOMS, count)


def clean_pairs(main: Corpus | None = None, ext: Corpus | None = None,
                count: int | None = None) -> list[EvalPair]:
    """Clean pass-through: the ood set's 100 crowd-sourced utterances and
    :data:`CLEAN_VCC_PER_SPEAKER` studio utterances of each corpus test speaker, with no noise
    (``noisy == clean``, input SNR +inf)."""
    ext = ext if ext is not None else Corpus(default_ext_dir())
    main = main if main is not None else Corpus()
    utts = _first_per_speaker(speech_utterances("speechcommands", "test", ext=ext))
    vcc = speech_utterances("vcc2016", "test", main=main)
    per: dict[str, int] = {}
    for u in vcc:
        if per.get(u.speaker, 0) < CLEAN_VCC_PER_SPEAKER:
            per[u.speaker] = per.get(u.speaker, 0) + 1
            utts.append(u)
    return _clean_pairs("clean", utts)[:count]


def heldout_pairs(main: Corpus | None = None, ext: Corpus | None = None,
                  count: int | None = None) -> list[EvalPair]:
    """The held-out validation set: the held-out speakers' utterances (39) at
    :data:`OOD_SNRS_DB` with the corpus' validation noise or a generated family, every other
    utterance in a room of :data:`VALID_ROOMS`, then the same utterances clean."""
    main = main if main is not None else Corpus()
    ext = ext if ext is not None else Corpus(default_ext_dir())
    utts = [u for source in ("speechcommands", "arabic_commands")
            for u in speech_utterances(source, "valid", ext=ext)]
    noises = [f for source in ("esc10", "blanket", "speechcommands")
              for f in noise_files(source, "valid", main=main)]
    pairs = _noisy_pairs(HELDOUT_ID_PREFIX, utts, noises, tuple(GENERATORS), OOD_SNRS_DB,
                         VALID_ROOMS, None) + _clean_pairs(f"{HELDOUT_ID_PREFIX}_clean", utts)
    return pairs[:count]


def eval_set(
    name: str,
    count: int | None = None,
    main: Corpus | None = None,
    ext: Corpus | None = None,
    noise_types: Collection[str] | None = None,
) -> list[EvalPair]:
    """The fixed set ``name`` (one of :data:`SETS`); ``count`` keeps its first pairs;
    ``noise_types`` (corpus splits only) draws their noise from those types only."""
    if name not in SETS:
        raise DataError(f"unknown set {name!r}; use one of {', '.join(SETS)}")
    if noise_types is not None and name not in ("valid", "test"):
        raise DataError(f"noise types choose the noise of the valid/test sets; the {name} set "
                        "has its own")
    if name in ("valid", "test"):
        return eval_pairs(main if main is not None else Corpus(), name, count,
                          EVAL_SNRS_DB, noise_types=noise_types)
    if name == "ood":
        return ood_pairs(ext, count)
    if name == "clean":
        return clean_pairs(main, ext, count)
    return heldout_pairs(main, ext, count)


# ---------------------------------------------------------------------------------------------
# pairs.csv: a set on disk


PAIRS_COLUMNS = ("id", "noisy", "clean", "input_snr_db", "noise_type", "speaker",
                 "speech_file", "noise_file", "room", "early")


def write_pairs(pairs: Sequence[EvalPair], out_dir: str | os.PathLike) -> Path:
    """Write ``noisy/ID.flac``, ``clean/ID.flac``, ``early/ID.flac`` (room pairs) and
    ``pairs.csv`` (paths relative to it; ``early`` empty for a dry pair)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in pairs:
        noisy = write_audio(out_dir / "noisy" / f"{p.id}.flac", p.noisy, MODEL_RATE)
        clean = write_audio(out_dir / "clean" / f"{p.id}.flac", p.clean, MODEL_RATE)
        early = (write_audio(out_dir / "early" / f"{p.id}.flac", p.early, MODEL_RATE)
                 if p.early is not None else None)
        rows.append({
            "id": p.id,
            "noisy": str(noisy.relative_to(out_dir)),
            "clean": str(clean.relative_to(out_dir)),
            "input_snr_db": f"{p.input_snr_db:g}",
            "noise_type": p.noise_type,
            "speaker": p.speaker,
            "speech_file": p.speech_file,
            "noise_file": p.noise_file,
            "room": p.room,
            "early": str(early.relative_to(out_dir)) if early is not None else "",
        })
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=PAIRS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(out_dir / "pairs.csv", text.getvalue())


@dataclass(frozen=True)
class PairRow:
    """One row of a ``pairs.csv`` with resolved paths."""

    id: str
    noisy: Path
    clean: Path
    input_snr_db: float
    noise_type: str
    speaker: str
    room: str = ""
    early: Path | None = None  # a room pair's early reference (pairs.csv column "early")


def read_pairs(csv_path: str | os.PathLike) -> list[PairRow]:
    """Read a ``pairs.csv`` written by :func:`write_pairs` (or by hand, same columns)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no such file; make one with `speechmask data testset`")
    try:
        with open(csv_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{csv_path}: cannot read as CSV ({err})") from None
    need = {"id", "noisy", "clean"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"{csv_path}: needs a header with at least columns id,noisy,clean and "
                        "one row per pair")
    base = csv_path.parent
    out = []
    for row in rows:
        try:
            snr = float(row.get("input_snr_db") or "nan")
        except ValueError:
            snr = float("nan")
        out.append(PairRow(row["id"], base / row["noisy"], base / row["clean"], snr,
                           row.get("noise_type", ""), row.get("speaker", ""),
                           row.get("room") or "",
                           base / row["early"] if row.get("early") else None))
    return out


def load_pair(row: PairRow) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) mono 16 kHz of one row, trimmed to the same length."""
    clean, noisy = load_mono(row.clean), load_mono(row.noisy)
    if abs(len(clean) - len(noisy)) > MODEL_RATE // 100:
        raise AudioError(row.noisy, f"length {len(noisy)} differs from its clean file "
                                    f"{row.clean.name} ({len(clean)} samples)")
    n = min(len(clean), len(noisy))
    return clean[:n], noisy[:n]


def load_early(row: PairRow, length: int) -> np.ndarray | None:
    """A room row's early reference, ``length`` samples (that of :func:`load_pair`), or None."""
    if row.early is None:
        return None
    early = load_mono(row.early)
    if abs(len(early) - length) > MODEL_RATE // 100:
        raise AudioError(row.early, f"length {len(early)} differs from its pair's ({length})")
    return np.pad(early[:length], (0, max(0, length - len(early))))
