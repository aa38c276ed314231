"""`speechmask serve` end to end: a real uvicorn server and the page in headless Chromium.

Files: upload the bundled noisy sample (and a file that is not audio), wait for the result,
download the enhanced file and check it (rate, channels, length, closer to the clean reference
than the input), move the strength slider and check the page re-renders. Live: Chromium's fake
microphone plays the noisy sample; the enhanced audio comes back and its noise floor is lower
than the input's (levels the page exposes as data attributes).

Needs Debian's chromium + chromium-driver (.ci/run installs them); skipped when absent.
``SPEECHMASK_SCREENSHOT=docs/img/serve.png`` also saves the page after processing a file.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver; .ci/run installs them)",
                allow_module_level=True)
pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")
import uvicorn  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from speechmask.serve import Engine, ServeConfig, create_app  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
NOISY, CLEAN = SAMPLES / "cafe_noisy.flac", SAMPLES / "cafe_clean.flac"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real uvicorn server on a free port in a thread: (base URL, its temporary folder)."""
    spool = tmp_path_factory.mktemp("spool")
    port = _free_port()
    app = create_app(ServeConfig(port=port, temp_dir=str(spool)), Engine())
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/", spool
    srv.should_exit = True
    thread.join(10)


def _browser(tmp: Path, *extra: str):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1100,1400",
                 f"--user-data-dir={tmp / 'profile'}", *extra):
        options.add_argument(flag)
    downloads = tmp / "downloads"
    downloads.mkdir(exist_ok=True)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(20)
    return driver, downloads


def _wait(driver, condition, timeout: float = 30, message: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: condition(d), message)


def _script_errors(driver) -> list[str]:
    """JavaScript errors in the console (a 4xx the page expects is not one)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]


def _canvas_sum(driver, job, selector: str) -> float:
    return driver.execute_script(
        "const c = arguments[0].querySelector(arguments[1]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i+1] + d[i+2];"
        "return s;", job, selector)


def test_page_enhances_files(server, tmp_path):
    url, spool = server
    bad = tmp_path / "notes.wav"
    bad.write_text("these are my notes, not audio\n" * 20)
    driver, downloads = _browser(tmp_path)
    try:
        driver.get(url)
        _wait(driver, lambda d: "GRU" in d.find_element(By.ID, "model-line").text,
              message="model line never filled")
        driver.find_element(By.ID, "pick").send_keys(f"{NOISY}\n{bad}")
        jobs = _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".job")) == 2
                     and d.find_elements(By.CSS_SELECTOR, ".job"))
        good, broken = jobs
        _wait(driver, lambda d: good.get_attribute("data-state") == "done",
              message="the sample was never enhanced")
        _wait(driver, lambda d: broken.get_attribute("data-state") == "error")
        assert "cannot use this file" in broken.get_attribute("data-error")
        assert "cannot decode audio" in broken.find_element(By.CLASS_NAME, "job-status").text

        noisy, rate = sf.read(NOISY, dtype="float32")
        clean, _ = sf.read(CLEAN, dtype="float32")
        assert good.get_attribute("data-samples") == str(len(noisy))
        assert _canvas_sum(driver, good, ".spec-noisy") > 0
        first = _canvas_sum(driver, good, ".spec-enhanced")
        assert first > 0
        if os.environ.get("SPEECHMASK_SCREENSHOT"):
            driver.save_screenshot(os.environ["SPEECHMASK_SCREENSHOT"])

        # The download: the input's format, rate, channels and length, and less noise.
        good.find_element(By.CLASS_NAME, "download").click()
        target = downloads / "cafe_noisy_enhanced.flac"
        _wait(driver, lambda d: target.exists() and not list(downloads.glob("*.crdownload")),
              timeout=15, message="no download")
        out, out_rate = sf.read(target, dtype="float32", always_2d=True)
        assert (out_rate, out.shape, sf.info(target).format) == (rate, (len(noisy), 1), "FLAC")
        error_in = np.sum((noisy - clean) ** 2)
        error_out = np.sum((out[:, 0] - clean) ** 2)
        assert error_out < 0.3 * error_in  # > 5 dB closer to the clean speech

        # A/B: both versions play from the same position; the toggle picks one.
        good.find_element(By.CLASS_NAME, "play").click()
        good.find_element(By.CLASS_NAME, "ab-noisy").click()
        assert good.get_attribute("data-listening") == "noisy"
        good.find_element(By.CLASS_NAME, "ab-enhanced").click()
        good.find_element(By.CLASS_NAME, "play").click()

        # The strength slider re-renders: a new enhancement, a new spectrogram.
        slider = good.find_element(By.CLASS_NAME, "strength")
        driver.execute_script(
            "arguments[0].value = '0.3';"
            "arguments[0].dispatchEvent(new Event('input'));"
            "arguments[0].dispatchEvent(new Event('change'));", slider)
        _wait(driver, lambda d: good.get_attribute("data-renders") == "2"
              and good.get_attribute("data-state") == "done", message="no re-render")
        assert good.get_attribute("data-strength") == "0.3"
        assert _canvas_sum(driver, good, ".spec-enhanced") > first  # less removed: brighter
        assert list(spool.iterdir()) == []
        assert _script_errors(driver) == []
    finally:
        driver.quit()


def test_live_microphone(server, tmp_path):
    url, _ = server
    fake = tmp_path / "noisy.wav"
    noisy, rate = sf.read(NOISY, dtype="float32")
    sf.write(fake, noisy, rate, subtype="PCM_16")
    driver, _ = _browser(tmp_path, "--use-fake-ui-for-media-stream",
                         "--use-fake-device-for-media-stream",
                         f"--use-file-for-fake-audio-capture={fake}")
    try:
        driver.get(url)
        live = driver.find_element(By.ID, "live")
        driver.find_element(By.ID, "live-toggle").click()
        _wait(driver, lambda d: live.get_attribute("data-state") == "on"
              or live.get_attribute("data-error"), timeout=15)
        assert live.get_attribute("data-error") is None, live.get_attribute("data-error")
        # The sample is 5.4 s and loops: wait for 6 s of enhanced audio back.
        rate = int(live.get_attribute("data-rate"))
        _wait(driver, lambda d: int(live.get_attribute("data-received-samples") or 0) > 6 * rate,
              timeout=30, message="no enhanced audio came back")
        # One snapshot of the page's counters, read in a single script run: attribute by
        # attribute, audio arriving between two reads made "received" exceed an older "sent".
        keys = ("in-floor-db", "out-floor-db", "rtt-ms", "sent-samples", "received-samples")
        snapshot = driver.execute_script(
            "return arguments[1].map(k => arguments[0].getAttribute('data-' + k));", live,
            list(keys))
        values = dict(zip(keys, map(float, snapshot), strict=True))
        print("live levels:", values)
        assert values["out-floor-db"] < values["in-floor-db"] - 6, values
        # The page measures its round trip (a positive number); how fast it is belongs to
        # benchmarks/serve_load.py: a bound here failed at 3.7 s on a machine busy training.
        assert 0 < values["rtt-ms"] < float("inf"), values
        assert values["received-samples"] <= values["sent-samples"]
        driver.find_element(By.ID, "live-bypass").click()
        assert live.get_attribute("data-bypass") == "true"
        driver.find_element(By.ID, "live-toggle").click()
        assert live.get_attribute("data-state") == "off"
        assert _script_errors(driver) == []
    finally:
        driver.quit()

