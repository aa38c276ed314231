"""The fixed evaluation sets: the corpus' valid/test pairs, the out-of-domain, clean
pass-through and held-out sets, and pairs.csv."""

import csv
import math

import numpy as np
import pytest

from speechmask.corpus import Corpus, DataError
from speechmask.evalsets import (
    EVAL_SNRS_DB,
    OOD_SNRS_DB,
    clean_pairs,
    eval_pairs,
    eval_set,
    heldout_pairs,
    load_early,
    load_pair,
    ood_pairs,
    read_pairs,
    write_pairs,
)
from speechmask.metrics import snr_db
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


def test_room_pairs_carry_an_early_reference_dry_pairs_none(ood):
    for p in ood:
        if not p.room:
            assert p.early is None
            continue
        assert p.early.shape == p.clean.shape and p.early.dtype == np.float32
        # Same level as the reverberant reference: the early part holds the direct sound and
        # most of the energy, the late tail (clean - early) is what a dereverberator removes.
        late = p.clean - p.early
        assert 0 < np.sum(late**2) < np.sum(p.early**2)
        assert snr_db(p.clean, p.early) > 0


def test_early_reference_longer_than_the_response_is_the_reverberant_one(ext, monkeypatch):
    import speechmask.evalsets as evalsets

    monkeypatch.setattr(evalsets, "EARLY_REF_MS", 1e5)  # 100 s: longer than any response
    room_pairs = [p for p in ood_pairs(ext, count=10) if p.room]
    assert room_pairs
    for p in room_pairs:
        np.testing.assert_allclose(p.early, p.clean, atol=1e-5)


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


@pytest.fixture(scope="module")
def corpus():
    return Corpus()


def test_eval_pairs_of_chosen_noise_types(corpus):
    pairs = eval_pairs(corpus, "valid", count=12, noise_types={"wind", "rooster"})
    assert len(pairs) == 12 and {p.noise_type for p in pairs} <= {"wind", "rooster"}
    assert all("wind" in p.noise_file or "rooster" in p.noise_file for p in pairs)
    with pytest.raises(DataError, match="no valid noise of type coffee-shop"):
        eval_pairs(corpus, "valid", count=4, noise_types={"coffee-shop", "wind"})
    with pytest.raises(DataError, match="no noise types given"):
        eval_pairs(corpus, "valid", count=4, noise_types=())


def test_eval_pairs_deterministic_and_at_nominal_snr(corpus):
    pairs = eval_pairs(corpus, "valid", count=8)
    assert len(pairs) == 8
    assert [p.input_snr_db for p in pairs] == list(EVAL_SNRS_DB) * 2
    for p in pairs:
        assert snr_db(p.clean, p.noisy) == pytest.approx(p.input_snr_db, abs=1e-3)
        assert np.max(np.abs(p.noisy)) <= 0.99 + 1e-6
    again = eval_pairs(corpus, "valid", count=8)
    assert [p.id for p in pairs] == [p.id for p in again]
    assert all(np.array_equal(a.noisy, b.noisy) for a, b in zip(pairs, again, strict=True))


def test_test_pairs_use_unseen_speakers(corpus):
    train_speakers = {f.label for f in corpus.select("train", "speech")}
    pairs = eval_pairs(corpus, "test", count=12)
    assert {p.speaker for p in pairs}.isdisjoint(train_speakers)


def test_write_read_pairs_round_trip(corpus, tmp_path):
    pairs = eval_pairs(corpus, "valid", count=4)
    csv_path = write_pairs(pairs, tmp_path / "set")
    with open(csv_path) as handle:
        header = next(csv.reader(handle))
    assert {"id", "noisy", "clean", "input_snr_db", "noise_type", "speaker"} <= set(header)
    rows = read_pairs(csv_path)
    assert [r.id for r in rows] == [p.id for p in pairs]
    clean, noisy = load_pair(rows[0])
    assert np.allclose(noisy, pairs[0].noisy, atol=1 / 32768 + 1e-6)
    assert load_early(rows[0], len(clean)) is None  # corpus pairs are dry
    assert not list((tmp_path / "set").rglob("*.part"))


def test_write_read_pairs_round_trip_with_early_reference(ood, tmp_path):
    pairs = ood[:12]
    rows = read_pairs(write_pairs(pairs, tmp_path / "set"))
    for row, pair in zip(rows, pairs, strict=True):
        clean, _ = load_pair(row)
        early = load_early(row, len(clean))
        assert (early is None) == (pair.early is None)
        if early is not None:
            assert np.allclose(early, pair.early, atol=1 / 32768 + 1e-6)


@pytest.mark.parametrize("content", ["", "a,b\n1,2\n", "\x00\xff garbage"])
def test_read_pairs_rejects_bad_csv(tmp_path, content):
    path = tmp_path / "pairs.csv"
    path.write_text(content, encoding="latin-1")
    with pytest.raises(DataError) as err:
        read_pairs(path)
    assert "\n" not in str(err.value)


def test_read_pairs_missing(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "none.csv")
