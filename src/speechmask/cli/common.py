"""What the command modules share: exit codes, :class:`UserError`, small argument helpers and
loading an enhancer for the backend a command names (enhance, stream)."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("speechmask")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


class UserError(Exception):
    """An error to show as one line, without a traceback."""


def comma_list(text: str | None) -> tuple[str, ...]:
    """``"a, b,"`` -> ``("a", "b")``; None or empty -> ``()``."""
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


def resolve_backend(backend: str, model: str | None, prefer_onnx: bool = False) -> str:
    """``auto``: ONNX for an ``.onnx`` model or when torch is not installed, else torch; with
    ``prefer_onnx``, the shipped model runs with ONNX too."""
    import importlib.util

    is_onnx = model is not None and str(model).lower().endswith(".onnx")
    if backend == "torch" and is_onnx:
        raise UserError(f"{model}: an ONNX model runs with --backend onnx (or auto)")
    if backend == "onnx" and model is not None and not is_onnx:
        raise UserError(f"{model}: --backend onnx needs an .onnx model; make one with "
                        "`speechmask export MODEL --onnx OUT.onnx`")
    if backend != "auto":
        return backend
    if is_onnx or (prefer_onnx and model is None):
        return "onnx"
    if importlib.util.find_spec("torch") is None:
        if model is not None:
            raise UserError(f"{model}: a torch checkpoint needs PyTorch, which is not installed; "
                            "pip install 'speechmask[torch]', or use an .onnx model")
        return "onnx"
    return "torch"


def threads_per_process(requested: int | None) -> int | None:
    """Threads per process for the model: ``--threads`` when given (>= 1); else None when the
    user set OMP_NUM_THREADS (torch reads it, onnxruntime gets it too); else 1. One thread is
    the fastest on a busy machine (shipped model, 2 cores shared with a training job: torch
    with 2 threads 30-60x slower than with 1, onnxruntime 2.5x) and nearly so on an idle one;
    use --jobs for files in parallel."""
    if requested is not None:
        if requested < 1:
            raise UserError(f"--threads must be >= 1, got {requested}")
        return requested
    return None if os.environ.get("OMP_NUM_THREADS") else 1


def load_enhancer(model: str | None, strength: float, backend: str, threads: int | None,
                  device: str = "cpu", prefer_onnx: bool = False,
                  atten_lim_db: float | None = None, precision: str | None = None,
                  stream: bool = False):
    """An ``Enhancer`` (torch, on ``device``) or ``OnnxEnhancer`` (CPU) for the backend;
    ``threads`` None: as OMP_NUM_THREADS says; ``precision``: which graph of an ONNX model
    runs the frames (``OnnxEnhancer.load``; None: the model as given; with ``stream``, the
    graph of a live stream's hops), a UserError for int8 with torch."""
    if device != "cpu" and backend == "auto":
        backend = "torch"  # a GPU means the torch backend
    backend = resolve_backend(backend, model, prefer_onnx)
    if backend == "torch" and precision == "int8":
        raise UserError("--precision int8 runs an exported ONNX model; drop --backend torch "
                        "or give an .onnx --model")
    if backend == "onnx":
        if device == "cuda":
            raise UserError("--device cuda runs the torch backend; drop --backend onnx")
        from ..onnx_backend import OnnxEnhancer

        if threads is None:
            try:
                threads = max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
            except ValueError:
                threads = 1
        return OnnxEnhancer.load(model, strength=strength, threads=threads,
                                 atten_lim_db=atten_lim_db, precision=precision,
                                 stream=stream)
    import torch

    from ..enhance import Enhancer

    if threads is not None:
        torch.set_num_threads(threads)
    return Enhancer.load(model, strength=strength, device=device, atten_lim_db=atten_lim_db)
