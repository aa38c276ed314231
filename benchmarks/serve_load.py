"""Load test of `speechmask serve`: file uploads from concurrent clients, then live sessions.

    python -m benchmarks.serve_load [--clients 4] [--requests 500] [--workers 1]
        [--file data/samples/cafe_noisy.flac] [--live 4] [--live-seconds 20] [--live-rate 48000]
        [--url http://host:port/ [--token T]]

Without ``--url`` it starts ``speechmask serve`` on a free port in a child process (so that its
resident memory can be read from /proc) and stops it at the end. Part 1: ``--clients`` threads
post ``--file`` to ``POST /api/enhance`` until ``--requests`` have completed: requests per
second, latency p50/p95/max, failures (a 503 from the bounded queue is retried after its
Retry-After and counted), the server's RSS after the first 10 % of the requests and after all
of them (growth beyond noise would be a leak) and its peak RSS. Part 2: ``--live`` concurrent
WebSocket sessions each stream ``--live-seconds`` of the file (resampled to ``--live-rate``) in
20 ms messages at real-time pace, as a microphone delivers them, without waiting for replies, as
the page does (``--fast``: back to back): the real-time factor per session (the server's time
spent enhancing it, as it reports at the end, / audio time; below 1 keeps up with real time),
the per-message round trip p50/p95/max, how long after the end of the audio its last reply
came, and the server's CPU time per audio second per session.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

LIVE_FLUSH_SEQ = 0xFFFFFFFF  # speechmask.serve.LIVE_FLUSH_SEQ: the reply to {"type": "end"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MB, from /proc (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _multipart(path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
    body = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_uploads(url: str, token: str | None, path: Path, clients: int, requests: int,
                on_progress) -> dict:
    body, content_type = _multipart(path)
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    failures: list[str] = []
    retries = 0
    lock = threading.Lock()
    issued = 0

    def next_ticket() -> int | None:
        nonlocal issued
        with lock:
            if issued >= requests:
                return None
            issued += 1
            return issued

    def client() -> None:
        nonlocal retries
        while (ticket := next_ticket()) is not None:
            t0 = time.perf_counter()
            while True:
                request = urllib.request.Request(url + "api/enhance", data=body,
                                                 headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        response.read()
                    break
                except urllib.error.HTTPError as err:
                    if err.code == 503 and err.headers.get("Retry-After"):
                        with lock:
                            retries += 1
                        time.sleep(min(float(err.headers["Retry-After"]), 0.5))
                        continue
                    with lock:
                        failures.append(f"{err.code} {err.read()[:200]!r}")
                    break
                except OSError as err:
                    with lock:
                        failures.append(str(err))
                    break
            with lock:
                latencies.append(time.perf_counter() - t0)
            on_progress(ticket)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    return {"wall": wall, "latencies": latencies, "failures": failures, "retries": retries}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_live_session(url: str, token: str | None, audio: np.ndarray, rate: int,
                     paced: bool) -> dict:
    """One live session as the page runs it: a sender thread sends 20 ms messages (at real-time
    pace, or back to back) without waiting for replies; this thread reads the replies."""
    from websockets.sync.client import connect

    ws_url = url.replace("http", "ws", 1) + f"api/live?rate={rate}"
    if token:
        ws_url += f"&token={token}"
    chunk = rate // 50  # 20 ms, as the page sends
    sent_at: dict[int, float] = {}
    rtts: list[float] = []
    received = 0
    with connect(ws_url, max_size=None) as ws:
        json.loads(ws.recv())  # ready
        t0 = time.perf_counter()

        def sender() -> None:
            for seq, start in enumerate(range(0, len(audio), chunk)):
                if paced:  # as a microphone delivers it: message k at k x 20 ms
                    time.sleep(max(0.0, t0 + start / rate - time.perf_counter()))
                sent_at[seq] = time.perf_counter()
                ws.send(struct.pack("<I", seq) + audio[start:start + chunk].astype("<f4")
                        .tobytes())
            sent_at[LIVE_FLUSH_SEQ] = time.perf_counter()
            ws.send(json.dumps({"type": "end"}))

        thread = threading.Thread(target=sender)
        thread.start()
        while True:
            reply = ws.recv()
            if isinstance(reply, str):
                done = json.loads(reply)
                break
            seq = struct.unpack_from("<I", reply)[0]
            now = time.perf_counter()
            received += (len(reply) - 4) // 4
            if seq == LIVE_FLUSH_SEQ:
                last_reply = now
            else:
                rtts.append(now - sent_at[seq])
        thread.join()
    seconds = len(audio) / rate
    return {"rtf": done["processing_s"] / seconds, "rtts": rtts,
            "behind_ms": max(0.0, last_reply - t0 - seconds) * 1e3,
            "same_length": received == len(audio)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent upload clients")
    parser.add_argument("--requests", type=int, default=500, help="uploads in all")
    parser.add_argument("--workers", type=int, default=1, help="server --workers (if started)")
    parser.add_argument("--file", default="data/samples/cafe_noisy.flac")
    parser.add_argument("--live", type=int, default=4, help="concurrent live sessions")
    parser.add_argument("--live-seconds", type=float, default=20.0)
    parser.add_argument("--live-rate", type=int, default=48000)
    parser.add_argument("--fast", action="store_true", help="live: send the messages back to "
                        "back (capacity), not at real-time pace")
    parser.add_argument("--url", default=None, help="an already running server (no RSS then)")
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    path = Path(args.file)

    server = None
    url = args.url
    if url is None:
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "speechmask", "serve", "--port", str(port), "--workers",
             str(args.workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **({"SPEECHMASK_TOKEN": args.token} if args.token else {})})
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
                request = urllib.request.Request(url + "api/health", headers=headers)
                with urllib.request.urlopen(request, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
    url = url if url.endswith("/") else url + "/"
    try:
        rss: dict[str, float] = {}
        if server:
            rss["idle"] = _rss_mb(server.pid)[0]
        warm = max(1, args.requests // 10)

        def progress(ticket: int) -> None:
            if server and ticket == warm:
                rss["warm"] = _rss_mb(server.pid)[0]

        cpu0 = _cpu_seconds(server.pid) if server else 0.0
        uploads = run_uploads(url, args.token, path, args.clients, args.requests, progress)
        if server:
            rss["after"], rss["peak"] = _rss_mb(server.pid)
            upload_cpu = _cpu_seconds(server.pid) - cpu0

        import soundfile as sf
        import soxr

        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        audio = soxr.resample(audio.mean(axis=1), rate, args.live_rate).astype(np.float32)
        n = int(args.live_seconds * args.live_rate)
        audio = np.tile(audio, n // len(audio) + 1)[:n]
        cpu0 = _cpu_seconds(server.pid) if server else 0.0
        with ThreadPoolExecutor(args.live) as pool:
            sessions = list(pool.map(lambda _: run_live_session(url, args.token, audio,
                                                                args.live_rate, not args.fast),
                                     range(args.live)))
        if server:
            live_cpu = (_cpu_seconds(server.pid) - cpu0) / (args.live * args.live_seconds)
            rss["after_live"], rss["peak"] = _rss_mb(server.pid)
    finally:
        if server:
            server.terminate()
            server.wait(10)

    lat = uploads["latencies"] or [float("nan")]
    seconds = sf.info(path).duration
    print(f"server: {url} (workers {args.workers if server else '?'}); file: {path.name} "
          f"({seconds:.1f} s, {path.stat().st_size / 1e3:.0f} kB); {os.cpu_count()} CPU cores")
    print()
    print("| uploads | clients | requests/s | audio s per s | latency p50 ms | p95 ms | max ms "
          "| failed | 503 retries |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rps = len(uploads["latencies"]) / uploads["wall"]
    print(f"| {len(uploads['latencies'])} | {args.clients} | {rps:.2f} | {rps * seconds:.1f} | "
          f"{_percentile(lat, 50) * 1e3:.0f} | {_percentile(lat, 95) * 1e3:.0f} | "
          f"{max(lat) * 1e3:.0f} | {len(uploads['failures'])} | {uploads['retries']} |")
    if server and uploads["latencies"]:
        audio_total = len(uploads["latencies"]) * seconds
        print(f"\nserver CPU for the uploads: {upload_cpu:.1f} s for {audio_total:.0f} s of audio "
              f"= {upload_cpu / audio_total:.4f} s per audio second (upload parsing, decoding, "
              "enhancing, encoding)")
    if server:
        print()
        print("| server RSS MB: idle | after 10 % of uploads | after all uploads | after live "
              "sessions | peak |")
        print("|---:|---:|---:|---:|---:|")
        print(f"| {rss['idle']:.0f} | {rss.get('warm', float('nan')):.0f} | {rss['after']:.0f} "
              f"| {rss['after_live']:.0f} | {rss['peak']:.0f} |")
    print()
    pace = "back to back" if args.fast else "real-time pace"
    print(f"| live session ({args.live} at once, {args.live_rate} Hz, {args.live_seconds:g} s "
          f"in 20 ms messages, {pace}) | real-time factor | round trip p50 ms | p95 ms | max ms "
          "| last reply after the audio's end ms | same length out |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for i, s in enumerate(sessions, 1):
        print(f"| {i} | {s['rtf']:.3f} | {_percentile(s['rtts'], 50) * 1e3:.1f} | "
              f"{_percentile(s['rtts'], 95) * 1e3:.1f} | {max(s['rtts']) * 1e3:.1f} | "
              f"{s['behind_ms']:.0f} | {s['same_length']} |")
    if server:
        print(f"\nserver CPU per live session: {live_cpu:.3f} s per audio second "
              f"({args.live} sessions need {args.live * live_cpu:.2f} of one core)")
    if uploads["failures"]:
        print("\nfailures:", *uploads["failures"][:5], sep="\n  ")


if __name__ == "__main__":
    main()
