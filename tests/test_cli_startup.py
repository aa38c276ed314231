"""Issue 22 items 5 and 10: commands that need no torch do not import it; threads."""

import subprocess
import sys
from pathlib import Path

import pytest

import speechmask
from speechmask.cli.common import UserError, threads_per_process

SAMPLE = Path(__file__).parents[1] / "data" / "samples" / "cafe_noisy.flac"
SHIPPED_ONNX = Path(speechmask.__file__).parent / "pretrained" / "default" / "model.onnx"


def _run_without_importing_torch(*argv: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter; exit code 42 when torch got imported."""
    code = ("import sys\nfrom speechmask.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "sys.exit(42 if 'torch' in sys.modules else rc)\n")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("argv", [["--version"], ["info", "--model", str(SHIPPED_ONNX)],
                                  ["stream", "--help"]])
def test_light_commands_do_not_import_torch(argv):
    result = _run_without_importing_torch(*argv)
    assert result.returncode == 0, (result.returncode, result.stderr)


def test_info_reads_the_shipped_onnx():
    from speechmask.checkpoint import load_model  # here, not in the torch-free subprocess

    parameters = f"parameters: {load_model()[0].parameter_count():,}"  # the checkpoint's
    result = _run_without_importing_torch("info", "--model", str(SHIPPED_ONNX))
    assert parameters in result.stdout and "48 ms" in result.stdout
    assert "streams with: model.stream.onnx (int8 weights)" in result.stdout
    assert "files at --precision int8: model.int8.onnx (int8 recurrences)" in result.stdout
    stream_graph = SHIPPED_ONNX.with_name("model.stream.onnx")
    result = _run_without_importing_torch("info", "--model", str(stream_graph))
    assert "one frame per call, int8 weights" in result.stdout
    assert parameters in result.stdout


def test_enhance_with_the_shipped_model_runs_onnx_without_torch(tmp_path):
    """Item 5: the faster backend (onnxruntime) is the default for the shipped model."""
    result = _run_without_importing_torch("enhance", str(SAMPLE), "-o", str(tmp_path / "o.wav"))
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert (tmp_path / "o.wav").is_file()
    # By default the graph with int8 recurrences runs the file, and the summary says so.
    assert "with model.int8.onnx (ONNX, int8 recurrences)" in result.stdout
    result = _run_without_importing_torch("enhance", str(SAMPLE), "-o", str(tmp_path / "f.wav"),
                                          "--precision", "float32")
    assert "with model.onnx (ONNX, float32)" in result.stdout


def test_threads_default_and_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_process(None) == 1 and threads_per_process(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads_per_process(None) is None  # left to the user's setting
    with pytest.raises(UserError, match="--threads"):
        threads_per_process(0)


def test_a_closed_stdout_ends_the_command_quietly():
    """`speechmask info | head -1`: the reader is gone before the output is written; the command
    stops with the shell's SIGPIPE status (141) and no error message."""
    proc = subprocess.Popen([sys.executable, "-m", "speechmask", "info", "--model",
                             str(SHIPPED_ONNX)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has even imported speechmask
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 141, stderr
    assert b"error" not in stderr.lower() and b"Traceback" not in stderr
