"""Training: a tiny model learns on synthetic data, logs, checkpoints and resumes exactly."""

import csv
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from speechmask import checkpoint as ckpt
from speechmask.augment import AugmentConfig
from speechmask.evalsets import EvalPair
from speechmask.features import StftConfig
from speechmask.metrics import snr_db
from speechmask.mixing import MixConfig, mix
from speechmask.model import MaskNet, ModelConfig
from speechmask.train import (
    RunState,
    TrainConfig,
    TrainData,
    WeightEma,
    build_model,
    compute_loss,
    config_from_dict,
    config_to_dict,
    lr_at,
    make_optimizer,
    record_epoch,
    restore,
    snr_ceilings_db,
    spectral_power_loss,
    spectral_si_sdr_db,
    spectral_snr_db,
    start_run,
    train,
    train_on,
    validate,
)


@pytest.fixture(scope="module")
def toy(request):
    from conftest import _speech_like

    speech = [_speech_like(seconds=1.0 + 0.25 * i, seed=i, f0=110 + 15 * i) for i in range(8)]
    rng = np.random.default_rng(0)
    noise = [rng.standard_normal(8000).astype(np.float32) * (0.5 + i) for i in range(3)]
    valid = []
    for i, snr in enumerate((-5.0, 0.0, 5.0, 10.0)):
        utt = _speech_like(seconds=1.0, seed=100 + i, f0=130)
        m = mix(utt, rng.standard_normal(9000).astype(np.float32), snr, rng)
        valid.append(EvalPair(f"v{i}", m.clean, m.noisy, snr, "white", "toy", "", ""))
    return speech, noise, valid


def _cfg(**kw):
    base = dict(
        model=ModelConfig(cell="gru", hidden=24, layers=1, dropout=0.0),
        mix=MixConfig(crop_seconds=0.5, examples_per_epoch=48, augment=AugmentConfig.off()),
        batch_size=16, epochs=3, lr=5e-3, warmup_steps=2, patience=0, threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("loss", ["bce", "bce+snr"])
def test_tiny_training_improves_and_writes_artifacts(tmp_path, toy, loss):
    speech, noise, valid = toy
    result = train(_cfg(loss=loss), tmp_path, speech=speech, noise=noise, valid=valid,
                   progress=False)
    for name in ("best.pt", "last.pt", "train_log.csv", "loss_curve.png"):
        assert (tmp_path / name).is_file(), name
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    noisy_snr = np.mean([snr_db(p.clean, p.noisy) for p in valid])
    assert result["best"]["valid_snr_db"] > noisy_snr + 1.0
    model, _, payload = ckpt.load_model(tmp_path / "best.pt")
    assert payload["metrics"]["valid_snr_db"] == pytest.approx(result["best"]["valid_snr_db"])
    assert payload["train_config"]["loss"] == loss


def test_a_deep_filter_trains_at_its_own_rate(tmp_path, toy):
    speech, noise, valid = toy
    cfg = _cfg(model=ModelConfig(cell="gru", hidden=24, layers=1, dropout=0.0, df_bins=16),
               loss="bce+snr", df_lr_scale=0.5)
    result = train(cfg, tmp_path, speech=speech, noise=noise, valid=valid, progress=False)
    noisy_snr = np.mean([snr_db(p.clean, p.noisy) for p in valid])
    assert result["best"]["valid_snr_db"] > noisy_snr + 1.0
    groups = torch.load(tmp_path / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert groups[1]["lr"] == pytest.approx(groups[0]["lr"] * 0.5) and groups[0]["lr"] > 0
    model, _, _ = ckpt.load_model(tmp_path / "last.pt")
    assert model.cfg.df_bins == 16 and model.df_head.weight.abs().sum() > 0


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_after_kill_is_exact(tmp_path, toy, ema_decay):
    speech, noise, valid = toy
    train(_cfg(epochs=2, ema_decay=ema_decay), tmp_path / "straight", speech=speech,
          noise=noise, valid=valid, progress=False)
    # "Killed" after epoch 1: a run configured for 2 epochs whose last.pt holds epoch 1.
    part = tmp_path / "resumed"
    train(_cfg(epochs=2, ema_decay=ema_decay), part, speech=speech, noise=noise, valid=valid,
          progress=False)
    state = torch.load(part / "last.pt", weights_only=True)
    first = _cfg(epochs=1, ema_decay=ema_decay)
    train(first, tmp_path / "one", speech=speech, noise=noise, valid=valid, progress=False)
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    torch.save({**one, "train_config": state["train_config"]}, part / "last.pt")
    train(_cfg(epochs=2, ema_decay=ema_decay), part, speech=speech, noise=noise, valid=valid,
          resume=True, progress=False)
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    resumed = torch.load(part / "last.pt", weights_only=True)
    keys = ["state_dict"] + (["train_state_dict"] if ema_decay else [])
    assert ("train_state_dict" in resumed) == bool(ema_decay)
    for key in keys:
        a, b = straight[key], resumed[key]
        assert all(torch.equal(a[k], b[k]) for k in a), key
    rows = list(csv.DictReader(open(part / "train_log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]


def test_resume_from_corrupt_checkpoint(tmp_path, toy):
    speech, noise, valid = toy
    (tmp_path / "last.pt").write_bytes(b"junk")
    with pytest.raises(ckpt.CheckpointError) as err:
        train(_cfg(), tmp_path, speech=speech, noise=noise, valid=valid, resume=True,
              progress=False)
    assert "\n" not in str(err.value)


def test_weight_ema_follows_then_lags_the_weights():
    model = MaskNet(ModelConfig(cell="gru", hidden=8, layers=1))
    ema = WeightEma(model, decay=0.99)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.feat_mean.fill_(3.0)  # buffers (the input normalisation) are copied, not averaged
    ema.update(model, step=0)  # decay ramps: min(0.99, 1/10) -> 90% of the way at once
    for mine, s in zip(ema.model.parameters(), start, strict=True):
        assert torch.allclose(mine, s + 0.9)
        assert not mine.requires_grad
    ema.update(model, step=10_000)  # full decay: 1% of the remaining 0.1
    for mine, s in zip(ema.model.parameters(), start, strict=True):
        assert torch.allclose(mine, s + 0.9 + 0.001)
    assert torch.equal(ema.model.feat_mean, model.feat_mean)


def test_ema_run_saves_and_returns_the_average(tmp_path, toy):
    speech, noise, valid = toy
    result = train(_cfg(epochs=2, ema_decay=0.9), tmp_path, speech=speech, noise=noise,
                   valid=valid, progress=False)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    returned = result["model"].state_dict()
    assert "train_state_dict" not in best
    assert any(not torch.equal(last["state_dict"][k], last["train_state_dict"][k])
               for k in last["state_dict"])
    assert all(torch.equal(last["state_dict"][k], returned[k]) for k in returned)
    # The saved metrics are the average's: scoring best.pt again gives them.
    model, _, payload = ckpt.load_model(tmp_path / "best.pt")
    again = validate(model, _cfg(), valid, StftConfig())
    assert again["valid_snr_db"] == pytest.approx(payload["metrics"]["valid_snr_db"], abs=1e-4)


@pytest.mark.parametrize("bad", [dict(target="cirm"), dict(loss="mse"), dict(batch_size=0),
                                 dict(epochs=0), dict(lr=0.0), dict(patience=-1),
                                 dict(ema_decay=1.0), dict(ema_decay=-0.1),
                                 dict(snr_max_db=0.0), dict(snr_max_db=float("nan")),
                                 dict(spec_weight=-1.0), dict(spec_weight=float("nan"))])
def test_config_rejects_impossible_values(bad):
    with pytest.raises(ValueError):
        _cfg(**bad)


def test_lr_schedule_warms_up_and_decays():
    cfg = _cfg(lr=1e-3, warmup_steps=10)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4)
    assert max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] < 1e-4 and all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_spectral_snr_and_loss():
    ref = torch.randn(2, 5, 257, dtype=torch.complex64)
    assert spectral_snr_db(ref * 1.0, ref).min() > 70
    assert spectral_snr_db(ref * 0.0, ref) == pytest.approx(torch.zeros(2), abs=1e-3)
    cfg = _cfg(loss="snr")
    mask = torch.ones(2, 5, 257)
    loss = compute_loss(cfg, mask, mask, ref, ref)
    assert loss < -7.0  # -SNR/10 of a perfect estimate


@pytest.mark.parametrize("score", [spectral_snr_db, spectral_si_sdr_db])
def test_snr_ceiling_caps_easy_examples_and_spares_hard_ones(score):
    ref = torch.randn(2, 5, 257, dtype=torch.complex64)
    noise = torch.randn(2, 5, 257, dtype=torch.complex64)
    assert score(ref, ref, max_db=30.0) == pytest.approx(torch.full((2,), 30.0), abs=1e-3)
    hard = ref + 10 ** (-10 / 20) * noise  # ~10 dB
    assert score(hard, ref, max_db=30.0) == pytest.approx(score(hard, ref), abs=0.05)
    # Near perfect (~60 dB): the ceiling takes nearly all of its pull away.
    grads = []
    for top in (math.inf, 30.0):
        est = (ref + 1e-3 * noise).requires_grad_()
        score(est, ref, max_db=top).sum().backward()
        grads.append(est.grad.abs().sum())
    assert grads[1] < grads[0] / 100


@pytest.mark.parametrize("on_clean", [True, False])
def test_ceiling_on_clean_decides_whether_clean_examples_are_capped(on_clean):
    cfg = _cfg(loss="snr", snr_max_db=30.0, ceiling_on_clean=on_clean)
    input_snr = torch.tensor([math.inf, 20.0])
    tops = snr_ceilings_db(cfg, input_snr)
    expected = [30.0 if on_clean else math.inf, 30.0]
    assert torch.as_tensor(tops).expand(2).tolist() == expected
    # A near-perfect output (~60 dB) of a clean and of a 20 dB example: the clean one's loss
    # term goes past the ceiling only when it is spared; the noisy one is capped either way.
    gen = torch.Generator().manual_seed(3)
    ref = torch.randn(2, 5, 257, dtype=torch.complex64, generator=gen)
    est = ref + 1e-3 * torch.randn(2, 5, 257, dtype=torch.complex64, generator=gen)
    ones = torch.ones(2, 5, 257)
    per_example = [float(compute_loss(cfg, ones, ones, est[i:i + 1], ref[i:i + 1],
                                      input_snr[i:i + 1])) for i in range(2)]
    assert per_example[1] == pytest.approx(-3.0, abs=0.01)  # -30 dB / 10
    assert per_example[0] == pytest.approx(-3.0 if on_clean else -6.0, abs=0.1)
    # Without the SNRs of the inputs (recorded pairs) every example is capped.
    assert snr_ceilings_db(cfg, None) == 30.0


def test_spared_clean_examples_may_get_their_own_ceiling():
    cfg = _cfg(loss="snr", snr_max_db=30.0, ceiling_on_clean=False, clean_snr_max_db=50.0)
    tops = snr_ceilings_db(cfg, torch.tensor([math.inf, 20.0, -5.0]))
    assert tops.tolist() == [50.0, 30.0, 30.0]
    gen = torch.Generator().manual_seed(4)
    ref = torch.randn(1, 5, 257, dtype=torch.complex64, generator=gen)
    est = ref + 1e-4 * torch.randn(1, 5, 257, dtype=torch.complex64, generator=gen)  # ~80 dB
    loss = compute_loss(cfg, torch.ones(1, 5, 257), torch.ones(1, 5, 257), est, ref,
                        torch.tensor([math.inf]))
    assert float(loss) == pytest.approx(-5.0, abs=0.05)  # -50 dB / 10


@pytest.mark.parametrize("level", [1e-3, 1.0, 30.0])
def test_spectral_power_loss_is_zero_when_perfect_and_level_free(level):
    gen = torch.Generator().manual_seed(1)
    ref = torch.randn(3, 6, 257, dtype=torch.complex64, generator=gen)
    noise = torch.randn(3, 6, 257, dtype=torch.complex64, generator=gen)
    assert spectral_power_loss(level * ref, level * ref) == pytest.approx(0.0, abs=1e-6)
    # All-zero output: the magnitude and complex errors are each the reference's mean power.
    assert spectral_power_loss(0 * ref, level * ref) == pytest.approx(1.0, abs=1e-2)
    # The same relative error at every level (the mixtures span 54 dB).
    noisy = spectral_power_loss(level * (ref + 0.3 * noise), level * ref)
    same_at_one = float(spectral_power_loss(ref + 0.3 * noise, ref))
    assert float(noisy) == pytest.approx(same_at_one, rel=1e-4)
    # A wrong phase costs through the complex part only.
    flipped = spectral_power_loss(-level * ref, level * ref)
    assert 0.0 < flipped < 1.0


def test_spec_weight_adds_the_compressed_term_and_its_gradient():
    gen = torch.Generator().manual_seed(2)
    ref = torch.randn(2, 5, 257, dtype=torch.complex64, generator=gen)
    noisy = ref + torch.randn(2, 5, 257, dtype=torch.complex64, generator=gen)
    mask = torch.full((2, 5, 257), 0.5, requires_grad=True)
    target = torch.full((2, 5, 257), 0.7)
    plain = compute_loss(_cfg(loss="bce+snr+sisdr"), mask, target, noisy, ref)
    weighted = compute_loss(_cfg(loss="bce+snr+sisdr", spec_weight=2.0), mask, target, noisy, ref)
    extra = 2.0 * spectral_power_loss(mask * noisy, ref)
    assert weighted.item() == pytest.approx((plain + extra).item(), rel=1e-6)
    weighted.backward()
    assert mask.grad is not None and torch.isfinite(mask.grad).all() and mask.grad.abs().sum() > 0


@pytest.mark.parametrize("gain", [0.25, 0.5, 2.0])
def test_spectral_si_sdr_ignores_scale_and_matches_waveform(gain):
    from speechmask.features import stft
    from speechmask.metrics import si_sdr_db
    from speechmask.stft_config import StftConfig

    ref = torch.randn(2, 5, 257, dtype=torch.complex64)
    assert spectral_si_sdr_db(gain * ref, ref).min() > 70  # a scaled copy is perfect...
    assert spectral_snr_db(gain * ref, ref).max() < 13  # ...which SNR does not forgive
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 16000, generator=gen)
    est = gain * clean + 0.3 * torch.randn(1, 16000, generator=gen)
    cfg = StftConfig()
    spectral = float(spectral_si_sdr_db(stft(est, cfg), stft(clean, cfg))[0])
    assert spectral == pytest.approx(si_sdr_db(clean[0].numpy(), est[0].numpy()), abs=0.05)
    mask = torch.full((1, 5, 257), 0.5)
    with_si_sdr = compute_loss(_cfg(loss="bce+snr+sisdr"), mask, mask, ref[:1], ref[:1])
    assert with_si_sdr < compute_loss(_cfg(loss="bce+snr"), mask, mask, ref[:1], ref[:1])


def test_empty_sources_are_an_error(tmp_path, toy):
    from speechmask.corpus import DataError

    _, noise, valid = toy
    with pytest.raises(DataError):
        train(_cfg(), tmp_path, speech=[], noise=noise, valid=valid, progress=False)


def test_freeze_first_layer_keeps_it_fixed(tmp_path, toy):
    speech, noise, valid = toy
    cfg = _cfg(epochs=1, freeze_first_layer=True,
               model=ModelConfig(cell="lstm", hidden=16, layers=2, dropout=0.0))
    torch.manual_seed(1)
    from speechmask.model import MaskNet

    init = MaskNet(cfg.model)
    train(cfg, tmp_path, speech=speech, noise=noise, valid=valid, init_model=init,
          progress=False)
    trained = torch.load(tmp_path / "last.pt", weights_only=True)["state_dict"]
    before = init.state_dict()
    assert torch.equal(trained["rnn.weight_ih_l0"], before["rnn.weight_ih_l0"])
    assert not torch.equal(trained["rnn.weight_ih_l1"], before["rnn.weight_ih_l1"])


def test_on_epoch_can_stop_training(tmp_path, toy):
    speech, noise, valid = toy
    seen = []
    result = train(_cfg(epochs=3), tmp_path, speech=speech, noise=noise, valid=valid,
                   progress=False, on_epoch=lambda row: seen.append(row["epoch"]) or True)
    assert seen == [1] and result["epochs"] == 1


def test_holdout_noise_round_trips_through_a_checkpoint_config():
    cfg = TrainConfig(valid_count=8, holdout_noise=("wind", "exercise_bike"))
    # A checkpoint's config dict holds a list; old ones lack the field.
    d = config_to_dict(cfg)
    assert config_from_dict({**d, "holdout_noise": list(cfg.holdout_noise)}) == cfg
    del d["holdout_noise"]
    assert config_from_dict(d).holdout_noise == ()


# ---------------------------------------------------------------------------------------------
# The steps of a run


def test_train_is_train_on_the_arrays_data(tmp_path, toy):
    speech, noise, valid = toy
    cfg = _cfg(epochs=1)
    train(cfg, tmp_path / "train", speech=speech, noise=noise, valid=valid, progress=False)
    train_on(TrainData.from_arrays(cfg, speech, noise, valid), cfg, tmp_path / "train_on",
             progress=False)
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in ("train", "train_on"))
    assert all(torch.equal(a["state_dict"][k], v) for k, v in b["state_dict"].items())
    assert [r["valid_snr_db"] for r in a["log"]] == [r["valid_snr_db"] for r in b["log"]]


def test_restore_takes_up_where_last_pt_left(tmp_path, toy):
    speech, noise, valid = toy
    cfg = _cfg(epochs=1)
    train(cfg, tmp_path, speech=speech, noise=noise, valid=valid, progress=False)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    data = TrainData.from_arrays(cfg, speech, noise, valid)
    run = start_run(cfg, tmp_path, len(data.train_set))
    model = build_model(run, data.train_set)
    state = restore(run, model, make_optimizer(cfg, model))
    assert (state.epoch, state.step, state.rows) == (1, 3, saved["log"])  # 48 examples / 16
    assert state.best == saved["log"][0]["valid_snr_db"] and state.stale == 0
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_build_model_widens_the_init_without_changing_its_masks(tmp_path, toy, cell):
    # A recipe or --init run with a larger model.hidden starts from the init's masks exactly.
    speech, noise, valid = toy
    torch.manual_seed(3)
    init = MaskNet(ModelConfig(cell=cell, hidden=24, layers=2, dropout=0.0)).eval()
    cfg = _cfg(model=ModelConfig(cell=cell, hidden=40, layers=2, dropout=0.0))
    data = TrainData.from_arrays(cfg, speech, noise, valid)
    model = build_model(start_run(cfg, tmp_path, len(data.train_set)), data.train_set, init)
    mag = torch.rand(1, 30, 257) * 3
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(mag)[0], init(mag)[0], atol=1e-6, rtol=0)
    assert model.cfg.hidden == 40 and model.parameter_count() > init.parameter_count()


def test_validate_scores_corpus_and_held_out_speakers_apart(toy):
    # The corpus' valid speakers are its training speakers: the held-out ones get their own
    # mean (and may pick best.pt); the overall mean is the pair-weighted mean of the two.
    _, _, valid = toy
    held = [replace(p, id=f"heldout_{i:04d}") for i, p in enumerate(valid[:3])]
    clean = EvalPair("heldout_clean_0000", valid[0].clean, valid[0].clean, math.inf, "none",
                     "toy", "", "")
    cfg = _cfg()
    torch.manual_seed(0)
    model = MaskNet(cfg.model)
    out = validate(model, cfg, [*valid, *held, clean], StftConfig())
    only_corpus = validate(model, cfg, valid, StftConfig())
    only_held = validate(model, cfg, held, StftConfig())
    assert "valid_heldout_si_sdr_db" not in only_corpus | only_held  # one group: no split
    assert out["valid_corpus_si_sdr_db"] == pytest.approx(only_corpus["valid_si_sdr_db"])
    assert out["valid_heldout_si_sdr_db"] == pytest.approx(only_held["valid_si_sdr_db"])
    assert out["valid_si_sdr_db"] == pytest.approx(
        (4 * out["valid_corpus_si_sdr_db"] + 3 * out["valid_heldout_si_sdr_db"]) / 7)
    assert "valid_clean_si_sdr_db" in out


def test_selecting_on_held_out_speakers_needs_them(tmp_path, toy):
    speech, noise, valid = toy
    cfg = _cfg(epochs=1, select_metric="valid_heldout_si_sdr_db")
    with pytest.raises(ValueError, match="needs the held-out speakers' pairs"):
        train_on(TrainData.from_arrays(cfg, speech, noise, valid), cfg, tmp_path / "a",
                 progress=False)
    both = [*valid, *(replace(p, id=f"heldout_{i}") for i, p in enumerate(valid))]
    result = train_on(TrainData.from_arrays(cfg, speech, noise, both), cfg, tmp_path / "b",
                      progress=False)
    row = result["best"]
    assert {"valid_corpus_si_sdr_db", "valid_heldout_si_sdr_db"} <= set(row)
    header = (tmp_path / "b" / "train_log.csv").read_text().splitlines()[0]
    assert "valid_heldout_si_sdr_db" in header


@pytest.mark.parametrize("scores,best,stale,last_improved", [
    ((1.0, 2.0, 3.0), 3.0, 0, True), ((3.0, 1.0, 2.0), 3.0, 2, False),
    ((1.0, 1.0), 1.0, 1, False),  # a tie is no gain
])
def test_record_epoch_keeps_the_best_and_counts_stale_epochs(tmp_path, scores, best, stale,
                                                            last_improved):
    run = start_run(_cfg(), tmp_path, epoch_size=48)
    state = RunState()
    improved = [record_epoch(run, state, epoch, 0.5, {"valid_loss": 0.1, "valid_snr_db": s,
                                                      "valid_si_sdr_db": s}, t0=0.0)
                for epoch, s in enumerate(scores)]
    assert (state.best, state.stale, improved[-1]) == (best, stale, last_improved)
    assert state.epoch == len(state.rows) == len(scores) and improved[0]
    assert [r["epoch"] for r in state.rows] == list(range(1, len(scores) + 1))


# ---------------------------------------------------------------------------------------------
# Distillation (TrainConfig.teacher)


def _constant_teacher(path, value=0.8, seed=0):
    """A checkpoint whose mask is ``value`` in every bin, whatever the input."""
    from speechmask.features import StftConfig
    from speechmask.model import MaskNet

    torch.manual_seed(seed)
    teacher = MaskNet(ModelConfig(cell="gru", hidden=8, layers=1, dropout=0.0))
    with torch.no_grad():
        teacher.dense.weight.zero_()
        teacher.dense.bias.fill_(float(np.log(value / (1 - value))))
    ckpt.save(path, ckpt.model_payload(teacher, StftConfig()))
    return path


@pytest.mark.parametrize("max_snr,rooms,expected", [
    (10.0, False, [True, True, False, False, False, False]),
    (-6.0, False, [False, False, False, False, False, False]),
    (100.0, False, [True, True, True, False, False, False]),
    (10.0, True, [True, True, False, False, False, True]),
    (float("inf"), True, [True, True, True, True, False, True]),
])
def test_teacher_takes_the_mixtures_of_known_snr_up_to_the_limit(max_snr, rooms, expected):
    from speechmask.train import teacher_selection

    batch = {"noisy": torch.zeros(6, 10),
             "snr_db": torch.tensor([-5.0, 10.0, 11.0, float("inf"), float("nan"), 0.0]),
             "room": torch.tensor([False, False, False, False, False, True])}
    cfg = TrainConfig(teacher_max_snr_db=max_snr, teacher_in_rooms=rooms)
    assert teacher_selection(cfg, batch).tolist() == expected
    # Items of datasets that do not say how they were mixed never take the teacher's targets.
    assert not teacher_selection(cfg, {"noisy": torch.zeros(6, 10)}).any()


@pytest.mark.parametrize("lookahead", [0, 2])
def test_distillation_targets_replace_only_the_selected_examples(lookahead):
    from speechmask.features import StftConfig, stft
    from speechmask.model import MaskNet, offline_masks
    from speechmask.train import distillation_targets

    torch.manual_seed(0)
    teacher = MaskNet(ModelConfig(cell="gru", hidden=8, layers=1, dropout=0.3,
                                  lookahead=lookahead))
    teacher.train()  # must be run in eval mode (no dropout) and left as it was
    noisy, clean = torch.randn(3, 4000), torch.randn(3, 4000)
    noisy_spec, clean_spec = stft(noisy, StftConfig()), stft(clean, StftConfig())
    target = torch.rand(noisy_spec.shape)
    selected = torch.tensor([True, False, True])
    new_target, reference = distillation_targets(teacher, selected, target, noisy_spec,
                                                 clean_spec)
    assert teacher.training
    teacher.eval()
    expected = offline_masks(teacher, noisy_spec.abs(), lookahead).detach()
    for i in (0, 2):
        torch.testing.assert_close(new_target[i], expected[i])
        torch.testing.assert_close(reference[i], expected[i] * noisy_spec[i])
    torch.testing.assert_close(new_target[1], target[1])
    torch.testing.assert_close(reference[1], clean_spec[1])
    # Nothing selected: the batch's own targets, untouched.
    same = distillation_targets(teacher, torch.zeros(3, dtype=torch.bool), target, noisy_spec,
                                clean_spec)
    assert same[0] is target and same[1] is clean_spec


def test_training_with_a_teacher_learns_its_masks(tmp_path, toy):
    """A student trained with a teacher that says 0.8 everywhere on every noisy mixture ends
    near 0.8; the same run without the teacher learns the ideal masks instead."""
    speech, noise, valid = toy
    teacher = _constant_teacher(tmp_path / "teacher.pt", 0.8)
    from speechmask.features import StftConfig, stft

    masks = {}
    for name, kw in {"taught": dict(teacher=str(teacher), teacher_max_snr_db=100.0),
                     "alone": {}}.items():
        result = train(_cfg(loss="bce", epochs=6, lr=2e-2, **kw), tmp_path / name,
                       speech=speech, noise=noise, valid=valid, progress=False)
        model = result["model"].eval()
        spec = stft(torch.from_numpy(valid[0].noisy)[None], StftConfig())
        with torch.no_grad():
            masks[name] = model.offline(spec.abs())
    assert (masks["taught"] - 0.8).abs().mean() < 0.05
    assert (masks["alone"] - 0.8).abs().mean() > 0.15
    assert ckpt.load_raw(tmp_path / "taught" / "best.pt")["train_config"]["teacher"] == str(
        teacher)


def test_a_missing_or_mismatched_teacher_is_a_one_line_error(tmp_path, toy):
    from speechmask.features import StftConfig
    from speechmask.model import MaskNet

    speech, noise, valid = toy
    with pytest.raises(ckpt.CheckpointError, match="no such teacher model"):
        train(_cfg(teacher=str(tmp_path / "none.pt")), tmp_path / "a", speech=speech,
              noise=noise, valid=valid, progress=False)
    other = tmp_path / "other.pt"
    ckpt.save(other, ckpt.model_payload(MaskNet(ModelConfig(hidden=8, layers=1, n_freqs=129)),
                                        StftConfig(n_fft=256, hop=128)))
    with pytest.raises(ckpt.CheckpointError, match="another STFT") as err:
        train(_cfg(teacher=str(other)), tmp_path / "b", speech=speech, noise=noise,
              valid=valid, progress=False)
    assert "\n" not in str(err.value)
