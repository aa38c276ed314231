"""Mask-exponent calibration: the scores it reports are the scores of the model it writes."""

import numpy as np
import pytest
import torch

from speechmask import checkpoint as ckpt
from speechmask.calibrate import ExponentScore, best_exponent, score_exponents, write_calibrated
from speechmask.cli import main
from speechmask.enhance import Enhancer
from speechmask.features import StftConfig
from speechmask.metrics import si_sdr_db, snr_db
from speechmask.model import MaskNet, ModelConfig


def _model(exponent: float, df_bins: int = 0) -> MaskNet:
    torch.manual_seed(0)
    m = MaskNet(ModelConfig(cell="gru", hidden=16, layers=1, dropout=0.0,
                            mask_exponent=exponent, df_bins=df_bins))
    m.set_normalization(torch.full((257,), -8.0), torch.full((257,), 4.0))
    if df_bins:  # random coefficients (a new filter's are zero)
        torch.nn.init.normal_(m.df_head.weight, std=0.3)
    return m.eval()


def _pairs(speech_like, white_noise, mix_at_snr):
    clean = speech_like(1.0)
    pairs = []
    for seed, snr in ((1, 0.0), (2, 5.0)):
        speech, noise = mix_at_snr(clean, white_noise(len(clean), seed), snr)
        pairs.append((speech, speech + noise))
    return pairs


@pytest.mark.parametrize("trained_at, df_bins", [(1.0, 0), (2.0, 0), (1.0, 16)])
def test_scores_match_enhancing_with_that_exponent(speech_like, white_noise, mix_at_snr,
                                                   trained_at, df_bins):
    """Also with a deep filter: only the mask is raised, the coefficients stay."""
    pairs = _pairs(speech_like, white_noise, mix_at_snr)
    scores = score_exponents(_model(trained_at, df_bins), StftConfig(), pairs, (1.0, 1.5, 2.0),
                             progress=False)
    assert [s.exponent for s in scores] == [1.0, 1.5, 2.0]
    for s in scores:  # same weights at each exponent, enhanced the ordinary way
        enh = Enhancer(_model(s.exponent, df_bins), StftConfig())
        outs = [enh(noisy, 16000) for _, noisy in pairs]
        assert s.snr_db == pytest.approx(np.mean([snr_db(c, o) for (c, _), o in
                                                  zip(pairs, outs, strict=True)]), abs=1e-3)
        assert s.si_sdr_db == pytest.approx(np.mean([si_sdr_db(c, o) for (c, _), o in
                                                     zip(pairs, outs, strict=True)]), abs=1e-3)


def test_exponent_is_a_power_of_the_trained_mask():
    mag = torch.rand(1, 7, 257)
    base, _ = _model(1.0)(mag)
    sharp, _ = _model(1.3)(mag)
    assert torch.allclose(sharp, base.pow(1.3), atol=1e-6)
    with pytest.raises(ValueError, match="mask_exponent"):
        ModelConfig(mask_exponent=0.0)


@pytest.mark.parametrize("snrs,expected", [
    ((10.0, 10.2, 10.1), 1.2),
    ((10.0, 10.0, 9.0), 1.0),  # a tie keeps the trained mask
])
def test_best_exponent_maximises_snr(snrs, expected):
    scores = [ExponentScore(p, s, 0.0) for p, s in zip((1.0, 1.2, 1.4), snrs, strict=True)]
    assert best_exponent(scores).exponent == expected


def test_write_calibrated_keeps_weights_and_records_the_fit(tmp_path):
    src = ckpt.save(tmp_path / "m.pt", ckpt.model_payload(_model(1.0), StftConfig(),
                                                          metrics={"valid_snr_db": 1.0}))
    scores = [ExponentScore(1.0, 5.0, 4.0), ExponentScore(1.3, 5.2, 4.1)]
    out = write_calibrated(src, tmp_path / "c.pt", scores, scores[1], "fixed valid set")
    model, _, payload = ckpt.load_model(out)
    assert model.cfg.mask_exponent == 1.3 and payload["metrics"] == {"valid_snr_db": 1.0}
    assert payload["calibration"]["scores"][1]["snr_db"] == 5.2
    for k, v in _model(1.0).state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    slim = ckpt.export_inference(out, tmp_path / "slim.pt")  # export keeps the fit
    assert ckpt.load_raw(slim)["calibration"]["mask_exponent"] == 1.3


def run(capsys, *argv):
    code = main(["-q", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_calibrate_writes_a_model_that_onnx_and_info_agree_on(capsys, tmp_path,
                                                                  tiny_model_files):
    src = tiny_model_files()[0]
    out = tmp_path / "cal.pt"
    code, stdout, err = run(capsys, "calibrate", src, "--out", out, "--count", "4",
                            "--exponents", "1,1.7")
    assert code == 0, err
    assert "| exponent | SNR dB |" in stdout and "(chosen)" in stdout and out.is_file()
    chosen = ckpt.load_model(out)[0].cfg.mask_exponent
    assert chosen in (1.0, 1.7)
    code, stdout, _ = run(capsys, "info", "--model", out)
    assert code == 0 and f"mask exponent: {chosen:g}" in stdout
    # A forced exponent reaches the ONNX export too.
    code, _, err = run(capsys, "calibrate", src, "--out", out, "--count", "4",
                       "--exponents", "1.7", "--overwrite")
    assert code == 0, err
    code, _, err = run(capsys, "export", out, "--onnx", tmp_path / "cal.onnx")
    assert code == 0, err
    from speechmask.onnx_backend import OnnxEnhancer

    audio = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    calibrated = Enhancer.load(out)(audio, 16000)
    onnx_out = OnnxEnhancer.load(tmp_path / "cal.onnx")(audio, 16000)
    assert np.allclose(onnx_out, calibrated, atol=1e-4)
    assert not np.allclose(Enhancer.load(src)(audio, 16000), calibrated, atol=1e-4)


@pytest.mark.parametrize("extra,needle", [
    (["--out", "{src}", "--overwrite"], "overwrite the input"),
    (["--out", "{tmp}/x.pt", "--exponents", "abc"], "--exponents"),
    (["--out", "{tmp}/x.pt", "--exponents", "0,1"], "(0, 4]"),
    (["--out", "{tmp}/x.pt", "--pairs", "{tmp}/none.csv"], "none.csv"),
])
def test_cli_calibrate_errors_are_one_line(capsys, tmp_path, tiny_model_files, extra, needle):
    src = tiny_model_files()[0]
    argv = [a.format(src=src, tmp=tmp_path) for a in extra]
    code, _, err = run(capsys, "calibrate", src, *argv)
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1


def test_cli_calibrate_missing_model(capsys, tmp_path):
    code, _, err = run(capsys, "calibrate", tmp_path / "no.pt", "--out", tmp_path / "x.pt")
    assert code == 1 and "no.pt" in err and len(err.strip().splitlines()) == 1
