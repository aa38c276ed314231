"""speechmask: speech denoising with a causal recurrent time-frequency mask network."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Enhancer", "OnnxEnhancer", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import speechmask` (and the CLI's --help) does not pay for importing torch.
    if name == "Enhancer":
        try:
            from .enhance import Enhancer
        except ModuleNotFoundError as err:
            if err.name != "torch":
                raise
            raise ImportError("speechmask.Enhancer needs PyTorch: pip install "
                              "'speechmask[torch]'; without it, speechmask.OnnxEnhancer runs "
                              "the shipped model with onnxruntime") from None
        return Enhancer
    if name == "OnnxEnhancer":
        from .onnx_backend import OnnxEnhancer

        return OnnxEnhancer
    raise AttributeError(f"module 'speechmask' has no attribute {name!r}")
