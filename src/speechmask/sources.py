"""Where speech and noise come from: the bundled corpus (``data/corpus``, VCC2016 studio speech
and recorded noise) and its extension (``data/corpus_ext``, crowd-sourced speech from 350+
speakers on their own microphones, appliance noise, generated music, test-only speakers and
noises), sampled by source with weights a training config records.

- Word clips (Speech Commands, Arabic commands: 1 s each, mostly silence) are trimmed to their
  words and joined, per speaker, into utterances of a few words.
- Validation needs speakers the model never trained on: a fixed, documented choice of Speech
  Commands and Arabic training speakers is held out of training (:data:`VALID_SPEAKERS`).
- Every list here is deterministic: same files, same order, same joins.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import load_mono
from .corpus import Corpus, CorpusFile, DataError, load_files

log = logging.getLogger(__name__)

RATE = 16_000

# Speech sources and the corpus that holds each ("main" = data/corpus, "ext" = data/corpus_ext).
SPEECH_SOURCES = {"vcc2016": "main", "picovoice_intent": "ext", "speechcommands": "ext",
                  "arabic_commands": "ext"}
# Recorded noise sources and their corpus. (The main corpus' "speechcommands" noise is the
# Speech Commands background-noise folder: dishes, exercise bike, tap, cat.)
NOISE_SOURCES = {"esc10": "main", "blanket": "main", "speechcommands": "main",
                 "arabic_commands_bg": "ext", "synth_music": "ext"}
# Sources of ~1 s keyword clips, joined per speaker into utterances.
WORD_SOURCES = ("speechcommands", "arabic_commands")
# Words per joined utterance: 4 trimmed words (~0.6 s each with their pauses) make a 2-3 s
# utterance, about a 2 s training crop.
WORDS_PER_UTTERANCE = 4
# Validation speakers held out of training, per source: every n-th speaker of the sorted
# training speakers, so the choice is fixed by the manifest alone. 12 of 127 Speech Commands
# speakers (60 clips) and 3 of 30 Arabic speakers (60 clips).
VALID_SPEAKERS = {"speechcommands": 12, "arabic_commands": 3}


def default_ext_dir() -> Path:
    """Where the corpus extension lives: ``$SPEECHMASK_CORPUS_EXT``, else ``data/corpus_ext``
    of the source checkout, else ``./data/corpus_ext``."""
    env = os.environ.get("SPEECHMASK_CORPUS_EXT")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "data" / "corpus_ext"
    return repo if repo.is_dir() else Path("data/corpus_ext")


@dataclass(frozen=True)
class Utterance:
    """One clean utterance: ``audio [samples]`` float32 at 16 kHz."""

    audio: np.ndarray
    source: str  # a key of SPEECH_SOURCES
    speaker: str  # speaker id ("unknown" where the source has none)
    name: str  # the corpus file, or the first of the joined word clips + "+N"


def trim_to_speech(x: np.ndarray, floor_db: float = -35.0, margin_s: float = 0.08
                   ) -> np.ndarray:
    """``x`` cut to the span of 10 ms frames within ``floor_db`` of its loudest frame, plus
    ``margin_s`` of its own background on each side (a word clip is mostly silence)."""
    hop = RATE // 100
    frames = len(x) // hop
    if frames == 0:
        return x
    rms = np.sqrt(np.mean(x[: frames * hop].reshape(frames, hop) ** 2, axis=1))
    active = np.flatnonzero(rms > rms.max() * 10 ** (floor_db / 20))
    if len(active) == 0:
        return x
    margin = int(margin_s * RATE)
    return x[max(0, active[0] * hop - margin) : min(len(x), (active[-1] + 1) * hop + margin)]


def join_clips(clips: Sequence[np.ndarray], fade: int = 160) -> np.ndarray:
    """Clips joined end to start with a ``fade``-sample (10 ms) cross-fade, so no click marks
    the seams."""
    out = clips[0].astype(np.float32)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for clip in clips[1:]:
        n = min(fade, len(out), len(clip))
        head = clip.astype(np.float32)
        out = np.concatenate([out[: len(out) - n],
                              out[len(out) - n :] * (1 - ramp[:n]) + head[:n] * ramp[:n],
                              head[n:]])
    return out


def held_out_speakers(source: str, speakers: Collection[str]) -> set[str]:
    """The validation speakers of ``source`` (:data:`VALID_SPEAKERS`): every n-th of the sorted
    ``speakers``, none for sources not listed."""
    count = VALID_SPEAKERS.get(source, 0)
    ordered = sorted(set(speakers))
    if count == 0 or len(ordered) < 2 * count:
        return set()
    step = len(ordered) / count
    return {ordered[int(i * step)] for i in range(count)}


def _word_utterances(files: Sequence[CorpusFile], source: str) -> list[Utterance]:
    """Trimmed word clips joined per speaker into utterances of at most
    :data:`WORDS_PER_UTTERANCE` words (as even as possible), in manifest order."""
    by_speaker: dict[str, list[CorpusFile]] = defaultdict(list)
    for f in files:
        by_speaker[f.label].append(f)
    out = []
    for speaker in sorted(by_speaker):
        group = by_speaker[speaker]
        # Near-equal chunks: 5 clips give 3 + 2 words, not 4 + 1.
        parts = -(-len(group) // WORDS_PER_UTTERANCE)
        for chunk in np.array_split(np.arange(len(group)), parts):
            clips = [group[int(i)] for i in chunk]
            audio = join_clips([trim_to_speech(load_mono(f.path)) for f in clips])
            out.append(Utterance(audio, source, speaker,
                                 f"{clips[0].path.name}+{len(clips) - 1}"))
    return out


def speech_utterances(
    source: str, role: str, main: Corpus | None = None, ext: Corpus | None = None
) -> list[Utterance]:
    """The utterances of ``source`` for ``role``: "train" (training split minus the validation
    speakers), "valid" (the corpus valid split, or the held-out speakers) or "test" (the test
    split: speakers never in train or valid). Word clips come joined."""
    if source not in SPEECH_SOURCES:
        raise DataError(f"unknown speech source {source!r}; use some of "
                        f"{', '.join(SPEECH_SOURCES)}")
    if role not in ("train", "valid", "test"):
        raise DataError(f"unknown role {role!r}; use train, valid or test")
    corpus = _corpus(SPEECH_SOURCES[source], main, ext)
    has_valid = any(f.split == "valid" for f in corpus.files)
    split = "train" if role == "valid" and not has_valid else role
    files = [f for f in corpus.files
             if f.kind == "speech" and f.source == source and f.split == split]
    if split != role or (role == "train" and not has_valid):
        held = held_out_speakers(source, [f.label for f in files])
        files = [f for f in files if (f.label in held) == (role == "valid")]
    if not files:
        raise DataError(f"{corpus.root}: no {source} speech for {role}")
    if source in WORD_SOURCES:
        return _word_utterances(files, source)
    return [Utterance(load_mono(f.path), source, f.label, f.path.name) for f in files]


def noise_files(source: str, split: str, main: Corpus | None = None, ext: Corpus | None = None
                ) -> list[CorpusFile]:
    """Recorded noise files of ``source`` in ``split`` (empty when the source has none there:
    the extension's noises are train-only)."""
    if source not in NOISE_SOURCES:
        raise DataError(f"unknown noise source {source!r}; use some of "
                        f"{', '.join(NOISE_SOURCES)}")
    corpus = _corpus(NOISE_SOURCES[source], main, ext)
    return [f for f in corpus.files if f.kind == "noise" and f.source == source
            and f.split == split]


def _corpus(which: str, main: Corpus | None, ext: Corpus | None) -> Corpus:
    if which == "main":
        return main if main is not None else Corpus()
    return ext if ext is not None else Corpus(default_ext_dir())


@dataclass
class TrainingData:
    """What training draws from: speech and noise arrays ``[samples]`` with the source of each
    (None when drawn evenly, the original recipe), and the validation pairs."""

    speech: list[np.ndarray]
    speech_groups: list[str] | None
    noise: list[np.ndarray]
    noise_groups: list[str] | None
    valid: list  # list[EvalPair]


def training_data(
    speech_sources: dict[str, float],
    noise_sources: dict[str, float],
    holdout_noise: Collection[str] = (),
    valid_count: int | None = None,
    main: Corpus | None = None,
    ext: Corpus | None = None,
    with_valid: bool = True,
) -> TrainingData:
    """Training speech and noise by source (empty weights: the corpus' training split, every
    file alike) and the validation pairs: the corpus' valid split (its noise of the
    ``holdout_noise`` types only, when given) and, when any speech source lives in the corpus
    extension, the held-out speakers' set (:func:`speechmask.evalsets.heldout_pairs`).
    Noise files of the ``holdout_noise`` types are left out of training."""
    from .evalsets import eval_pairs, heldout_pairs  # (evalsets imports this module)

    main = main if main is not None else Corpus()
    held = set(holdout_noise)
    if held:
        main.check_noise_types(held, "train")
    speech, speech_groups = [], None
    if speech_sources:
        speech_groups = []
        for source, weight in speech_sources.items():
            if weight > 0:
                utts = speech_utterances(source, "train", main, ext)
                speech += [u.audio for u in utts]
                speech_groups += [source] * len(utts)
    else:
        speech = load_files(main.select("train", "speech"))
    if noise_sources:
        files, noise_groups = [], []
        for source, weight in noise_sources.items():
            if weight > 0:
                chosen = [f for f in noise_files(source, "train", main, ext) if f.label not in held]
                files += chosen
                noise_groups += [source] * len(chosen)
    else:
        files = [f for f in main.select("train", "noise") if f.label not in held]
        noise_groups = None
    if not files:
        raise DataError("the chosen noise sources and held-out types leave no training noise")
    valid = []
    if with_valid:
        valid = eval_pairs(main, "valid", valid_count, noise_types=held or None)
        if any(SPEECH_SOURCES[s] == "ext" for s, w in speech_sources.items() if w > 0):
            valid += heldout_pairs(main, ext)
    return TrainingData(speech, speech_groups, load_files(files), noise_groups, valid)
