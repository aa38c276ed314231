"""Corpus, mixing, the training Dataset and the fixed evaluation sets."""

import csv

import numpy as np
import pytest
import torch

from speechmask.data import (
    EVAL_SNRS_DB,
    AugmentConfig,
    Corpus,
    DataError,
    MixConfig,
    MixtureDataset,
    colored_noise,
    eval_pairs,
    loop_to_length,
    mix,
    noise_type_of,
    random_eq,
    read_pairs,
    scale_to_snr,
    write_pairs,
)
from speechmask.metrics import snr_db
from speechmask.rooms import RoomConfig


@pytest.fixture(scope="module")
def corpus():
    return Corpus()


def test_bundled_corpus_matches_its_readme(corpus):
    stats = {(r["split"], r["kind"]): r for r in corpus.stats()}
    assert stats["train", "speech"]["files"] == 900
    assert stats["valid", "speech"]["files"] == 72
    assert stats["test", "speech"]["files"] == 216
    assert stats["train", "noise"]["files"] == 248
    assert sum(r["files"] for r in stats.values()) == 1611
    assert all(f.path.is_file() for f in corpus.files)
    assert (corpus.root / "LICENSES").is_dir()


def test_test_split_is_disjoint_from_training(corpus):
    speakers = {s: {f.label for f in corpus.select(s, "speech")} for s in ("train", "test")}
    assert speakers["train"].isdisjoint(speakers["test"])
    noise_files = {s: {f.path.name for f in corpus.select(s, "noise")} for s in ("train", "test")}
    assert noise_files["train"].isdisjoint(noise_files["test"])
    # Long-form noise types (Blanket, Speech Commands) of the test split never occur in train.
    long_form = {f.label for f in corpus.select("test", "noise") if f.source != "esc10"}
    train_long = {f.label for f in corpus.select("train", "noise") if f.source != "esc10"}
    assert long_form and long_form.isdisjoint(train_long)


@pytest.mark.parametrize("name,label", [
    ("sea_waves_1-123-A.flac", "sea_waves"), ("dog_5-9032-A.flac", "dog"),
    ("coffee-shop.flac", "coffee-shop"), ("running_tap.flac", "running_tap"),
])
def test_noise_type_of(name, label, tmp_path):
    assert noise_type_of(tmp_path / name) == label


def test_missing_corpus_is_one_line_error(tmp_path):
    with pytest.raises(DataError) as err:
        Corpus(tmp_path / "nowhere")
    assert "manifest.csv" in str(err.value) and "\n" not in str(err.value)


def test_unknown_split(corpus):
    with pytest.raises(DataError, match="unknown split"):
        corpus.select("dev", "speech")


@pytest.mark.parametrize("length,offset", [(10, 0), (25, 3), (7, 9)])
def test_loop_to_length(length, offset):
    noise = np.arange(10, dtype=np.float32)
    out = loop_to_length(noise, length, offset)
    assert len(out) == length
    assert np.array_equal(out, (offset + np.arange(length)) % 10)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 15.0])
def test_scale_to_snr_is_exact(snr):
    rng = np.random.default_rng(0)
    s, n = rng.standard_normal(1000), rng.standard_normal(1000)
    assert snr_db(s, s + scale_to_snr(s, n, snr)) == pytest.approx(snr, abs=1e-4)


@pytest.mark.parametrize("snr,gain", [(-5.0, 0.0), (10.0, -20.0), (0.0, 30.0)])
def test_mix_snr_gain_no_clipping_and_determinism(snr, gain):
    speech = np.sin(np.arange(8000) / 5).astype(np.float32) * 0.9
    noise = np.random.default_rng(1).standard_normal(3000).astype(np.float32)  # shorter: looped
    m = mix(speech, noise, snr, np.random.default_rng(2), gain_db=gain)
    assert len(m.noisy) == len(speech)
    assert np.max(np.abs(m.noisy)) <= 0.99 + 1e-6
    assert snr_db(m.clean, m.noisy) == pytest.approx(snr, abs=1e-3)
    again = mix(speech, noise, snr, np.random.default_rng(2), gain_db=gain)
    assert np.array_equal(m.noisy, again.noisy)


def test_augmentations_are_finite_and_shaped():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000).astype(np.float32)
    assert random_eq(x, rng, 6.0).shape == x.shape
    for exponent in (-1.0, 0.0, 1.0, 2.0):
        c = colored_noise(4000, rng, exponent)
        assert np.isfinite(c).all() and np.sqrt(np.mean(c**2)) == pytest.approx(1.0, rel=1e-3)


def _toy_sources(speech_like, n_speech=6, n_noise=3):
    speech = [speech_like(seconds=0.6 + 0.3 * i, seed=i) for i in range(n_speech)]
    rng = np.random.default_rng(0)
    noise = [rng.standard_normal(4000 + 1000 * i).astype(np.float32) for i in range(n_noise)]
    return speech, noise


@pytest.mark.parametrize("target", ["ibm", "irm"])
@pytest.mark.parametrize("augment", [AugmentConfig(), AugmentConfig.off(),
                                     AugmentConfig(babble=0.5, colored=0.5)])
def test_mixture_dataset_items(speech_like, target, augment):
    speech, noise = _toy_sources(speech_like)
    cfg = MixConfig(crop_seconds=1.0, examples_per_epoch=6, augment=augment)
    ds = MixtureDataset(speech, noise, cfg, target=target, seed=3)
    for i in range(len(ds)):
        item = ds[i]
        assert item["noisy"].shape == (16000,)
        assert item["mag"].shape == item["mask"].shape == (63, 257)
        assert torch.allclose(item["noisy"], item["clean"] + item["noise"])
        assert item["mask"].min() >= 0 and item["mask"].max() <= 1
        assert item["noisy"].abs().max() <= 0.99 + 1e-6
        if target == "ibm":
            assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    first = ds[2]["noisy"]
    assert torch.equal(first, ds[2]["noisy"])  # deterministic
    ds.set_epoch(1)
    assert not torch.equal(first, ds[2]["noisy"])  # fresh mixtures each epoch


def test_mixture_dataset_snr_range():
    # Tones with no exact zeros, shorter and longer than the crop, so the padded region is known.
    speech = [(0.5 + 0.1 * np.sin(np.arange(n) / 3)).astype(np.float32) for n in (8000, 80000)]
    noise = [np.random.default_rng(0).standard_normal(5000).astype(np.float32)]
    cfg = MixConfig(crop_seconds=4.0, examples_per_epoch=20, augment=AugmentConfig.off(),
                    snr_low_db=3.0, snr_high_db=6.0)
    ds = MixtureDataset(speech, noise, cfg)
    for i in range(len(ds)):
        m = ds.draw(i)
        # SNR is over the speech region, so measure it there.
        active = m.clean != 0
        assert 3.0 - 1e-3 <= snr_db(m.clean[active], m.noisy[active]) <= 6.0 + 1e-3


@pytest.mark.parametrize("bad", [dict(snr_low_db=10, snr_high_db=0), dict(crop_seconds=0),
                                 dict(examples_per_epoch=0), dict(gain_low_db=5, gain_high_db=0)])
def test_mix_config_rejects_impossible_values(bad):
    with pytest.raises(ValueError):
        MixConfig(**bad)


def test_dataset_needs_sources():
    with pytest.raises(DataError):
        MixtureDataset([], [np.ones(10, np.float32)])


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
    from speechmask.data import load_pair

    clean, noisy = load_pair(rows[0])
    assert np.allclose(noisy, pairs[0].noisy, atol=1 / 32768 + 1e-6)
    assert not list((tmp_path / "set").rglob("*.part"))


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


def _toy(seed=5):
    rng = np.random.default_rng(seed)
    speech = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (20000, 40000, 9000, 33000)]
    noise = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (50000, 12000)]
    return speech, noise


def test_original_recipe_mixtures_are_unchanged():
    # Sums of |noisy| of items 0-11 of epoch 2, computed with the Dataset before the newer
    # steps (rooms, generated noise, band limits, levels, sources) existed: a config without
    # them must keep drawing exactly the mixtures it always drew.
    speech, noise = _toy()
    ds = MixtureDataset(speech, noise, MixConfig(crop_seconds=1.0), seed=3)
    ds.set_epoch(2)
    sums = [float(np.sum(np.abs(ds.draw(i).noisy), dtype=np.float64)) for i in range(12)]
    np.testing.assert_allclose(sums, [
        380.609646, 896.194336, 830.876004, 219.434436, 985.704138, 435.218251, 897.207944,
        1804.309619, 1245.692309, 172.730545, 681.559362, 187.83563], rtol=1e-6)


def _dataset(**mix):
    speech, noise = _toy()
    augment = mix.pop("augment", {})
    rooms = RoomConfig(count=2, rt60_low=0.15, rt60_high=0.3, length_m=(3.0, 4.0),
                       width_m=(3.0, 4.0), height_m=(2.4, 3.0))
    cfg = MixConfig(crop_seconds=1.0, augment=AugmentConfig(rooms=rooms, **augment), **mix)
    return MixtureDataset(speech, noise, cfg, seed=1, speech_groups=["a", "a", "b", "b"],
                          noise_groups=["n", "m"])


def test_clean_share_has_no_noise_and_levels_follow_the_range():
    ds = _dataset(clean_fraction=0.5, level_dbfs=(-40.0, -20.0))
    items = [ds.draw(i) for i in range(40)]
    silent = sum(not np.any(m.noise) for m in items)
    assert 10 <= silent <= 30
    peaks = [20 * np.log10(np.max(np.abs(m.noisy))) for m in items]
    assert min(peaks) >= -40.01 and max(peaks) <= -19.99


def test_sources_weights_choose_the_speech():
    ds = _dataset(speech_sources={"a": 0.0, "b": 1.0}, noise_sources={"n": 1.0})
    rng = np.random.default_rng(0)
    assert {ds.speech_pool.draw(rng) for _ in range(200)} == {2, 3}  # group "b"
    assert {ds.noise_pool.draw(rng) for _ in range(50)} == {0}


def test_band_limit_and_room_reach_the_target():
    ds = _dataset(augment={"lowpass": 1.0, "room": 1.0})
    m = ds.draw(0)
    spec = np.abs(np.fft.rfft(m.clean)) ** 2
    freqs = np.fft.rfftfreq(len(m.clean), 1 / 16000)
    assert spec[freqs > 7950].sum() < 1e-6 * spec.sum()  # every band edge is below 8 kHz
    dry = _dataset(augment={"lowpass": 1.0}).draw(0)
    assert not np.allclose(m.clean, dry.clean)


@pytest.mark.parametrize("kinds", [("hum",), ("clicks", "tones")])
def test_generated_noise_and_determinism(kinds):
    ds = _dataset(augment={"babble": 0.0, "colored": 0.0, "generated": 1.0,
                           "generated_kinds": kinds})
    a, b = ds.draw(3), ds.draw(3)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    ds.set_epoch(1)
    assert not np.array_equal(ds.draw(3).noisy, a.noisy)
