"""The command line: real runs of `speechmask` subcommands, good and bad input.

Every failure must be one line on stderr naming the file, a non-zero exit code, no traceback,
no partial output and never a modified input.
"""

import csv
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from speechmask.cli import main


@pytest.fixture(scope="module")
def model_path(tiny_model_files):
    return tiny_model_files()[0]


def run(capsys, *argv):
    code = main(["-q", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _tone(rate, seconds=0.5, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    return np.stack([x] * channels, axis=1) if channels > 1 else x


GOOD = {
    "mono16k.wav": (16000, 1, "PCM_16"),
    "stereo44k.wav": (44100, 2, "PCM_16"),
    "mono48k.flac": (48000, 1, "PCM_24"),
    "mono8k.wav": (8000, 1, "PCM_16"),
    "mono22k.wav": (22050, 1, "FLOAT"),
    "eightbit.wav": (16000, 1, "PCM_U8"),
    "silence.wav": (16000, 1, "PCM_16"),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_enhance_good_files_keep_rate_channels_length(capsys, tmp_path, model_path, name):
    rate, channels, subtype = GOOD[name]
    src = tmp_path / name
    audio = _tone(rate, channels=channels) * (name != "silence.wav")
    sf.write(src, audio, rate, subtype=subtype)
    before = src.read_bytes()
    out = tmp_path / "out" / ("clean" + src.suffix)
    code, stdout, err = run(capsys, "enhance", src, "-o", out, "--model", model_path)
    assert code == 0, err
    info, orig = sf.info(out), sf.info(src)
    assert (info.samplerate, info.channels, info.frames) == (rate, channels, orig.frames)
    assert "1 file(s) enhanced" in stdout and "real-time factor" in stdout
    assert stdout.rstrip().endswith("with torch")  # a .pt model runs with torch
    assert src.read_bytes() == before
    if name == "silence.wav":
        assert not np.any(sf.read(out)[0])


def _bad_files(tmp_path):
    bad = {}
    bad["empty.wav"] = tmp_path / "empty.wav"
    bad["empty.wav"].write_bytes(b"")
    bad["corrupt.wav"] = tmp_path / "corrupt.wav"
    bad["corrupt.wav"].write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt junk junk junk" * 3)
    bad["zero.wav"] = tmp_path / "zero.wav"
    sf.write(bad["zero.wav"], np.zeros(0), 16000)
    bad["nan.wav"] = tmp_path / "nan.wav"
    x = _tone(16000)
    x[100] = np.nan
    sf.write(bad["nan.wav"], x, 16000, subtype="FLOAT")
    return bad


@pytest.mark.parametrize("which", ["empty.wav", "corrupt.wav", "zero.wav", "nan.wav"])
def test_enhance_bad_file_is_one_line_and_no_output(capsys, tmp_path, model_path, which):
    src = _bad_files(tmp_path)[which]
    out = tmp_path / "out.wav"
    code, _, err = run(capsys, "enhance", src, "-o", out, "--model", model_path)
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and which in lines[0] and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".*.part"))


def test_enhance_folder_skips_bad_files_and_keeps_tree(capsys, tmp_path, model_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "a.wav", _tone(16000), 16000)
    sf.write(src / "sub" / "b.flac", _tone(48000, channels=2), 48000)
    (src / "sub" / "broken.wav").write_bytes(b"not audio at all")
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "enhance", src, "-o", out, "--model", model_path)
    assert code == 3  # some files failed
    assert (out / "a.wav").is_file() and (out / "sub" / "b.flac").is_file()
    assert not (out / "sub" / "broken.wav").exists()
    assert "broken.wav" in err and "2 file(s) enhanced" in stdout and "1 failed" in stdout
    # Second run: outputs exist and are skipped unless --overwrite.
    code, stdout, _ = run(capsys, "enhance", src / "a.wav", src / "sub" / "b.flac", "-o", out,
                          "--model", model_path)
    # Files named one by one land directly in -o; a.wav is there already.
    assert code == 0 and "1 skipped" in stdout and (out / "b.flac").is_file()
    # Nothing left to do: the summary says so, without a meaningless speed.
    code, stdout, _ = run(capsys, "enhance", src / "a.wav", "-o", out, "--model", model_path)
    assert code == 0 and "0 file(s) enhanced, 1 skipped" in stdout
    assert "nan" not in stdout and "real-time factor" not in stdout
    code, stdout, _ = run(capsys, "enhance", src / "a.wav", "-o", out, "--model", model_path,
                          "--overwrite", "--format", "flac")
    assert code == 0 and (out / "a.flac").is_file()


def test_enhance_refuses_to_overwrite_input(capsys, tmp_path, model_path):
    src = tmp_path / "a.wav"
    sf.write(src, _tone(16000), 16000)
    before = src.read_bytes()
    code, _, err = run(capsys, "enhance", src, "-o", src, "--model", model_path, "--overwrite")
    assert code == 1 and "overwrite" in err and src.read_bytes() == before
    code, _, err = run(capsys, "enhance", tmp_path, "-o", tmp_path, "--model", model_path,
                       "--overwrite")
    assert code == 1 and src.read_bytes() == before


@pytest.mark.parametrize("args,needle", [
    (["enhance", "{tmp}/missing.wav", "-o", "{tmp}/o.wav"], "no such file"),
    (["enhance", "{tmp}/emptydir", "-o", "{tmp}/o"], "no audio files"),
    (["enhance", "{tmp}/a.wav", "-o", "{tmp}/o.wav", "--strength", "2"], "--strength"),
    (["enhance", "{tmp}/a.wav", "-o", "{tmp}/o.wav", "--model", "{tmp}/a.wav"],
     "not a readable speechmask model"),
    (["enhance", "{tmp}/a.wav", "-o", "{tmp}/o.wav", "--model", "{tmp}/none.pt"],
     "no such model"),
    (["enhance", "{tmp}/a.wav", "-o", "{tmp}/a.wav/o.wav"], "cannot write"),
    (["evaluate"], "--pairs"),
    (["evaluate", "--pairs", "{tmp}/none.csv"], "no such file"),
    (["data", "testset", "--split", "valid", "--out", "{tmp}/set", "--corpus", "{tmp}/nocorpus"],
     "manifest.csv"),
    (["data", "testset", "--split", "valid", "--out", "{tmp}/set", "--count", "0"], "--count"),
    (["train", "--out", "{tmp}/run", "--corpus", "{tmp}/emptydir"], "manifest.csv"),
    (["train", "--out", "{tmp}/run", "--resume"], "nothing to resume"),
    (["train", "--out", "{tmp}/run", "--hidden", "-4"], "hidden"),
    (["train", "--out", "{tmp}/run", "--lookahead", "7"], "lookahead"),
    (["train", "--out", "{tmp}/run", "--snr-range", "10", "-5"], "SNR range reversed"),
    (["train", "--out", "{tmp}/run", "--init", "{tmp}/missing.pt"], "missing.pt"),
    (["train", "--out", "{tmp}/run", "--data", "{tmp}/emptydir", "--hold-out-noise", "wind"],
     "--hold-out-noise"),
    (["train", "--out", "{tmp}/run", "--hold-out-noise", "wind,coffee-shop"],
     "no train noise of type coffee-shop"),
    (["train", "--out", "{tmp}/run", "--init", "{tmp}/a.wav"], "a.wav"),
])
def test_errors_are_one_line(capsys, tmp_path, model_path, args, needle):
    sf.write(tmp_path / "a.wav", _tone(16000), 16000)
    (tmp_path / "emptydir").mkdir()
    argv = [a.format(tmp=tmp_path) for a in args]
    if argv[0] == "enhance" and "--model" not in argv:
        argv += ["--model", str(model_path)]
    code, _, err = run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_resume_with_corrupt_checkpoint(capsys, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(b"garbage")
    code, _, err = run(capsys, "train", "--out", run_dir, "--resume")
    assert code == 1 and "last.pt" in err and len(err.strip().splitlines()) == 1


def test_testset_writes_pairs_and_refuses_to_clobber(capsys, tmp_path):
    out = tmp_path / "set"
    code, stdout, _ = run(capsys, "data", "testset", "--split", "valid", "--out", out,
                          "--count", "4")
    assert code == 0 and "wrote 4 valid pairs" in stdout
    rows = list(csv.DictReader(open(out / "pairs.csv")))
    assert len(rows) == 4 and {r["input_snr_db"] for r in rows} == {"-5", "0", "5", "10"}
    assert all((out / r["noisy"]).is_file() and (out / r["clean"]).is_file() for r in rows)
    code, _, err = run(capsys, "data", "testset", "--split", "valid", "--out", out)
    assert code == 1 and "not empty" in err


def test_testset_writes_the_clean_pass_through_set(capsys, tmp_path):
    from speechmask.evalsets import load_pair, read_pairs

    out = tmp_path / "clean"
    code, stdout, _ = run(capsys, "data", "testset", "--split", "clean", "--out", out,
                          "--count", "3")
    assert code == 0 and "wrote 3 clean pairs" in stdout and "clean input" in stdout
    rows = read_pairs(out / "pairs.csv")
    assert len(rows) == 3 and all(r.input_snr_db == float("inf") for r in rows)
    clean, noisy = load_pair(rows[0])
    assert np.array_equal(clean, noisy)  # the input is its own reference


def test_evaluate_pairs_json(capsys, tmp_path, model_path):
    out = tmp_path / "set"
    assert run(capsys, "data", "testset", "--split", "valid", "--out", out, "--count", "4")[0] == 0
    report = tmp_path / "r.json"
    code, stdout, err = run(capsys, "evaluate", "--pairs", out / "pairs.csv", "--model",
                            model_path, "--metrics", "snr,si_sdr", "--jobs", "1",
                            "--json", report)
    assert code == 0, err
    assert "| oracle_irm |" in stdout and "| model |" in stdout
    import json

    data = json.loads(report.read_text())
    assert data["overall"]["oracle_irm"]["snr"] > data["overall"]["noisy"]["snr"] + 8


def test_evaluate_on_chosen_noise_types(capsys, tmp_path, model_path):
    report = tmp_path / "r.json"
    code, stdout, err = run(capsys, "evaluate", "--set", "valid", "--count", "8",
                            "--noise-types", "city,doing_the_dishes", "--model", model_path,
                            "--systems", "noisy,model", "--metrics", "snr", "--jobs", "1",
                            "--json", report)
    assert code == 0, err
    import json

    data = json.loads(report.read_text())
    assert data["pairs"] == 8 and "city, doing_the_dishes noise only" in data["source"]
    assert {key.split("|")[1] for key in data["by_noise"]} <= {"city", "doing_the_dishes"}
    code, _, err = run(capsys, "evaluate", "--set", "valid", "--noise-types", "train",
                       "--model", model_path)
    assert code != 0 and "no valid noise of type train" in err and len(err.splitlines()) == 1


def test_stats(capsys):
    code, stdout, _ = run(capsys, "data", "stats")
    assert code == 0 and "| train | speech | 900 |" in stdout


def test_console_script_help_and_version():
    out = subprocess.run([sys.executable, "-m", "speechmask", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("enhance", "train", "evaluate", "data"):
        assert command in out


def test_data_import_then_train_on_it(capsys, tmp_path, speech_like):
    """The course layout through the CLI: import, then one tiny epoch of training on it."""
    src = tmp_path / "course"
    for split, prefix, count in (("train", "tr", 4), ("valid", "v", 2)):
        for i in range(count):
            clean = speech_like(0.6, seed=i)
            noise = (0.05 * np.random.default_rng(i).standard_normal(len(clean))).astype("f4")
            for kind, sig in (("s", clean), ("n", noise), ("x", clean + noise)):
                (src / split).mkdir(parents=True, exist_ok=True)
                sf.write(src / split / f"{prefix}{kind}{i:04d}.wav", sig, 16000)
    out = tmp_path / "ds"
    code, stdout, err = run(capsys, "data", "import", src, "--out", out)
    assert code == 0, err
    assert '"layout": "course"' in stdout
    code, stdout, err = run(capsys, "train", "--data", out, "--out", tmp_path / "run",
                            "--hidden", "8", "--layers", "1", "--epochs", "1",
                            "--examples-per-epoch", "8", "--batch-size", "4",
                            "--crop-seconds", "0.5")
    assert code == 0, err
    assert (tmp_path / "run" / "best.pt").is_file() and "(by valid SNR): valid SNR" in stdout
    # Extend the finished run by one epoch with --resume; the log keeps epoch 1.
    code, stdout, err = run(capsys, "train", "--data", out, "--out", tmp_path / "run",
                            "--resume", "--epochs", "2", "--patience", "0", "--threads", "1")
    assert code == 0, err
    assert "trained 2 epochs" in stdout
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train_config"]
    assert (saved["epochs"], saved["patience"], saved["threads"]) == (2, 0, 1)
    code, _, err = run(capsys, "train", "--data", out, "--out", tmp_path / "run")
    assert code == 1 and "--resume" in err
    # A new run seeded with that model's weights: its architecture wins over --layers (a
    # larger --hidden would widen it), and with a vanishing learning rate the weights come out
    # as they went in.
    init = tmp_path / "run" / "best.pt"
    code, stdout, err = run(capsys, "train", "--data", out, "--out", tmp_path / "seeded",
                            "--init", init, "--layers", "2", "--epochs", "1", "--lr", "1e-12",
                            "--examples-per-epoch", "8", "--batch-size", "4",
                            "--crop-seconds", "0.5")
    assert code == 0, err
    before = torch.load(init, weights_only=True)
    after = torch.load(tmp_path / "seeded" / "best.pt", weights_only=True)
    assert after["model_config"] == before["model_config"]
    assert after["model_config"]["hidden"] == 8
    for name, weight in before["state_dict"].items():
        torch.testing.assert_close(after["state_dict"][name], weight, atol=1e-6, rtol=0)
    # The seeded run records where its weights came from, and `info` shows both stages.
    assert after["history"] == [before["metrics"]]
    code, stdout, err = run(capsys, "info", "--model", tmp_path / "seeded" / "best.pt")
    assert code == 0, err
    assert "stage 1 of 2" in stdout and "stage 2 of 2" in stdout
    code, _, err = run(capsys, "train", "--data", out, "--out", tmp_path / "seeded",
                       "--init", init, "--resume")
    assert code == 1 and "--init" in err and len(err.strip().splitlines()) == 1
    # --lookahead on a causal --init model: future-frame inputs start at zero weight.
    code, _, err = run(capsys, "train", "--data", out, "--out", tmp_path / "ahead", "--init",
                       init, "--lookahead", "1", "--epochs", "1", "--examples-per-epoch", "8",
                       "--batch-size", "4", "--crop-seconds", "0.5")
    assert code == 0, err
    ahead = torch.load(tmp_path / "ahead" / "best.pt", weights_only=True)
    assert ahead["model_config"]["lookahead"] == 1
    assert ahead["state_dict"]["rnn.weight_ih_l0"].shape[1] == 2 * 257
    code, stdout, err = run(capsys, "info", "--model", tmp_path / "ahead" / "best.pt")
    assert code == 0 and "48 ms" in stdout and "look-ahead" in stdout, err
    code, _, err = run(capsys, "train", "--data", out, "--out", tmp_path / "back", "--init",
                       tmp_path / "ahead" / "best.pt", "--lookahead", "0")
    assert code == 1 and "look-ahead 1" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "data", "import", src, "--out", out)
    assert code == 1 and len(err.strip().splitlines()) == 1


def test_evaluate_reports_corrupt_pair_file(capsys, tmp_path, model_path):
    sf.write(tmp_path / "c.wav", _tone(16000), 16000)
    (tmp_path / "n.wav").write_bytes(b"RIFF....garbage")
    (tmp_path / "pairs.csv").write_text("id,noisy,clean\nx,n.wav,c.wav\n")
    code, _, err = run(capsys, "evaluate", "--pairs", tmp_path / "pairs.csv", "--model",
                       model_path)
    assert code == 1 and "n.wav" in err and len(err.strip().splitlines()) == 1


def test_info_and_export(capsys, tmp_path, model_path):
    code, stdout, _ = run(capsys, "info", "--model", model_path)
    assert code == 0 and "parameters:" in stdout and "M per second" in stdout
    assert "held out" not in stdout
    import torch

    from speechmask.checkpoint import load_raw
    from speechmask.train import TrainConfig, config_to_dict

    payload = load_raw(model_path)
    payload["train_config"] = config_to_dict(TrainConfig(holdout_noise=("city", "rooster")))
    torch.save(payload, tmp_path / "held.pt")
    code, stdout, _ = run(capsys, "info", "--model", tmp_path / "held.pt")
    assert code == 0 and "noise types held out of training: city, rooster" in stdout
    assert "recipe" not in stdout
    code, _, err = run(capsys, "info", "--model", tmp_path / "held.pt", "--recipe")
    assert code == 1 and "no recipe" in err and len(err.strip().splitlines()) == 1
    payload["recipe"] = {"name": "tiny", "text": "name = \"tiny\"\n[base]\nepochs = 2\n"}
    torch.save(payload, tmp_path / "made.pt")
    code, stdout, _ = run(capsys, "info", "--model", tmp_path / "made.pt")
    assert code == 0 and "recipe: tiny" in stdout and "parameters:" in stdout
    code, stdout, _ = run(capsys, "info", "--model", tmp_path / "made.pt", "--recipe")
    assert code == 0 and stdout.splitlines() == ['name = "tiny"', "[base]", "epochs = 2"]
    out = tmp_path / "slim.pt"
    code, stdout, _ = run(capsys, "export", model_path, "--out", out)
    assert code == 0 and "float16" in stdout and out.is_file()
    code, stdout, _ = run(capsys, "export", tmp_path / "made.pt", "--out", tmp_path / "s2.pt")
    assert code == 0 and load_raw(tmp_path / "s2.pt")["recipe"] == payload["recipe"]
    code, _, err = run(capsys, "export", model_path, "--out", out)
    assert code == 1 and "exists" in err
    code, _, err = run(capsys, "export", model_path, "--out", model_path, "--overwrite")
    assert code == 1 and "overwrite the input" in err
    code, stdout, _ = run(capsys, "export", model_path, "--onnx", tmp_path / "m.onnx")
    assert code == 0 and (tmp_path / "m.onnx").is_file() and "onnxruntime" in stdout
    # ... and its one-frame int8 graph beside it, for streams; never over an existing file.
    assert (tmp_path / "m.stream.onnx").is_file() and "int8" in stdout
    assert (tmp_path / "m.int8.onnx").is_file() and "--precision int8" in stdout
    (tmp_path / "m.onnx").rename(tmp_path / "kept.onnx")
    code, _, err = run(capsys, "export", model_path, "--onnx", tmp_path / "m.onnx")
    assert code == 1 and "m.stream.onnx" in err and "exists" in err
    assert not (tmp_path / "m.onnx").exists()
    (tmp_path / "kept.onnx").rename(tmp_path / "m.onnx")
    from speechmask.onnx_backend import OnnxEnhancer

    audio = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    from speechmask.enhance import Enhancer

    torch_out = Enhancer.load(model_path)(audio, 16000)
    assert np.allclose(OnnxEnhancer.load(tmp_path / "m.onnx")(audio, 16000), torch_out, atol=1e-4)
    code, _, err = run(capsys, "export", model_path)
    assert code == 1 and "--onnx" in err


@pytest.mark.parametrize("args,needle", [
    (["finetune", "--out", "{tmp}/ft"], "--noise"),
    (["finetune", "--noise", "{tmp}/none.wav", "--from", "{model}", "--out", "{tmp}/ft"],
     "none.wav"),
    (["finetune", "--noise", "{tmp}/short.wav", "--from", "{model}", "--out", "{tmp}/ft"],
     "at least 1 s"),
    (["finetune", "--data", "{tmp}", "--from", "{model}", "--out", "{tmp}/ft"], "import"),
])
def test_finetune_errors_are_one_line(capsys, tmp_path, model_path, args, needle):
    sf.write(tmp_path / "short.wav", _tone(16000, seconds=0.3), 16000)
    argv = [a.format(tmp=tmp_path, model=model_path) for a in args]
    code, _, err = run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and needle in lines[0], err


def test_tune_bad_storage_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "tune", "--trials", "1", "--storage", "nosuch://x",
                       "--out", tmp_path / "t")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and "sqlite" in lines[0]


def test_tune_bad_valid_count_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "tune", "--trials", "1", "--valid-count", "0",
                       "--storage", f"sqlite:///{tmp_path}/s.db", "--out", tmp_path / "t")
    assert code == 1 and err.strip() == "speechmask: error: --valid-count must be >= 1, got 0"
    assert not (tmp_path / "s.db").exists()


def test_tune_bad_lookahead_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "tune", "--trials", "1", "--lookahead", "0", "5",
                       "--storage", f"sqlite:///{tmp_path}/s.db", "--out", tmp_path / "t")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and "--lookahead" in lines[0] and "0-4" in lines[0], err
    assert not (tmp_path / "s.db").exists()


def test_average(capsys, tmp_path, model_path):
    out = tmp_path / "avg.pt"
    code, stdout, _ = run(capsys, "average", model_path, model_path, "--out", out)
    assert code == 0 and "mean of 2 models" in stdout and out.is_file()
    code, _, err = run(capsys, "average", model_path, model_path, "--out", out)
    assert code == 1 and "exists" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "average", model_path, out, "--out", out, "--overwrite")
    assert code == 1 and "overwrite an input" in err
    code, _, err = run(capsys, "average", model_path, tmp_path / "none.pt", "--out",
                       tmp_path / "b.pt")
    assert code == 1 and "none.pt" in err and not (tmp_path / "b.pt").exists()
    code, stdout, _ = run(capsys, "info", "--model", out)
    assert code == 0 and f"weights = mean of {model_path}, {model_path}" in stdout
    # Trained on from the average, the model still says its weights went through one.
    trained = tmp_path / "trained"
    code, _, err = run(capsys, "train", "--out", trained, "--init", out, "--epochs", "1",
                       "--examples-per-epoch", "8", "--valid-count", "2", "--batch-size", "4",
                       "--crop-seconds", "0.5", "--threads", "1")
    assert code == 0, err
    code, stdout, _ = run(capsys, "info", "--model", trained / "best.pt")
    stage_lines = [ln for ln in stdout.splitlines() if ln.startswith("training")]
    assert code == 0 and f"weights = mean of {model_path}, {model_path}" in stage_lines[-2]
    assert "epoch 1, valid SNR" in stage_lines[-1], stdout
