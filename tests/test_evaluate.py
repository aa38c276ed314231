"""Evaluation report: paired differences with standard errors, the fixed sets by name."""

import json
import math

import numpy as np
import pytest

from speechmask.corpus import DataError
from speechmask.evaluate import evaluate, format_table, paired_difference


@pytest.mark.parametrize(("a", "b", "mean", "se"), [
    ([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], 1.0, 0.0),            # a constant lead has no error
    ([1.0, 3.0], [0.0, 0.0], 2.0, 1.0),                     # std(ddof=1) = sqrt(2), / sqrt(2)
    ([1.0, float("nan"), 3.0], [0.0, 5.0, 0.0], 2.0, 1.0),  # a NaN file is left out
])
def test_paired_difference(a, b, mean, se):
    got_mean, got_se, n = paired_difference(a, b)
    assert got_mean == pytest.approx(mean) and got_se == pytest.approx(se)
    assert n == sum(math.isfinite(x - y) for x, y in zip(a, b, strict=True))


def test_paired_difference_of_nothing_is_nan():
    mean, se, n = paired_difference([float("nan")], [0.0])
    assert math.isnan(mean) and math.isnan(se) and n == 0


def test_model_against_itself_on_the_clean_set(tiny_model_files):
    model = tiny_model_files("gru", 1)[0]
    report = evaluate(model_path=model, split="clean", count=3, systems=("noisy", "model"),
                      metrics=("snr", "si_sdr"), progress=False, reference_path=None)
    # Clean pass-through: the input is its own reference, so the noisy "system" is perfect.
    assert report["overall"]["noisy"]["snr"] > 100
    assert report["paired"]["of"] == "model - noisy" and report["paired"]["snr"]["n"] == 3
    report = evaluate(model_path=model, split="clean", count=3,
                      systems=("model", "reference"), metrics=("snr",), progress=False,
                      reference_path=model)
    paired = report["paired"]["snr"]
    assert paired["mean"] == 0 and paired["se"] == 0 and paired["n"] == 3
    assert "model - reference, paired over files" in format_table(report)
    json.dumps(report)  # JSON-able


def test_ood_set_reports_dry_and_room(tiny_model_files):
    report = evaluate(model_path=tiny_model_files("gru", 1)[0], split="ood", count=10,
                      systems=("noisy", "model"), metrics=("si_sdr",), progress=False)
    rooms = {key.split("|")[1] for key in report["by_room"]}
    assert rooms == {"dry", "room"}  # 5 SNRs per speaker; odd speakers are reverberant
    assert "| model | room |" in format_table(report)
    assert np.isfinite(report["overall"]["model"]["si_sdr"])


def test_reference_needs_its_model(tiny_model_files):
    with pytest.raises(DataError, match="reference"):
        evaluate(model_path=tiny_model_files("gru", 1)[0], split="clean", count=1,
                 systems=("model", "reference"), progress=False)
