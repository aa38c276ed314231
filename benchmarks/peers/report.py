"""Means (overall, by input SNR, by noise type), markdown tables, the machine description, the
JSON report, and the figures and example clips written by ``--out``."""

from __future__ import annotations

import json
import math
import os
import platform
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechmask.audio import MODEL_RATE
from speechmask.evalsets import EARLY_REF_MS

from ..stats import mean_se

METRIC_LABELS = {"snr": "SNR dB", "si_sdr": "SI-SDR dB", "pesq": "PESQ-WB", "stoi": "STOI"}
DASH = "—"


def _nanmean(values: Sequence[float]) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _group_means(rows: Sequence[dict], metrics: Sequence[str]) -> dict:
    """Means of one group of rows: metrics (NaN skipped), delay in ms (median, min, max), RTF as
    total CPU seconds / total audio seconds, and the number of pairs."""
    seconds = np.array([r["seconds"] for r in rows], dtype=np.float64)
    rtf = np.array([r["rtf"] for r in rows], dtype=np.float64)
    delays_ms = np.array([r["delay"] for r in rows], dtype=np.float64) * 1000.0 / MODEL_RATE
    out = {m: _nanmean([r.get(m, float("nan")) for r in rows]) for m in metrics}
    out.update(
        delay_ms=float(np.median(delays_ms)),
        delay_ms_min=float(delays_ms.min()),
        delay_ms_max=float(delays_ms.max()),
        rtf=float(np.sum(rtf * seconds) / np.sum(seconds)) if seconds.sum() > 0 else float("nan"),
        pairs=len(rows),
    )
    return out


def _snr_key(value: float) -> str:
    return "?" if value is None or math.isnan(value) else f"{value:g}"


# Conditions of a set with room pairs: the dry pairs, the room pairs against the reverberant
# speech (the set's reference) and the same room pairs against their early reference.
CONDITIONS = ("dry", "rooms", "rooms, early reference")


def condition_rows(rows: Sequence[dict], metrics: Sequence[str]) -> dict[str, list[dict]]:
    """Rows per condition of :data:`CONDITIONS`; empty when no pair was in a room (rows of
    reports older than the ``room`` column count as dry). In the early-reference condition
    each metric holds the score against the early reference."""
    if not any(r.get("room") for r in rows):
        return {}
    out: dict[str, list[dict]] = {c: [] for c in CONDITIONS}
    for r in rows:
        if not r.get("room"):
            out["dry"].append(r)
            continue
        out["rooms"].append(r)
        if all(f"{m}_early" in r for m in metrics):
            out["rooms, early reference"].append({**r, **{m: r[f"{m}_early"] for m in metrics}})
    return {c: v for c, v in out.items() if v}


def aggregate(rows: Sequence[dict], systems: Sequence[dict], metrics: Sequence[str],
              source: str = "", machine: dict | None = None) -> dict:
    """The JSON-able report of per-pair ``rows`` (from :func:`runner.run_pairs`).

    ``systems`` are the :meth:`System.info` dicts of every system asked for, available or not
    (unavailable ones appear in the tables with their status). Means are per system key:
    ``overall[key]``, ``by_snr[key][snr]``, ``by_noise[key][noise_type]``, and for a set with
    room pairs ``by_condition[condition][key]`` and ``paired_by_condition[condition]`` (see
    :data:`CONDITIONS`).
    """
    per_system: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        per_system[r["system"]].append(r)
    report: dict = {
        "source": source,
        "machine": machine or {},
        "pairs": len({r["id"] for r in rows}),
        "audio_seconds": float(sum(r["seconds"] for r in rows if r["system"] == rows[0]["system"]))
        if rows else 0.0,
        "metrics": list(metrics),
        "systems": list(systems),
        "overall": {},
        "by_snr": {},
        "by_noise": {},
    }
    for key, sys_rows in per_system.items():
        report["overall"][key] = _group_means(sys_rows, metrics)
        by_snr: dict[str, list[dict]] = defaultdict(list)
        by_noise: dict[str, list[dict]] = defaultdict(list)
        for r in sys_rows:
            by_snr[_snr_key(r["input_snr_db"])].append(r)
            by_noise[str(r["noise_type"])].append(r)
        report["by_snr"][key] = {
            k: _group_means(v, metrics)
            for k, v in sorted(by_snr.items(), key=lambda kv: _sort_num(kv[0]))
        }
        report["by_noise"][key] = {k: _group_means(v, metrics) for k, v in sorted(by_noise.items())}
    report["paired"] = paired_differences(rows, systems, metrics)
    report["by_condition"], report["paired_by_condition"] = {}, {}
    for condition, cond_rows in condition_rows(rows, metrics).items():
        by_key: dict[str, list[dict]] = defaultdict(list)
        for r in cond_rows:
            by_key[r["system"]].append(r)
        report["by_condition"][condition] = {k: _group_means(v, metrics)
                                             for k, v in by_key.items()}
        report["paired_by_condition"][condition] = paired_differences(cond_rows, systems,
                                                                      metrics)
    report["per_pair"] = list(rows)
    return report


def paired_differences(rows: Sequence[dict], systems: Sequence[dict], metrics: Sequence[str],
                       ours: str = "speechmask") -> dict:
    """speechmask minus each peer, file by file: ``{peer_key: {metric: {"mean", "se", "higher",
    "pairs"}}}`` with the mean difference, its standard error (sample std / sqrt(n)), the share
    of files where speechmask scores higher, over the files both scored (NaN skipped).

    A difference of means hides how much of it is noise: on 864 files DeepFilterNet3 and
    speechmask differ by 1-3 dB SI-SDR file to file, so a 0.01 dB mean lead has a standard
    error of ~0.1 dB. Empty when ``ours`` did not run; reference rows (noisy input, oracles)
    and the other speechmask variants are not peers.
    """
    by_system: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        by_system[r["system"]][r["id"]] = r
    if ours not in by_system:
        return {}
    mine = by_system[ours]
    out: dict = {}
    for info in systems:
        key = info["key"]
        if key not in by_system or info.get("reference_only") or key.startswith("speechmask"):
            continue
        theirs = by_system[key]
        out[key] = {}
        for m in metrics:
            diffs = np.array([float(mine[i][m]) - float(theirs[i][m]) for i in mine
                              if i in theirs and mine[i].get(m) is not None
                              and theirs[i].get(m) is not None], dtype=np.float64)
            diffs = diffs[np.isfinite(diffs)]
            mean, se, n = mean_se(diffs)
            out[key][m] = {"mean": mean, "se": se,
                           "higher": float(np.mean(diffs > 0)) if n else math.nan, "pairs": n}
    return out


def _sort_num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf


def _fmt(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if metric == "stoi":
        return f"{value:.3f}"
    if metric == "rtf":
        return f"{value:.4f}" if value < 0.1 else f"{value:.3f}"
    return f"{value:.2f}"


def _fmt_paired(metric: str, stats: dict) -> str:
    """``+0.30 ± 0.09 (46 %)``: mean difference ± standard error (share of files higher)."""
    mean, se, higher = stats["mean"], stats["se"], stats["higher"]
    if mean is None or math.isnan(mean):
        return DASH
    digits = 3 if metric == "stoi" else 2
    se_text = "" if se is None or math.isnan(se) else f" ± {se:.{digits}f}"
    return f"{mean:+.{digits}f}{se_text} ({100 * higher:.0f} %)"


def _fmt_params(n: int | None) -> str:
    if n is None:
        return DASH
    if n == 0:
        return "0 (DSP)"
    return f"{n / 1e6:.2f} M" if n >= 100_000 else f"{n / 1e3:.1f} k"


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "offline"
    return f"{value:g}"


def _fmt_delay(stats: dict) -> str:
    med, lo, hi = stats["delay_ms"], stats["delay_ms_min"], stats["delay_ms_max"]
    if lo == hi:
        return f"{med:g}"
    return f"{med:g} ({lo:g}–{hi:g})"


def format_tables(report: dict) -> str:
    """Markdown: the overall table (every system, with status), then one table per metric by
    input SNR and by noise type (systems as rows)."""
    metrics = report["metrics"]
    lines = [f"{report['pairs']} pairs ({report.get('audio_seconds', 0) / 60:.1f} min) from "
             f"{report['source']}", ""]
    head = ["system", *(METRIC_LABELS[m] for m in metrics), "delay ms (measured)",
            "latency ms (algorithmic)", "RTF (1 thread)", "params", "rate kHz", "status"]
    lines += ["| " + " | ".join(head) + " |",
              "|---|" + "---:|" * (len(head) - 2) + "---|"]
    for info in report["systems"]:
        stats = report["overall"].get(info["key"])
        latency = _fmt_ms(info["latency_ms"])
        if stats is None:
            cells = [DASH] * len(metrics) + [DASH, latency, DASH]
        else:
            cells = [_fmt(m, stats[m]) for m in metrics]
            cells += [_fmt_delay(stats), latency, _fmt("rtf", stats["rtf"])]
        cells += [_fmt_params(info["param_count"]), f"{info['native_rate'] / 1000:g}",
                  info["status"]]
        lines.append(f"| {info['name']} | " + " | ".join(cells) + " |")
    paired = report.get("paired") or {}
    if paired:
        lines += ["", "**speechmask minus each peer, file by file** (mean ± standard error of the "
                  "difference over the same files; in brackets the share of files where "
                  "speechmask scores higher)", "",
                  "| peer | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |",
                  "|---|" + "---:|" * len(metrics)]
        names = {i["key"]: i["name"] for i in report["systems"]}
        for key, by_metric in paired.items():
            lines.append(f"| {names.get(key, key)} | " + " | ".join(
                _fmt_paired(m, by_metric[m]) for m in metrics) + " |")
    ran = [i for i in report["systems"] if i["key"] in report["overall"]]
    lines += _condition_tables(report, ran, metrics)
    for group, title in (("by_snr", "input SNR dB"), ("by_noise", "noise type")):
        keys: list[str] = []
        for info in ran:
            keys += [k for k in report[group][info["key"]] if k not in keys]
        if group == "by_snr":
            keys.sort(key=_sort_num)
        else:
            keys.sort()
        if not keys:
            continue
        for m in metrics:
            lines += ["", f"**{METRIC_LABELS[m]} by {title}**", "",
                      "| system | " + " | ".join(keys) + " |",
                      "|---|" + "---:|" * len(keys)]
            for info in ran:
                vals = report[group][info["key"]]
                lines.append(f"| {info['name']} | " + " | ".join(
                    _fmt(m, vals[k][m]) if k in vals else DASH for k in keys) + " |")
    return "\n".join(lines)


def _condition_tables(report: dict, ran: Sequence[dict], metrics: Sequence[str]) -> list[str]:
    """Markdown: means per condition (dry, rooms, rooms against the early reference) and
    speechmask minus each peer per condition; nothing for a set without rooms."""
    by_condition = report.get("by_condition") or {}
    if not by_condition:
        return []
    lines = ["", "**By condition**: dry pairs; room pairs against the reverberant speech (the "
             "set's reference: keep the room); the same room pairs against their early "
             f"reference (direct sound + the first {EARLY_REF_MS:g} ms of reflections: remove the "
             "tail)", "",
             "| condition | system | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |",
             "|---|---|" + "---:|" * len(metrics)]
    for condition, means in by_condition.items():
        first = True
        for info in ran:
            if info["key"] not in means:
                continue
            label = f"{condition} ({means[info['key']]['pairs']})" if first else ""
            first = False
            lines.append(f"| {label} | {info['name']} | " + " | ".join(
                _fmt(m, means[info["key"]][m]) for m in metrics) + " |")
    paired = report.get("paired_by_condition") or {}
    if any(paired.values()):
        names = {i["key"]: i["name"] for i in report["systems"]}
        lines += ["", "**speechmask minus each peer, by condition** (mean ± standard error over "
                  "the same files; share of files higher)", "",
                  "| condition | peer | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |",
                  "|---|---|" + "---:|" * len(metrics)]
        for condition, by_peer in paired.items():
            for n, (key, by_metric) in enumerate(by_peer.items()):
                lines.append(f"| {condition if n == 0 else ''} | {names.get(key, key)} | "
                             + " | ".join(_fmt_paired(m, by_metric[m]) for m in metrics) + " |")
    return lines


# ---------------------------------------------------------------------------------------------
# Machine


def machine_info() -> dict:
    """CPU model (``/proc/cpuinfo``), logical cores, OS, Python, numpy and torch versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count() or 1, "os": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch_version}


def format_machine(machine: dict) -> str:
    """One line: CPU, cores, torch, Python, OS."""
    return (f"machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores; "
            f"torch {machine.get('torch', '?')}, numpy {machine.get('numpy', '?')}, "
            f"Python {machine.get('python', '?')}, {machine.get('os', '?')}")


def write_json(report: dict, path: str | os.PathLike) -> Path:
    """The report as JSON (NaN written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean_nan(report), indent=1) + "\n")
    return path


def _clean_nan(obj: object) -> object:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _clean_nan(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_nan(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean_nan(obj.item())
    return obj


# ---------------------------------------------------------------------------------------------
# Figures and clips


def plot_bars(report: dict, path: str | os.PathLike) -> Path:
    """One horizontal bar panel per metric (SNR, SI-SDR, PESQ, STOI), one bar per system that
    ran; speechmask in blue, references in grey, peers in orange."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = report["metrics"]
    ran = [i for i in report["systems"] if i["key"] in report["overall"]]
    names = [i["name"] for i in ran]
    colors = ["tab:blue" if i["key"].startswith("speechmask") else
              "0.6" if i["reference_only"] else "tab:orange" for i in ran]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 0.45 * len(ran) + 1.6),
                             sharey=True)
    axes = np.atleast_1d(axes)
    y = np.arange(len(ran))
    for ax, m in zip(axes, metrics, strict=True):
        vals = np.array([report["overall"][i["key"]][m] for i in ran], dtype=np.float64)
        ax.barh(y, np.nan_to_num(vals), color=colors)
        for yi, v in zip(y, vals, strict=True):
            if not math.isnan(v):  # label right of the bar, or right of 0 for negative bars
                ax.text(max(v, 0.0), yi, f" {_fmt(m, v)}", va="center", fontsize=8)
        ax.set_title(METRIC_LABELS[m])
        ax.axvline(0, color="k", linewidth=0.6)
        ax.grid(axis="x", alpha=0.3)
        lo, hi = np.nanmin(np.append(vals, 0)), np.nanmax(np.append(vals, 0))
        span = hi - lo + 1e-9
        ax.set_xlim(lo - 0.05 * span, hi + 0.25 * span)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    fig.suptitle(f"{report['pairs']} test pairs: means (aligned outputs)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_spectrograms(panels: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike,
                      title: str = "", rate: int = MODEL_RATE) -> Path:
    """Stacked dB spectrograms (512-point Hann STFT, hop 128) with a shared colour scale: the
    loudest bin over all panels at 0 dB, 80 dB of range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import stft

    specs = []
    for _, x in panels:
        f, t, z = stft(np.asarray(x, np.float64), fs=rate, nperseg=512, noverlap=384)
        specs.append(20 * np.log10(np.abs(z) + 1e-10))
    top = max(float(s.max()) for s in specs)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (label, _), s in zip(axes, panels, specs, strict=True):
        mesh = ax.pcolormesh(t, f / 1000, s - top, vmin=-80, vmax=0, cmap="magma",
                             shading="auto")
        ax.set_ylabel("kHz")
        ax.set_title(label, loc="left", fontsize=10)
    axes[-1].set_xlabel("time s")
    fig.colorbar(mesh, ax=list(axes), label="dB")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_markdown(report: dict, tables: str, path: str | os.PathLike,
                   extras: Sequence[str] = ()) -> Path:
    """``peers.md``: machine, how the numbers are made, the tables, then ``extras`` lines
    (figures, clips)."""
    lines = [
        "# speechmask vs peers",
        "",
        format_machine(report["machine"]),
        "",
        "Every output is shifted back by its measured delay (FFT cross-correlation with the "
        "noisy input, 0-100 ms) before scoring, so streaming systems are not penalised for "
        "latency. *delay ms*: median measured output delay (range in brackets). *latency ms*: "
        "algorithmic latency as documented (frame buffering + overlap + look-ahead; *offline* = "
        "whole file). speechmask streaming uses `StreamingEnhancer.enhance`, which removes its "
        "own latency (32 ms + 16 ms per frame of model look-ahead). *RTF*: CPU seconds per "
        "audio second on one thread (`time.process_time`), resampling to the native rate "
        "included. Oracle masks use the clean speech: upper bounds, not systems.",
        "",
        tables,
    ]
    if extras:
        lines += ["", *extras]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
