"""The out-of-domain, clean pass-through and held-out validation sets."""

import math

import numpy as np
import pytest

from speechmask.data import Corpus, DataError
from speechmask.evalsets import OOD_SNRS_DB, clean_pairs, eval_set, heldout_pairs, ood_pairs
from speechmask.sources import default_ext_dir, speech_utterances


@pytest.fixture(scope="module")
def ext():
    return Corpus(default_ext_dir())


@pytest.fixture(scope="module")
def ood(ext):
    return ood_pairs(ext, count=40)


def test_ood_is_deterministic(ext, ood):
    again = ood_pairs(ext, count=40)
    assert [p.id for p in again] == [p.id for p in ood]
    for a, b in zip(ood, again, strict=True):
        np.testing.assert_array_equal(a.noisy, b.noisy)


def test_ood_is_disjoint_from_training_by_speaker_and_noise(ext, ood):
    train_speakers = {f.label for f in ext.files if f.split == "train" and f.kind == "speech"}
    test_noise = {f.path.name for f in ext.files if f.split == "test" and f.kind == "noise"}
    train_noise = {f.path.name for f in Corpus().files + ext.files
                   if f.kind == "noise" and f.split in ("train", "valid")}
    assert {p.speaker for p in ood}.isdisjoint(train_speakers)
    assert {p.noise_file for p in ood} <= test_noise
    assert {p.noise_file for p in ood}.isdisjoint(train_noise)


def test_ood_covers_every_snr_dry_and_in_rooms(ood):
    assert {p.input_snr_db for p in ood} == set(OOD_SNRS_DB)
    rooms = [p.room for p in ood]
    assert any(rooms) and not all(rooms)
    for p in ood:
        noise = p.noisy - p.clean
        snr = 10 * np.log10(np.sum(p.clean**2) / np.sum(noise**2))
        assert snr == pytest.approx(p.input_snr_db, abs=0.01)


def test_full_ood_set_size(ext):
    # One utterance of each of the 100 test speakers x 5 SNRs = 500 pairs (the issue asks for
    # at least 100); counted without building the audio.
    speakers = {u.speaker for u in speech_utterances("speechcommands", "test", ext=ext)}
    assert len(speakers) * len(OOD_SNRS_DB) == 500


def test_clean_set_is_its_own_reference(ext):
    pairs = clean_pairs(ext=ext)
    assert len(pairs) == 140
    assert all(np.array_equal(p.clean, p.noisy) and math.isinf(p.input_snr_db) for p in pairs)


def test_heldout_has_noisy_and_clean_pairs(ext):
    pairs = heldout_pairs(ext=ext)
    clean = [p for p in pairs if math.isinf(p.input_snr_db)]
    assert clean and len(pairs) - len(clean) == len(clean) * len(OOD_SNRS_DB)
    assert any(p.noise_file.startswith("generated:") for p in pairs)


def test_eval_set_names():
    with pytest.raises(DataError, match="unknown set 'train'"):
        eval_set("train")
    with pytest.raises(DataError, match="has its own"):
        eval_set("ood", noise_types=("rain",))
