"""Dataset importers: layout detection, import -> load round trips, PairDataset, bad input.

Fixtures are tiny (0.5 s files, a handful per set) so the whole module runs in a few seconds.
"""

import json
import logging

import numpy as np
import pytest
import soundfile as sf

from speechmask.audio import MODEL_RATE
from speechmask.augment import AugmentConfig
from speechmask.corpus import DataError
from speechmask.dataset import MixtureDataset
from speechmask.evalsets import EvalPair, read_pairs
from speechmask.importers import (
    PairDataset,
    UserData,
    detect_layout,
    import_dataset,
    load_user_data,
    make_train_dataset,
    measured_snr_db,
)
from speechmask.mixing import MixConfig

SECONDS = 0.5


def _write(path, audio, rate=MODEL_RATE):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(audio, np.float32).T, rate, subtype="PCM_16")
    return path


def _noise(n, seed, color=0.0):
    """Unit-RMS-ish noise at 0.1 amplitude; ``color`` > 0 low-passes it (brownish)."""
    x = np.random.default_rng(seed).standard_normal(n)
    if color:
        x = np.convolve(x, np.ones(8) / 8, mode="same")
    return (0.1 * x / np.std(x)).astype(np.float32)


def _pair(speech_like, seed, rate=MODEL_RATE, seconds=SECONDS):
    clean = speech_like(seconds, rate=rate, seed=seed, f0=120 + 10 * seed)
    return clean, clean + _noise(len(clean), seed + 100, color=seed % 2)


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def _make_course(root, speech_like, n_train=4, n_valid=2):
    """trs/trn/trx triplets in train/ (one at 8 kHz, one stereo) and vs/vn/vx in valid/."""
    for split, (ps, pn, px), n in (("train", ("trs", "trn", "trx"), n_train),
                                   ("valid", ("vs", "vn", "vx"), n_valid)):
        for i in range(1, n + 1):
            rate = 8000 if (split, i) == ("train", 2) else MODEL_RATE
            clean, noisy = _pair(speech_like, i + (10 if split == "valid" else 0), rate)
            noise = noisy - clean
            if (split, i) == ("train", 3):  # stereo mixture
                noisy = np.stack([noisy, noisy])
            _write(root / split / f"{ps}{i:04d}.wav", clean, rate)
            _write(root / split / f"{pn}{i:04d}.wav", noise, rate)
            _write(root / split / f"{px}{i:04d}.wav", noisy, rate)
    return root


def _make_pairs(root, speech_like, with_test=True):
    """VoiceBank-style clean_/noisy_ folders: 3 speakers x 2 utterances for training (one pair
    at 44.1 kHz, one with a 16 kHz clean and an 8 kHz noisy file), 1 test pair."""
    train = [("p226", 1), ("p226", 2), ("p227", 1), ("p227", 2), ("p228", 1), ("p228", 2)]
    for k, (spk, utt) in enumerate(train):
        name = f"{spk}_{utt:03d}.wav"
        if k == 1:
            clean, noisy = _pair(speech_like, k, 44_100)
            _write(root / "clean_trainset_wav" / name, clean, 44_100)
            _write(root / "noisy_trainset_wav" / name, noisy, 44_100)
        elif k == 2:
            clean, noisy = _pair(speech_like, k, MODEL_RATE)
            noisy8 = speech_like(SECONDS, rate=8000, seed=k) + _noise(4000, 7)
            _write(root / "clean_trainset_wav" / name, clean)
            _write(root / "noisy_trainset_wav" / name, noisy8, 8000)
        else:
            clean, noisy = _pair(speech_like, k)
            _write(root / "clean_trainset_wav" / name, clean)
            _write(root / "noisy_trainset_wav" / name, noisy)
    if with_test:
        clean, noisy = _pair(speech_like, 20)
        _write(root / "clean_testset_wav" / "p232_001.wav", clean)
        _write(root / "noisy_testset_wav" / "p232_001.wav", noisy)
    return root


def _make_mixed(root, speech_like, n_noise=2):
    """clean/<speaker>/*.wav for 3 speakers x 2 files, noise/*.wav (one 44.1 kHz stereo)."""
    for s, spk in enumerate(("alice", "bob", "carol")):
        for u in range(2):
            _write(root / "clean" / spk / f"u{u}.wav",
                   speech_like(SECONDS, seed=10 * s + u, f0=110 + 30 * s))
    for k in range(n_noise):
        if k == 1:
            _write(root / "noise" / f"n{k}.wav", np.stack([_noise(44_100, k)] * 2), 44_100)
        else:
            _write(root / "noise" / f"n{k}.wav", _noise(MODEL_RATE, k, color=1))
    return root


def _assert_16k_flac(folder):
    files = sorted(folder.rglob("*.flac"))
    assert files
    for f in files:
        info = sf.info(str(f))
        assert info.samplerate == MODEL_RATE and info.channels == 1


def _check_pair_items(ds):
    item = ds[0]
    n = int(round(0.5 * MODEL_RATE))
    assert item["noisy"].shape == (n,) and item["clean"].shape == (n,)
    assert item["mag"].shape == item["mask"].shape == (n // 256 + 1, 257)
    assert np.allclose(item["noise"].numpy(), (item["noisy"] - item["clean"]).numpy(), atol=1e-6)
    again = ds[0]
    assert all(np.array_equal(item[k].numpy(), again[k].numpy()) for k in item)
    # The pair's SNR, measured on the crop, rides along for the loss.
    noise_energy = float((item["noise"].double() ** 2).sum())
    want = 10 * np.log10(float((item["clean"].double() ** 2).sum()) / noise_energy)
    assert float(item["snr_db"]) == pytest.approx(want, abs=1e-3) and not item["room"]
    ds.set_epoch(1)
    assert not np.array_equal(ds[0]["noisy"].numpy(), item["noisy"].numpy())
    ds.set_epoch(0)


# ---------------------------------------------------------------------------------------------
# detect_layout


def test_detect_layout(tmp_path, speech_like):
    assert detect_layout(_make_course(tmp_path / "c", speech_like, 2, 1)) == "course"
    assert detect_layout(_make_pairs(tmp_path / "p", speech_like)) == "pairs"
    assert detect_layout(_make_mixed(tmp_path / "m", speech_like)) == "mixed"
    assert detect_layout(tmp_path / "m" / "clean", noise_dir=tmp_path / "m" / "noise") == "mixed"


@pytest.mark.parametrize("case", ["missing", "empty", "unrelated"])
def test_detect_layout_errors(tmp_path, case):
    src = tmp_path / "src"
    if case != "missing":
        src.mkdir()
    if case == "unrelated":
        (src / "notes.txt").write_text("hello")
        _write(src / "song.wav", np.zeros(100, np.float32) + 0.1)
        (src / "misc").mkdir()
    with pytest.raises(DataError) as excinfo:
        detect_layout(src)
    msg = _one_line(excinfo)
    assert str(src) in msg
    assert all(name in msg for name in ("course", "pairs", "mixed"))
    with pytest.raises(DataError):
        import_dataset(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# Round trips


def test_course_round_trip(tmp_path, speech_like, caplog):
    src = _make_course(tmp_path / "src", speech_like)
    (src / "train" / "trn0004.wav").rename(src / "train" / "zz_unrelated.wav")  # broken triplet
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        summary = import_dataset(src, out)
    assert "0004" in caplog.text and "missing trn" in caplog.text
    assert summary["layout"] == "course"
    assert (summary["train_pairs"], summary["valid_pairs"]) == (3, 2)
    assert summary["train_hours"] == pytest.approx(3 * SECONDS / 3600, rel=1e-3)
    assert json.loads((out / "dataset.json").read_text())["layout"] == "course"
    _assert_16k_flac(out)
    rows = read_pairs(out / "valid" / "pairs.csv")
    assert len(rows) == 2 and all(np.isfinite(r.input_snr_db) for r in rows)

    user = load_user_data(out)
    assert isinstance(user, UserData) and user.layout == "course"
    assert len(user.train_pairs) == 3 and not user.train_speech and not user.train_noise
    for clean, noisy in user.train_pairs:
        assert len(clean) == len(noisy) == int(SECONDS * MODEL_RATE)
    assert len(user.valid) == 2 and all(isinstance(p, EvalPair) for p in user.valid)
    assert user.valid[0].speech_file.endswith("vs0001.wav")
    assert user.valid[0].input_snr_db == pytest.approx(
        measured_snr_db(user.valid[0].clean, user.valid[0].noisy), abs=0.01)

    ds = make_train_dataset(user, MixConfig(crop_seconds=0.5, examples_per_epoch=8), "irm", 0)
    assert isinstance(ds, PairDataset) and len(ds) == 8
    _check_pair_items(ds)


def test_course_without_valid_holds_out(tmp_path, speech_like):
    src = _make_course(tmp_path / "src", speech_like, n_train=4, n_valid=0)
    summary = import_dataset(src, tmp_path / "out", seed=3)
    assert (summary["train_pairs"], summary["valid_pairs"]) == (3, 1)
    again = import_dataset(src, tmp_path / "out", seed=3, overwrite=True)
    assert again == summary
    assert read_pairs(tmp_path / "out" / "valid" / "pairs.csv")[0].id in {
        "0001", "0002", "0003", "0004"}


def test_pairs_round_trip(tmp_path, speech_like):
    src = _make_pairs(tmp_path / "src", speech_like)
    out = tmp_path / "out"
    summary = import_dataset(src, out)
    assert summary["layout"] == "pairs"
    assert (summary["train_pairs"], summary["valid_pairs"]) == (6, 1)
    _assert_16k_flac(out)
    user = load_user_data(out)
    assert len(user.train_pairs) == 6 and [p.id for p in user.valid] == ["p232_001"]
    assert user.valid[0].speaker == "p232"
    assert all(len(c) == len(n) for c, n in user.train_pairs)
    _check_pair_items(PairDataset(user.train_pairs, 0.5, 4, "ibm", seed=1))


def test_pairs_without_test_set_holds_out_a_speaker(tmp_path, speech_like):
    src = _make_pairs(tmp_path / "src", speech_like, with_test=False)
    summary = import_dataset(src, tmp_path / "out", seed=0)
    assert (summary["train_pairs"], summary["valid_pairs"]) == (4, 2)
    train = {r.speaker for r in read_pairs(tmp_path / "out" / "train" / "pairs.csv")}
    valid = {r.speaker for r in read_pairs(tmp_path / "out" / "valid" / "pairs.csv")}
    assert len(valid) == 1 and not train & valid


def test_mixed_round_trip(tmp_path, speech_like):
    src = _make_mixed(tmp_path / "src", speech_like)
    out = tmp_path / "out"
    summary = import_dataset(src, out)
    assert summary["layout"] == "mixed"
    # 3 speakers -> 1 held out (2 files x 4 SNRs); 2 noise files -> 1 held out.
    assert (summary["train_speech"], summary["train_noise"]) == (4, 1)
    assert summary["valid_pairs"] == 8
    _assert_16k_flac(out)
    rows = read_pairs(out / "valid" / "pairs.csv")
    assert sorted({r.input_snr_db for r in rows}) == [-5.0, 0.0, 5.0, 10.0]
    assert len({r.speaker for r in rows}) == 1

    user = load_user_data(out)
    assert user.layout == "mixed" and not user.train_pairs
    assert len(user.train_speech) == 4 and len(user.train_noise) == 1
    assert len(user.valid) == 8
    p = user.valid[0]
    assert measured_snr_db(p.clean, p.noisy) == pytest.approx(p.input_snr_db, abs=0.2)

    # 4 utterances, fewer than babble's 3-6 talkers + target: babble uses the others only.
    aug = AugmentConfig(babble=0.5)
    cfg = MixConfig(crop_seconds=0.5, examples_per_epoch=4, augment=aug)
    ds = make_train_dataset(user, cfg, "irm", 0)
    assert isinstance(ds, MixtureDataset)
    for i in range(60):
        ds.draw(i)
    item = ds[0]
    assert item["mag"].shape == (8000 // 256 + 1, 257)


def test_mixed_single_noise_and_separate_noise_dir(tmp_path, speech_like, caplog):
    src = _make_mixed(tmp_path / "src", speech_like, n_noise=1)
    noise_dir = tmp_path / "noise_elsewhere"
    (src / "noise").rename(noise_dir)
    with caplog.at_level(logging.WARNING):
        summary = import_dataset(src / "clean", tmp_path / "out", noise_dir=noise_dir)
    assert "only one noise file" in caplog.text
    assert summary["train_noise"] == summary["valid_noise"] == 1
    assert summary["valid_pairs"] == 8
    user = load_user_data(tmp_path / "out")
    assert len(user.train_noise[0]) == int(0.9 * MODEL_RATE)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_corrupt_file_is_skipped(tmp_path, speech_like, caplog):
    src = _make_course(tmp_path / "src", speech_like, n_train=3, n_valid=1)
    (src / "train" / "trx0002.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with caplog.at_level(logging.WARNING):
        summary = import_dataset(src, tmp_path / "out")
    assert summary["train_pairs"] == 2
    assert "trx0002.wav" in caplog.text


def test_mismatched_lengths(tmp_path, speech_like, caplog):
    src = _make_pairs(tmp_path / "src", speech_like)
    clean = speech_like(SECONDS, seed=50)
    _write(src / "clean_trainset_wav" / "p229_001.wav", clean)
    _write(src / "noisy_trainset_wav" / "p229_001.wav", np.concatenate([clean, clean]))
    _write(src / "clean_trainset_wav" / "p229_002.wav", clean)  # 5 ms longer: trimmed
    _write(src / "noisy_trainset_wav" / "p229_002.wav", np.concatenate([clean, clean[:80]]))
    with caplog.at_level(logging.WARNING):
        summary = import_dataset(src, tmp_path / "out")
    assert summary["train_pairs"] == 7
    line = next(r.getMessage() for r in caplog.records if "p229_001" in r.getMessage())
    assert "clean_trainset_wav" in line and "noisy_trainset_wav" in line
    assert "p229_002" not in caplog.text


def test_too_few_files(tmp_path, speech_like):
    src = tmp_path / "src"
    for name in ("a_1.wav", "a_2.wav"):
        clean, noisy = _pair(speech_like, 1)
        _write(src / "clean_x" / name, clean)
        _write(src / "noisy_x" / name, noisy)
    with pytest.raises(DataError, match="need at least 3") as excinfo:
        import_dataset(src, tmp_path / "out")
    _one_line(excinfo)
    assert not (tmp_path / "out").exists()


def test_out_inside_src_or_not_empty(tmp_path, speech_like):
    src = _make_course(tmp_path / "src", speech_like, n_train=2, n_valid=1)
    for out in (src, src / "train" / "out"):
        with pytest.raises(DataError, match="outside the input") as excinfo:
            import_dataset(src, out)
        _one_line(excinfo)
    assert not (src / "train" / "out").exists()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    with pytest.raises(DataError, match="overwrite") as excinfo:
        import_dataset(src, out)
    _one_line(excinfo)
    assert import_dataset(src, out, overwrite=True)["train_pairs"] == 2
    assert (out / "keep.txt").exists()


def test_load_user_data_needs_import(tmp_path):
    with pytest.raises(DataError, match="speechmask data import") as excinfo:
        load_user_data(tmp_path)
    _one_line(excinfo)


def test_pair_dataset_pads_short_pairs_without_clipping():
    clean = np.full(1000, 0.5, np.float32)
    noisy = np.full(1000, 0.99, np.float32)
    ds = PairDataset([(clean, noisy)], crop_seconds=0.25, examples_per_epoch=5, seed=7)
    for i in range(5):
        m = ds.draw(i)
        assert len(m.clean) == 4000 and np.count_nonzero(m.clean) == 1000
        gain = m.clean[m.clean > 0][0] / 0.5
        assert 10 ** (-10 / 20) - 1e-6 <= gain <= 1 + 1e-6
        assert np.max(np.abs(m.noisy)) <= 0.99 + 1e-6
    with pytest.raises(DataError):
        PairDataset([])


@pytest.mark.parametrize(("groups", "fraction", "held_items"), [
    # Two folders of 1,786 and 900 files at 10 %: no whole folder is close; split by file.
    (["a"] * 1786 + ["b"] * 900, 0.1, 0),
    # Four equal speakers at 10 %: one speaker (25 %) is the closest whole-speaker split.
    ([s for s in "abcd" for _ in range(5)], 0.1, 5),
    # Ten speakers of 10 files at 20 %: two speakers.
    ([str(i) for i in range(10) for _ in range(10)], 0.2, 20),
    # Unique ids (split by file): exactly round(fraction * n).
    ([str(i) for i in range(50)], 0.1, 5),
])
def test_holdout_follows_the_fraction(groups, fraction, held_items):
    from speechmask.importers import _holdout

    held = _holdout(groups, fraction, seed=0, salt=1)
    assert sum(g in held for g in groups) == held_items
    assert _holdout(groups, fraction, seed=0, salt=1) == held  # seeded
