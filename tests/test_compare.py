"""benchmarks.compare: the mask rules it scores, its system syntax and its scoring of room
pairs against both references."""

import math

import numpy as np
import pytest

from benchmarks.compare import _init, _score, apply_rule, parse_system, print_tables, running_snr_db
from speechmask.evalsets import EvalPair
from speechmask.metrics import si_sdr_db


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 20.0])
def test_running_snr_converges_to_the_kept_to_removed_power_ratio(snr_db):
    power = np.ones((400, 257))
    keep = 1 / (1 + 10 ** (-snr_db / 20))  # (M / (1 - M))^2 = 10^(snr / 10)
    mask = np.full((400, 257), keep)
    est = running_snr_db(power, mask, frames_per_s=62.5, tau_s=1.0)
    assert est[-1] == pytest.approx(snr_db, abs=1e-3)
    assert est[0] == pytest.approx(snr_db, abs=1e-3)  # the ratio, not the level, from frame 0


def test_adaptive_limit_follows_the_estimated_snr():
    frames = 300
    power = np.ones((frames, 257))
    mask = np.full((frames, 257), 0.01)
    mask[:, :20] = 1.0  # a few loud kept bins: estimated SNR about -9 dB, then the limit is 100
    low = apply_rule(mask, np.sqrt(power), "adaptive", (30.0, 3.0, 1.0), 62.5)
    assert np.allclose(low, mask)
    mask[:, :200] = 1.0  # mostly kept: estimated SNR about 14 dB, limit 30 - 14 = 16 dB
    high = apply_rule(mask, np.sqrt(power), "adaptive", (30.0, 3.0, 1.0), 62.5)
    snr = 10 * math.log10((200 + 57 * 1e-4) / (57 * 0.99 ** 2))
    assert high[-1, -1] == pytest.approx(10 ** (-(30 - snr) / 20), rel=1e-3)
    assert np.all(high >= mask)


def test_atten_rule_is_a_floor():
    mask = np.array([[0.0, 0.05, 0.5, 1.0]])
    out = apply_rule(mask, np.ones_like(mask), "atten", (20.0,), 62.5)
    assert np.allclose(out, [[0.1, 0.1, 0.5, 1.0]])


def test_postfilter_deepens_cuts_and_keeps_a_full_mask():
    mask = np.array([[1.0, 0.9, 0.5, 0.1, 0.0]], np.float32)
    out = apply_rule(mask, np.ones_like(mask), "postfilter", (0.02,), 62.5)
    assert out[0, 0] == pytest.approx(1.0) and out[0, -1] == 0.0
    assert (out[0, 1:4] < mask[0, 1:4]).all() and (np.diff(out[0]) < 0).all()
    # Small masks are cut deeper than large ones (BETA 0.02: 0.1 -> 0.056, 0.9 -> 0.8996).
    assert out[0, 3] / mask[0, 3] < 0.6 and out[0, 1] / mask[0, 1] > 0.999


@pytest.mark.parametrize("bad", ["m.pt@atten", "m.pt@adaptive=1,2", "m.pt@floor=3",
                                 "m.pt@postfilter"])
def test_bad_rules_are_refused(bad):
    with pytest.raises(SystemExit):
        parse_system(bad)


def test_default_is_the_shipped_model():
    path, rule, values = parse_system("default@atten=12")
    assert path.endswith("model.pt") and rule == "atten" and values == (12.0,)


@pytest.mark.parametrize(("diffs", "expected"), [
    ([1.0, 3.0], (2.0, 1.0, 2)),
    ([1.0, float("nan"), 3.0, float("inf")], (2.0, 1.0, 2)),
    ([5.0], (5.0, None, 1)),
    ([], (None, None, 0)),
])
def test_mean_se_is_the_paired_mean_and_its_standard_error(diffs, expected):
    from benchmarks.stats import mean_se

    mean, se, n = mean_se(diffs)
    assert n == expected[2]
    for got, want in ((mean, expected[0]), (se, expected[1])):
        assert math.isnan(got) if want is None else got == pytest.approx(want)


def test_room_pairs_are_scored_against_both_references(capsys):
    rng = np.random.default_rng(0)
    early = rng.standard_normal(16_000).astype(np.float32) * 0.1
    clean = early + np.convolve(early, np.full(400, 1e-3), "same").astype(np.float32)
    noisy = clean + rng.standard_normal(16_000).astype(np.float32) * 0.03

    def pair(room: str, early_ref):
        return EvalPair(id=f"p_{room or 'dry'}", clean=clean, noisy=noisy, input_snr_db=5.0,
                        noise_type="white", speaker="s", speech_file="", noise_file="",
                        room=room, early=early_ref)

    _init(["default"])
    dry, room = _score((pair("", None), False)), _score((pair("room01", early), False))
    assert "early" not in dry and not dry["room"] and room["room"]
    assert room["noisy"][0] == pytest.approx(si_sdr_db(clean, noisy))
    assert room["early"]["noisy"][0] == pytest.approx(si_sdr_db(early, noisy))
    assert room["early"][0][0] != room[0][0]  # the system's output, scored twice
    print_tables([room["early"]], ["default"], overall=False, title=", early")
    out = capsys.readouterr().out
    assert "### si_sdr, early" in out and "| 5R (1) |" in out and "noisy pairs" not in out


def test_tables_give_each_validation_set_its_own_column(capsys):
    def row(pid: str, snr: float, gain: float) -> dict:
        return {"id": pid, "snr": snr, "room": False, "noisy": (1.0, 1.5, 0.8),
                0: (1.0 + gain, 2.0, 0.9)}

    rows = [row("valid_0001_x", 5.0, 2.0), row("heldout_0002_y", 5.0, 4.0),
            row("heldout_clean_0003_z", math.inf, 0.0)]
    print_tables(rows, ["m"])
    header = next(line for line in capsys.readouterr().out.splitlines()
                  if line.startswith("| system | noisy"))
    assert header.split(" | ")[1:5] == ["noisy pairs (2)", "valid noisy (1)",
                                        "heldout noisy (1)", "all clean (1)"]


def test_a_metric_not_computed_gets_no_table(capsys):
    nan = math.nan
    rows = [{"id": f"valid_000{i}_x", "snr": 5.0, "room": False, "noisy": (1.0, nan, 0.8),
             0: (2.0 + i, nan, 0.9)} for i in range(2)]
    print_tables(rows, ["m"])
    out = capsys.readouterr().out
    assert "### si_sdr" in out and "### stoi" in out and "### pesq" not in out
    assert "nan" not in out
