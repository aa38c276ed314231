"""Speech and noise sources: the corpus extension, joined word clips, held-out speakers,
weighted drawing and the training data a config asks for."""

from collections import Counter

import numpy as np
import pytest

from speechmask.corpus import Corpus, DataError
from speechmask.dataset import WeightedPool
from speechmask.sources import (
    RATE,
    VALID_SPEAKERS,
    default_ext_dir,
    held_out_speakers,
    join_clips,
    noise_files,
    speech_utterances,
    training_data,
    trim_to_speech,
)


@pytest.fixture(scope="module")
def ext():
    return Corpus(default_ext_dir())


def test_extension_matches_its_readme(ext):
    by = Counter((f.split, f.kind, f.source) for f in ext.files)
    assert by["train", "speech", "picovoice_intent"] == 619
    assert by["train", "speech", "speechcommands"] == 567
    assert by["test", "speech", "speechcommands"] == 443
    assert by["train", "speech", "arabic_commands"] == 600
    assert by["test", "noise", "max_samples"] == 13
    assert len(ext.files) == 2260


def test_trim_keeps_the_word_and_a_margin():
    x = np.zeros(RATE, np.float32)
    x[6000:9000] = np.sin(np.arange(3000) * 0.3)
    y = trim_to_speech(x, margin_s=0.05)
    # 50 ms of background each side, from the edges of the 10 ms frames the tone touches.
    assert 3000 + 2 * 800 <= len(y) <= 3000 + 2 * 800 + 2 * 160
    assert np.sum(y**2) == pytest.approx(np.sum(x**2))
    assert np.all(trim_to_speech(np.zeros(100, np.float32)) == 0)


def test_join_cross_fades_the_seams():
    a, b = np.ones(1000, np.float32), np.ones(500, np.float32)
    y = join_clips([a, b], fade=100)
    assert len(y) == 1400 and np.allclose(y, 1.0)


@pytest.mark.parametrize("source", ["speechcommands", "arabic_commands"])
def test_valid_speakers_are_held_out_of_training(ext, source):
    train = speech_utterances(source, "train", ext=ext)
    valid = speech_utterances(source, "valid", ext=ext)
    assert {u.speaker for u in train}.isdisjoint({u.speaker for u in valid})
    assert len({u.speaker for u in valid}) == VALID_SPEAKERS[source]
    assert all(u.source == source for u in train + valid)
    # Words joined: utterances of 1-4 trimmed words, longer than one word on average.
    assert np.mean([len(u.audio) for u in train]) > 1.2 * RATE


def test_test_speakers_never_train(ext):
    test = {u.speaker for u in speech_utterances("speechcommands", "test", ext=ext)}
    train = {f.label for f in ext.files if f.source == "speechcommands" and f.split == "train"}
    assert len(test) == 100 and test.isdisjoint(train)


def test_held_out_choice_is_fixed_by_the_speaker_list():
    speakers = [f"s{i:03d}" for i in range(30)]
    assert held_out_speakers("arabic_commands", speakers) == {"s000", "s010", "s020"}
    assert held_out_speakers("arabic_commands", reversed(speakers)) == {"s000", "s010", "s020"}
    assert held_out_speakers("vcc2016", speakers) == set()


def test_unknown_sources_are_one_line_errors(ext):
    with pytest.raises(DataError, match="unknown speech source 'vctk'"):
        speech_utterances("vctk", "train", ext=ext)
    with pytest.raises(DataError, match="unknown noise source"):
        noise_files("street", "train", ext=ext)


def test_weighted_pool_follows_the_shares():
    groups = ["a"] * 10 + ["b"] * 90 + ["c"] * 5
    pool = WeightedPool(groups, {"a": 0.5, "b": 0.5, "c": 0.0})
    rng = np.random.default_rng(0)
    drawn = Counter(groups[pool.draw(rng)] for _ in range(20000))
    assert drawn["c"] == 0
    assert drawn["a"] / 20000 == pytest.approx(0.5, abs=0.02)
    with pytest.raises(DataError):
        WeightedPool(["a"], {"b": 1.0})


def test_training_data_by_source(ext):
    data = training_data({"arabic_commands": 1.0}, {"synth_music": 1.0, "esc10": 0.0},
                         valid_count=8, ext=ext)
    assert set(data.speech_groups) == {"arabic_commands"}
    assert set(data.noise_groups) == {"synth_music"} and len(data.noise) == 16
    # The corpus valid pairs first, then the held-out speakers (noisy, then clean).
    assert len(data.valid) > 8
    assert any(p.id.startswith("heldout_clean") for p in data.valid)
