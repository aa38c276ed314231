"""The training Dataset: items, SNR ranges, sources, augmentation steps and determinism."""

import numpy as np
import pytest
import torch

from speechmask.augment import AugmentConfig
from speechmask.corpus import DataError
from speechmask.dataset import MixtureDataset
from speechmask.metrics import snr_db
from speechmask.mixing import MixConfig
from speechmask.rooms import RoomConfig


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


def test_dataset_needs_sources():
    with pytest.raises(DataError):
        MixtureDataset([], [np.ones(10, np.float32)])


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


@pytest.mark.parametrize("room", [0.0, 0.5, 1.0])
def test_mixtures_record_their_snr_room_and_clean_share(room):
    ds = _dataset(clean_fraction=0.3, snr_low_db=-5.0, snr_high_db=10.0,
                  augment={"room": room, "eq": 0.0})
    items = [ds.draw(i) for i in range(30)]
    for m in items:
        if not np.any(m.noise):
            assert m.snr_db == float("inf")
        else:
            assert -5.0 <= m.snr_db <= 10.0
    rooms = [m.room for m in items]
    assert (not any(rooms)) if room == 0.0 else all(rooms) if room == 1.0 else 0 < sum(rooms) < 30
    # The batch sees them as scalars next to the mask.
    item = ds[0]
    assert item["snr_db"].shape == () and item["room"].dtype == torch.bool
    assert float(item["snr_db"]) == pytest.approx(items[0].snr_db)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert batch["snr_db"].shape == (4,) and batch["room"].shape == (4,)


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


@pytest.mark.parametrize("clean_fraction", [0.0, 0.9])
def test_an_early_room_target_moves_the_tail_into_the_noise_of_the_same_mixture(clean_fraction):
    kw = dict(clean_fraction=clean_fraction, level_dbfs=None)
    full = _dataset(augment={"room": 1.0}, **kw)
    early = _dataset(augment={"room": 1.0, "room_early_ms": 50.0}, **kw)
    for i in range(4):
        a, b = full.draw(i), early.draw(i)
        np.testing.assert_allclose(b.noisy, a.noisy, atol=1e-6)  # what the model hears
        assert (b.snr_db, b.room) == (a.snr_db, a.room)
        # The target lost the late tail: less energy, and it is what the noise gained.
        assert np.sum(b.clean**2) < np.sum(a.clean**2)
        np.testing.assert_allclose(b.noise - a.noise, a.clean - b.clean, atol=1e-6)


def test_early_part_keeps_the_start_fades_and_stops():
    from speechmask.rooms import early_part

    rir = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    part = early_part(rir, 50.0)
    np.testing.assert_array_equal(part[:800], rir[:800])
    assert not np.any(part[880:])
    gain = part[800:880] / rir[800:880]
    assert gain[0] == pytest.approx(1.0) and np.all(np.diff(gain) < 0) and gain[-1] < 0.01
