"""Multi-process training (DistributedDataParallel, gloo on CPU): two real processes train a
tiny model, end with identical weights, write single-process-format checkpoints and resume;
the batch sharding gives every step the batch one process would take."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechmask import checkpoint as ckpt
from speechmask import distributed
from speechmask.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")
TESTS = str(Path(__file__).resolve().parent)  # ddp_worker: the CLI + each rank's final weights
TINY = ["--hidden", "8", "--layers", "1", "--dropout", "0", "--examples-per-epoch", "9",
        "--batch-size", "4", "--crop-seconds", "0.5", "--lr", "0.01", "--patience", "0"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, request):
    """A tiny imported dataset: 4 training and 3 validation pairs of 0.6 s."""
    from conftest import _speech_like

    root = tmp_path_factory.mktemp("ddp")
    for split, prefix, count in (("train", "tr", 4), ("valid", "v", 3)):
        (root / "course" / split).mkdir(parents=True)
        for i in range(count):
            clean = _speech_like(0.6, seed=i)
            noise = (0.05 * np.random.default_rng(i).standard_normal(len(clean))).astype("f4")
            for kind, sig in (("s", clean), ("n", noise), ("x", clean + noise)):
                sf.write(root / "course" / split / f"{prefix}{kind}{i:04d}.wav", sig, 16000)
    assert main(["-q", "data", "import", str(root / "course"), "--out", str(root / "ds")]) == 0
    return root / "ds"


@pytest.fixture
def importable(monkeypatch):
    """Worker processes run `python -m speechmask` or `python -m ddp_worker`: make them
    importable without installing."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [
        SRC, TESTS, os.environ.get("PYTHONPATH")])))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_ranks_match_checkpoint(dump_dir, run_dir):
    saved = ckpt.load_raw(run_dir / "last.pt")["state_dict"]
    assert not any(k.startswith("module.") for k in saved)
    for rank in (0, 1):
        live = _state(dump_dir / f"rank{rank}.pt")
        assert live.keys() == saved.keys()
        assert all(torch.equal(live[k], saved[k]) for k in saved), f"rank {rank} differs"


def test_two_processes_train_alike_checkpoint_and_resume(tmp_path, dataset, capfd, importable,
                                                         monkeypatch):
    run = tmp_path / "run"
    # `speechmask train --nproc 2`: the CLI starts the two processes itself, each running its
    # command line; here in ddp_worker, which also saves each rank's final weights.
    launch = distributed.launch_local
    monkeypatch.setattr(distributed, "launch_local", lambda nproc, args: launch(
        nproc, [str(tmp_path / "w1"), *args], module="ddp_worker"))
    code = main(["-q", "train", "--nproc", "2", "--data", str(dataset), "--out", str(run),
                 "--epochs", "1", *TINY])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert out.count("trained 1 epochs") == 1  # rank 0 alone reports
    _assert_ranks_match_checkpoint(tmp_path / "w1", run)
    model, _, payload = ckpt.load_model(run / "best.pt")  # the single-process format
    assert payload["train_config"]["batch_size"] == 4 and payload["metrics"]["epoch"] == 1

    # torchrun itself, resuming the run for one more epoch: every rank continues from last.pt.
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         # --standalone: torchrun binds its own free port (a port found free here and
         # released could be taken before torchrun binds it: one unexplained failure).
         "--standalone", "-m", "ddp_worker", str(tmp_path / "w2"), "-q",
         "train", "--data", str(dataset), "--out", str(run), "--resume", "--epochs", "2"],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("trained 2 epochs") == 1
    _assert_ranks_match_checkpoint(tmp_path / "w2", run)
    resumed = ckpt.load_raw(run / "last.pt")
    assert [row["epoch"] for row in resumed["log"]] == [1, 2] and resumed["step"] == 6

    # --batch-size is the global batch: one process, same config, takes the same steps.
    single = tmp_path / "single"
    assert main(["-q", "train", "--data", str(dataset), "--out", str(single), "--epochs", "2",
                 *TINY]) == 0
    capfd.readouterr()
    alone = _state(single / "last.pt")
    assert alone["step"] == resumed["step"]
    for k, v in alone["state_dict"].items():
        assert torch.allclose(v, resumed["state_dict"][k], atol=1e-6), k
    assert alone["log"][-1]["valid_snr_db"] == pytest.approx(
        resumed["log"][-1]["valid_snr_db"], abs=1e-5)


@pytest.mark.parametrize("args,needle", [
    (["--nproc", "0"], "--nproc must be >= 1"),
    (["--nproc", "-2"], "--nproc must be >= 1"),
    (["--nproc", "2", "--resume"], "nothing to resume"),  # checked before starting processes
])
def test_bad_nproc_use_is_one_line(tmp_path, capfd, args, needle):
    code = main(["-q", "train", "--out", str(tmp_path / "run"), *args])
    _, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


@pytest.mark.parametrize("n,batch,world", [(9, 4, 2), (16, 16, 2), (10, 4, 3), (5, 8, 4),
                                           (7, 1, 2), (33, 16, 1)])
def test_shard_batches_split_each_global_batch(n, batch, world):
    order = list(np.random.default_rng(n).permutation(n))
    shards = [distributed.shard_batches(order, batch, rank, world) for rank in range(world)]
    steps = -(-n // batch)
    assert all(len(parts) == steps for parts in shards)  # every rank takes every step
    for k in range(steps):
        want = order[k * batch:(k + 1) * batch]
        real = [(idx, w) for idx, w in (s[k] for s in shards) if w > 0]
        got = sorted(i for idx, _ in real for i in idx)
        assert got == sorted(want)
        # Rank r's loss is w * (mean over its items) and DDP averages over ranks, so each item
        # counts w / (world * len(idx)): that must be 1 / len(batch), the global batch's mean.
        assert all(w / (world * len(idx)) == pytest.approx(1 / len(want)) for idx, w in real)
        # A rank with no item left still runs one (the batch's first) at weight 0.
        idle = [idx for idx, w in (s[k] for s in shards) if w == 0]
        assert len(idle) == world - min(world, len(want)) and all(i == want[:1] for i in idle)


def test_single_process_helpers_are_no_ops():
    ctx = distributed.SINGLE
    assert not ctx.enabled and ctx.is_main
    assert distributed.on_main(ctx, lambda: 41 + 1) == 42
    assert distributed.broadcast_object(ctx, {"a": 1}) == {"a": 1}
    assert distributed.all_reduce_sum(ctx, [1, 2.5]) == [1.0, 2.5]
    assert distributed.default_threads(ctx) == 0
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(ctx, model, torch.device("cpu")) is model
    with pytest.raises(ValueError):
        distributed.on_main(ctx, lambda: int("x"))
