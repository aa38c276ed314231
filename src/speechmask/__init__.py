"""speechmask: speech denoising with a causal recurrent time-frequency mask network."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Enhancer", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import speechmask` (and the CLI's --help) does not pay for importing torch.
    if name == "Enhancer":
        from .enhance import Enhancer

        return Enhancer
    raise AttributeError(f"module 'speechmask' has no attribute {name!r}")
