"""Fidelity of the shipped model across rates and levels (issue 22), on real corpus speech.

    python -m benchmarks.fidelity [--seconds 30] [--pairs 48] [--backend onnx|torch]
                                  [--model MODEL.pt|MODEL.onnx]

Prints four Markdown tables:
1. per-band level change of clean speech (test-split corpus speech, peak -6 dBFS) at 16,
   22.05, 44.1 and 48 kHz, made two ways: full-band (band-exact FFT resampling, plus content
   above 8 kHz that follows the speech: its 0-8 kHz spectrum mirrored, 20 dB down) and
   resampled with soxr from 16 kHz (an empty 7.6-8 kHz band, the same content above 8 kHz);
2. output SNR for the same noisy mixtures (valid pairs) at 16 vs 44.1/48 kHz;
3. clean speech at -6 to -60 dBFS peak: SNR of the output against the input, level change;
4. live latency: 10 ms chunks through the block pipeline, the worst delay of any output sample
   vs the stated algorithmic latency.
"""

from __future__ import annotations

import argparse
import csv
import logging
import time

import numpy as np
import soundfile as sf
import soxr

from speechmask.corpus import Corpus, default_corpus_dir
from speechmask.evalsets import eval_pairs
from speechmask.metrics import snr_db

log = logging.getLogger("benchmarks.fidelity")

BANDS = ((0, 1000), (1000, 2000), (2000, 4000), (4000, 6000), (6000, 7500), (7500, 8000),
         (8000, 12000), (12000, 24000))


def fft_resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-exact resampling: every bin below both Nyquists kept, nothing else."""
    if rate_in == rate_out:
        return x.astype(np.float32)
    n = int(round(len(x) * rate_out / rate_in))
    spec = np.fft.rfft(x.astype(np.float64))
    out = np.zeros(n // 2 + 1, complex)
    m = min(len(spec), len(out))
    out[:m] = spec[:m]
    return (np.fft.irfft(out, n) * rate_out / rate_in).astype(np.float32)


def corpus_speech(seconds: float, peak: float = 0.5) -> np.ndarray:
    """``seconds`` of test-split corpus speech at 16 kHz, scaled to ``peak``."""
    root = default_corpus_dir()
    rows = [r for r in csv.DictReader(open(root / "manifest.csv"))
            if r["split"] == "test" and r["kind"] == "speech"]
    pieces, total = [], 0
    for row in rows:
        x, _ = sf.read(root / row["path"], dtype="float32")
        pieces.append(x)
        total += len(x)
        if total >= seconds * 16000:
            break
    speech = np.concatenate(pieces)[: int(seconds * 16000)]
    return (speech * peak / np.abs(speech).max()).astype(np.float32)


def air(speech16: np.ndarray, rate: int) -> np.ndarray:
    """Content above 8 kHz that follows the speech (its spectrum mirrored), 20 dB down."""
    stuffed = np.zeros(2 * len(speech16), np.float32)
    stuffed[::2] = 2 * speech16
    spec = np.fft.rfft(stuffed)
    spec[np.fft.rfftfreq(len(stuffed), 1 / 32000) < 8000] = 0
    return 0.1 * fft_resample(np.fft.irfft(spec, len(stuffed)).astype(np.float32), 32000, rate)


def band_changes(x: np.ndarray, y: np.ndarray, rate: int) -> list[str]:
    f = np.fft.rfftfreq(len(x), 1 / rate)
    px, py = np.abs(np.fft.rfft(x)) ** 2, np.abs(np.fft.rfft(y)) ** 2
    total = px.sum()
    cells = []
    for lo, hi in BANDS:
        sel = (f >= lo) & (f < hi)
        # Bands holding less than -60 dB of the signal's energy: nothing to measure.
        if not sel.any() or px[sel].sum() < 1e-6 * total:
            cells.append("–")
        else:
            cells.append(f"{10 * np.log10(py[sel].sum() / px[sel].sum()):+.1f}")
    return cells


def make_clean(speech: np.ndarray, rate: int, kind: str) -> np.ndarray:
    if rate == 16000:
        if kind == "full-band":
            return speech
        # resampled: what a 16 kHz file made from a 44.1 kHz recording holds
        return soxr.resample(soxr.resample(speech, 16000, 44100, "VHQ"), 44100, 16000,
                             "VHQ").astype(np.float32)[: len(speech)]
    x = (fft_resample(speech, 16000, rate) if kind == "full-band"
         else soxr.resample(speech, 16000, rate, "VHQ").astype(np.float32))
    return x + air(speech, rate)[: len(x)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="clean speech per row")
    parser.add_argument("--pairs", type=int, default=48, help="valid mixtures for the SNR row")
    parser.add_argument("--backend", choices=("onnx", "torch"), default="onnx")
    parser.add_argument("--model", help="a .pt checkpoint (runs with torch) or .onnx model "
                        "(default: the shipped model), e.g. a training run's to compare")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    model = args.model
    # A .pt checkpoint can only run with torch; an .onnx model or the shipped one with either.
    on_torch = args.backend == "torch" or (model is not None
                                           and not model.lower().endswith(".onnx"))
    if not on_torch:
        from speechmask.onnx_backend import OnnxEnhancer

        enh = OnnxEnhancer.load(model)
    else:
        from speechmask.enhance import Enhancer

        enh = Enhancer.load(model)
    speech = corpus_speech(args.seconds)
    rates = (16000, 22050, 44100, 48000)

    print(f"## 1. Clean speech, level change per band (dB; {args.seconds:g} s of test-split "
          "corpus speech, peak -6 dBFS)\n")
    heads = [f"{lo / 1000:g}-{hi / 1000:g} kHz" for lo, hi in BANDS]
    print("| input | rate | " + " | ".join(heads) + " |")
    print("|---|---:|" + "---:|" * len(heads))
    for kind in ("full-band", "resampled"):
        for rate in rates:
            x = make_clean(speech, rate, kind)
            print(f"| {kind} | {rate} | " + " | ".join(band_changes(x, enh(x, rate), rate))
                  + " |")

    print(f"\n## 2. Same mixtures at 16 kHz and above (first {args.pairs} valid pairs, "
          "band-exact resampling)\n")
    pairs = eval_pairs(Corpus(), "valid", args.pairs)
    print("| rate | input SNR dB | output SNR dB | vs 16 kHz |\n|---:|---:|---:|---:|")
    base = None
    for rate in (16000, 44100, 48000):
        ins, outs = [], []
        for p in pairs:
            clean, noisy = fft_resample(p.clean, 16000, rate), fft_resample(p.noisy, 16000, rate)
            ins.append(snr_db(clean, noisy))
            outs.append(snr_db(clean, enh(noisy, rate)))
        mean = float(np.mean(outs))
        base = mean if base is None else base
        print(f"| {rate} | {np.mean(ins):.2f} | {mean:.2f} | {mean - base:+.2f} |")

    print("\n## 3. Quiet clean speech (SNR of the output against the input)\n")
    print("| peak dBFS | rate | SNR vs input dB | level change dB |\n|---:|---:|---:|---:|")
    for peak_db in (-6, -20, -30, -40, -50, -60):
        for rate in (16000, 48000):
            x = fft_resample(speech * 10 ** ((peak_db + 6) / 20), 16000, rate)
            y = enh(x, rate)
            print(f"| {peak_db} | {rate} | {snr_db(x, y):.1f} | "
                  f"{10 * np.log10(np.sum(y ** 2) / np.sum(x ** 2)):+.2f} |")

    print("\n## 4. Live latency (10 ms chunks through the block pipeline)\n")
    print("| rate | stated ms | worst measured ms (incl. the 10 ms chunk) | CPU ms per 10 ms |")
    print("|---:|---:|---:|---:|")
    for rate in (16000, 44100, 48000):
        pipe = enh.pipeline(rate)
        chunk = rate // 100
        x = fft_resample(speech[: 16000 * 5], 16000, rate)
        emitted, worst, t0 = 0, 0, time.perf_counter()
        for start in range(0, len(x) - chunk + 1, chunk):
            out = pipe.push(x[start : start + chunk])
            if len(out):
                worst = max(worst, start + chunk - emitted)
            emitted += len(out)
        cpu = (time.perf_counter() - t0) / (len(x) // chunk) * 1000
        print(f"| {rate} | {pipe.latency_ms:.1f} | {1000 * worst / rate:.1f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
