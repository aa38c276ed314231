// speechmask serve: the page. Plain JavaScript, no dependencies, nothing from the internet.
// Files: each dropped file is uploaded to POST /api/enhance (one at a time), then decoded for
// an A/B player and before/after spectrograms; the strength slider re-renders it.
// Live: the microphone goes through an AudioWorklet to WS /api/live and back (see live-worklet.js).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
let audioContext = null;
let limits = { max_upload_mb: Infinity };

function sharedContext() {
  if (!audioContext) audioContext = new AudioContext();
  return audioContext;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function formatBytes(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
  return Math.max(1, Math.round(n / 1e3)) + " kB";
}

// ------------------------------------------------------------------------------------------
// server information

fetch("/api/model").then((r) => (r.ok ? r.json() : Promise.reject(r))).then((info) => {
  const params = info.parameters ? `, ${info.parameters.toLocaleString("en")} parameters` : "";
  $("#model-line").textContent =
    `model: ${info.architecture}${params}; ${info.latency_ms} ms algorithmic latency; ` +
    `runs with ${info.backend === "onnx" ? "onnxruntime" : "PyTorch"}`;
}).catch(() => { $("#model-line").textContent = "model information unavailable"; });

fetch("/api/health").then((r) => (r.ok ? r.json() : null)).then((health) => {
  if (health) limits = health;
}).catch(() => {});

// ------------------------------------------------------------------------------------------
// spectrograms (radix-2 FFT on a canvas)

function fftMagnitudes(frame) {
  // In-place iterative radix-2 FFT of a real frame (length a power of two): |X[k]|^2, k <= n/2.
  const n = frame.length;
  const re = Float64Array.from(frame);
  const im = new Float64Array(n);
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const step = (-2 * Math.PI) / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < size / 2; k++) {
        const wr = Math.cos(step * k), wi = Math.sin(step * k);
        const a = start + k, b = a + size / 2;
        const tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr; im[b] = im[a] - ti;
        re[a] += tr; im[a] += ti;
      }
    }
  }
  const power = new Float64Array(n / 2 + 1);
  for (let k = 0; k <= n / 2; k++) power[k] = re[k] * re[k] + im[k] * im[k];
  return power;
}

const SPEC_MAX_HZ = 8000; // speech lives below 8 kHz (the model's band)
const SPEC_RANGE_DB = 80;

function spectrogram(buffer, columns, rows) {
  // dB image [columns][rows] of the channel mean, 0..8 kHz, one FFT per pixel column.
  const length = buffer.length;
  const mono = new Float32Array(length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < length; i++) mono[i] += data[i] / buffer.numberOfChannels;
  }
  const n = buffer.sampleRate > 24000 ? 2048 : 1024;
  const window = new Float64Array(n);
  for (let i = 0; i < n; i++) window[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n);
  const maxBin = Math.min(n / 2, Math.round((SPEC_MAX_HZ / buffer.sampleRate) * n));
  const image = [];
  const frame = new Float64Array(n);
  for (let col = 0; col < columns; col++) {
    const centre = Math.floor(((col + 0.5) * length) / columns);
    for (let i = 0; i < n; i++) {
      const at = centre - n / 2 + i;
      frame[i] = at >= 0 && at < length ? mono[at] * window[i] : 0;
    }
    const power = fftMagnitudes(frame);
    const column = new Float32Array(rows);
    for (let r = 0; r < rows; r++) {
      const lo = Math.floor((r * maxBin) / rows), hi = Math.max(lo + 1, Math.floor(((r + 1) * maxBin) / rows));
      let sum = 0;
      for (let k = lo; k < hi; k++) sum += power[k];
      column[r] = 10 * Math.log10(sum / (hi - lo) + 1e-12);
    }
    image.push(column);
  }
  return image;
}

function colour(t) {
  // t in [0, 1] -> a dark-blue / magenta / orange / pale-yellow ramp (like "magma").
  const stops = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109],
    [252, 253, 191]];
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  return stops[i].map((v, k) => Math.round(v + f * (stops[i + 1][k] - v)));
}

function peakDb(image) {
  let peak = -Infinity;
  for (const column of image) for (const v of column) if (v > peak) peak = v;
  return peak;
}

function drawSpectrogram(canvas, image, topDb) {
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  const pixels = g.createImageData(width, height);
  for (let x = 0; x < width; x++) {
    const column = image[x];
    for (let y = 0; y < height; y++) {
      const value = column[height - 1 - y];
      const [r, gr, b] = colour((value - (topDb - SPEC_RANGE_DB)) / SPEC_RANGE_DB);
      const at = (y * width + x) * 4;
      pixels.data[at] = r; pixels.data[at + 1] = gr; pixels.data[at + 2] = b;
      pixels.data[at + 3] = 255;
    }
  }
  g.putImageData(pixels, 0, 0);
}

// ------------------------------------------------------------------------------------------
// the A/B player: both versions play in sync, a gain per version selects which one is heard

class ABPlayer {
  constructor(onTick) {
    this.buffers = { noisy: null, enhanced: null };
    this.which = "enhanced";
    this.playing = false;
    this.offset = 0;
    this.nodes = [];
    this.onTick = onTick;
  }

  get duration() {
    const b = this.buffers.enhanced || this.buffers.noisy;
    return b ? b.duration : 0;
  }

  position() {
    if (!this.playing) return this.offset;
    return Math.min(this.duration, sharedContext().currentTime - this.startedAt);
  }

  play() {
    const context = sharedContext();
    context.resume();
    if (this.offset >= this.duration - 0.01) this.offset = 0;
    this.nodes = [];
    for (const name of ["noisy", "enhanced"]) {
      const buffer = this.buffers[name];
      if (!buffer) continue;
      const source = context.createBufferSource();
      source.buffer = buffer;
      const gain = context.createGain();
      gain.gain.value = name === this.which ? 1 : 0;
      source.connect(gain).connect(context.destination);
      source.start(0, this.offset);
      this.nodes.push({ name, source, gain });
    }
    this.startedAt = context.currentTime - this.offset;
    this.playing = true;
    const tick = () => {
      if (!this.playing) return;
      if (this.position() >= this.duration) { this.pause(); this.offset = 0; }
      this.onTick();
      if (this.playing) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    this.onTick();
  }

  pause() {
    if (!this.playing) return;
    this.offset = this.position();
    for (const { source } of this.nodes) { try { source.stop(); } catch (e) { /* ended */ } }
    this.nodes = [];
    this.playing = false;
    this.onTick();
  }

  select(which) {
    this.which = which;
    const now = sharedContext().currentTime;
    for (const { name, gain } of this.nodes) {
      gain.gain.setTargetAtTime(name === which ? 1 : 0, now, 0.005); // no click
    }
  }

  seek(seconds) {
    const wasPlaying = this.playing;
    this.pause();
    this.offset = Math.max(0, Math.min(seconds, this.duration));
    if (wasPlaying) this.play();
    this.onTick();
  }

  replace(name, buffer) {
    // A re-render: keep playing at the same position.
    const wasPlaying = this.playing;
    this.pause();
    this.buffers[name] = buffer;
    if (wasPlaying) this.play();
  }
}

// ------------------------------------------------------------------------------------------
// file jobs

function plainError(status, detail, name) {
  // The server calls every upload "upload.EXT" (it never uses the client's file name).
  const words = (detail || "").replace(/^upload(\.[a-z0-9]+)?: /, "")
    .replace(/'upload(\.[a-z0-9]+)?'/g, `'${name}'`);
  if (status === 400) return `cannot use this file: ${words}`;
  if (status === 401) return "access denied: open this page with ?token=YOUR_TOKEN";
  if (status === 413) return words || "file too large for this server";
  if (status === 503) return words || "server busy; try again in a moment";
  if (status === 422) return words;
  return `the server failed (${status}${words ? ": " + words : ""})`;
}

function postEnhance(file, strength, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/enhance");
    xhr.responseType = "blob";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress("upload", e.loaded / e.total); };
    xhr.upload.onload = () => progress("processing", 1);
    xhr.onprogress = (e) => { if (e.lengthComputable) progress("download", e.loaded / e.total); };
    xhr.onerror = () => reject(new Error("cannot reach the server; is `speechmask serve` still running?"));
    xhr.onload = async () => {
      if (xhr.status === 200) {
        const disposition = xhr.getResponseHeader("Content-Disposition") || "";
        const match = disposition.match(/filename="([^"]+)"/);
        resolve({
          blob: xhr.response,
          filename: match ? match[1] : "enhanced.wav",
          samples: Number(xhr.getResponseHeader("X-Speechmask-Samples")),
          rate: Number(xhr.getResponseHeader("X-Speechmask-Rate")),
          channels: Number(xhr.getResponseHeader("X-Speechmask-Channels")),
          seconds: Number(xhr.getResponseHeader("X-Speechmask-Processing-Seconds")),
        });
        return;
      }
      let detail = "";
      try { detail = JSON.parse(await xhr.response.text()).detail; } catch (e) { /* not JSON */ }
      const error = new Error(plainError(xhr.status, String(detail || ""), file.name));
      const retry = Number(xhr.getResponseHeader("Retry-After"));
      if (xhr.status === 503 && retry > 0 && /busy/.test(detail)) error.retryAfter = retry;
      reject(error);
    };
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("strength", String(strength));
    xhr.send(form);
  });
}

async function decode(blob) {
  try {
    return await sharedContext().decodeAudioData(await blob.arrayBuffer());
  } catch (e) {
    return null; // a format this browser cannot play (the download still works)
  }
}

class Job {
  constructor(file) {
    this.file = file;
    this.el = $("#job-template").content.firstElementChild.cloneNode(true);
    $("#jobs").append(this.el);
    $(".job-name", this.el).textContent = file.name;
    $(".job-meta", this.el).textContent = formatBytes(file.size);
    this.strength = 1;
    this.renders = 0;
    this.noisy = null;
    this.url = null;
    this.player = new ABPlayer(() => this.tick());
    const strength = $(".strength", this.el);
    strength.addEventListener("input", () => {
      $(".strength-value", this.el).textContent = Number(strength.value).toFixed(2);
    });
    strength.addEventListener("change", () => {
      this.strength = Number(strength.value);
      schedule(this);
    });
    $(".play", this.el).addEventListener("click", () => {
      if (this.player.playing) this.player.pause(); else this.player.play();
    });
    for (const which of ["noisy", "enhanced"]) {
      $(`.ab-${which}`, this.el).addEventListener("click", () => this.select(which));
    }
    $(".seek", this.el).addEventListener("input", (e) => {
      this.player.seek((Number(e.target.value) / 1000) * this.player.duration);
    });
  }

  select(which) {
    this.player.select(which);
    $(".ab-noisy", this.el).classList.toggle("active", which === "noisy");
    $(".ab-enhanced", this.el).classList.toggle("active", which === "enhanced");
    this.el.dataset.listening = which;
  }

  tick() {
    const position = this.player.position();
    const duration = this.player.duration || 1;
    $(".play", this.el).textContent = this.player.playing ? "❚❚ Pause" : "▶ Play";
    $(".seek", this.el).value = String(Math.round((position / duration) * 1000));
    $(".time", this.el).textContent = `${position.toFixed(1)} / ${this.player.duration.toFixed(1)} s`;
  }

  status(state, text, fraction) {
    this.el.dataset.state = state;
    $(".job-status", this.el).textContent = text;
    if (fraction !== undefined) $(".progress-fill", this.el).style.width = `${Math.round(fraction * 100)}%`;
  }

  fail(message) {
    this.el.dataset.error = message;
    this.status("error", message, 1);
  }

  async run() {
    const strength = this.strength;
    if (this.file.size > limits.max_upload_mb * 1e6) {
      this.fail(`file too large: this server accepts up to ${limits.max_upload_mb} MB`);
      return;
    }
    if (this.file.size === 0) {
      this.fail("cannot use this file: it is empty (0 bytes)");
      return;
    }
    let result = null;
    for (let attempt = 0; result === null; attempt++) {
      try {
        result = await postEnhance(this.file, strength, (phase, fraction) => {
          if (phase === "upload") this.status("uploading", `uploading… ${Math.round(fraction * 100)} %`, 0.6 * fraction);
          else if (phase === "processing") this.status("processing", "enhancing…", 0.7);
          else this.status("downloading", "receiving the enhanced file…", 0.7 + 0.25 * fraction);
        });
      } catch (error) {
        if (error.retryAfter && attempt < 10) {
          this.status("waiting", `server busy; trying again in ${error.retryAfter} s…`, 0);
          await sleep(error.retryAfter * 1000);
          continue;
        }
        this.fail(error.message);
        return;
      }
    }
    this.status("decoding", "preparing the player…", 0.97);
    if (!this.noisy) this.noisy = await decode(this.file);
    const enhanced = await decode(result.blob);
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = URL.createObjectURL(result.blob);
    const link = $(".download", this.el);
    link.href = this.url;
    link.download = result.filename;
    link.hidden = false;
    $(".job-meta", this.el).textContent =
      `${formatBytes(this.file.size)} · ${result.rate} Hz · ${result.channels} ch · ` +
      `${(result.samples / result.rate).toFixed(1)} s · enhanced in ${result.seconds.toFixed(2)} s`;
    $(".result", this.el).hidden = false;
    this.player.buffers.noisy = this.noisy;
    this.player.replace("enhanced", enhanced);
    $(".ab-noisy", this.el).disabled = !this.noisy;
    if (!this.noisy) $(".ab-noisy", this.el).title = "this browser cannot play the original format";
    this.draw(enhanced);
    this.tick();
    this.renders += 1;
    Object.assign(this.el.dataset, {
      renders: String(this.renders), strength: String(strength), samples: String(result.samples),
      rate: String(result.rate), channels: String(result.channels),
    });
    const note = enhanced ? "" : " (this browser cannot play this format; the download works)";
    this.status("done", `done at strength ${strength.toFixed(2)}${note}`, 1);
  }

  draw(enhanced) {
    const noisyCanvas = $(".spec-noisy", this.el), enhancedCanvas = $(".spec-enhanced", this.el);
    const { width, height } = noisyCanvas;
    if (this.noisy && !this.noisyImage) this.noisyImage = spectrogram(this.noisy, width, height);
    const enhancedImage = enhanced ? spectrogram(enhanced, width, height) : null;
    // One scale for both, so quieter noise shows as darker.
    const top = this.noisyImage ? peakDb(this.noisyImage) : enhancedImage ? peakDb(enhancedImage) : 0;
    if (this.noisyImage) drawSpectrogram(noisyCanvas, this.noisyImage, top);
    if (enhancedImage) drawSpectrogram(enhancedCanvas, enhancedImage, top);
  }
}

// One upload at a time (the server has a bounded queue; this page does not flood it).
const pending = [];
let pumping = false;

function schedule(job) {
  if (!pending.includes(job)) pending.push(job);
  if (job.el.dataset.state !== "done" || pending.length > 1) job.status(job.el.dataset.state, "waiting…");
  pump();
}

async function pump() {
  if (pumping) return;
  pumping = true;
  while (pending.length) {
    const job = pending.shift();
    try { await job.run(); } catch (error) { job.fail(`unexpected error: ${error.message}`); }
  }
  pumping = false;
}

function addFiles(files) {
  for (const file of files) schedule(new Job(file));
}

const drop = $("#drop");
$("#pick").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("#pick").click(); });
for (const kind of ["dragenter", "dragover"]) {
  drop.addEventListener(kind, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const kind of ["dragleave", "drop"]) {
  drop.addEventListener(kind, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (e) => { e.preventDefault(); addFiles(e.dataTransfer.files); });
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => e.preventDefault());

// ------------------------------------------------------------------------------------------
// live microphone

const CHUNK_SECONDS = 0.02; // 20 ms per message: small enough for low latency
const PREBUFFER_SECONDS = 0.06; // playback waits for this much audio, to absorb jitter
const FLOOR_SKIP_SECONDS = 0.5; // levels of the first half second are not counted in floors

const liveEl = $("#live");
const live = { on: false };

function rmsDb(samples) {
  if (!samples.length) return null;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.max(-120, 10 * Math.log10(sum / samples.length + 1e-12));
}

function percentile(values, q) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function showLevel(which, db) {
  $(`#${which}-bar`).style.width = `${Math.max(0, Math.min(100, ((db + 80) / 80) * 100))}%`;
  $(`#${which}-db`).textContent = `${db.toFixed(0)} dBFS`;
}

function liveError(message) {
  const el = $("#live-error");
  el.hidden = !message;
  el.textContent = message || "";
  if (message) liveEl.dataset.error = message; else delete liveEl.dataset.error;
}

function closeReason(event) {
  if (event.code === 1013) return event.reason || "server busy: too many live sessions; try again later";
  if (event.code === 1008) return "access denied: open this page with ?token=YOUR_TOKEN";
  if (event.reason) return `the server ended the session: ${event.reason}`;
  return "lost the connection to the server";
}

async function startLive() {
  liveError(null);
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("the browser allows the microphone only on https or http://localhost; open " +
      "this page as http://127.0.0.1:PORT/ on the server's machine");
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (error) {
    if (error.name === "NotAllowedError") throw new Error("microphone permission was denied");
    if (error.name === "NotFoundError") throw new Error("no microphone was found");
    throw new Error(`cannot open the microphone (${error.message})`);
  }
  const context = new AudioContext({ latencyHint: "interactive" });
  await context.audioWorklet.addModule("/static/live-worklet.js");
  const rate = context.sampleRate;
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "speechmask-live", {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: { chunk: Math.round(rate * CHUNK_SECONDS), prebuffer: Math.round(rate * PREBUFFER_SECONDS) },
  });
  node.port.postMessage({ type: "bypass", value: $("#live-bypass").checked });
  source.connect(node);
  node.connect(context.destination);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const strength = $("#live-strength").value;
  const ws = new WebSocket(`${scheme}://${location.host}/api/live?rate=${rate}&strength=${strength}`);
  ws.binaryType = "arraybuffer";
  Object.assign(live, {
    on: true, ready: false, context, stream, node, ws, rate, seq: 0, sentAt: new Map(), rtts: [],
    inLevels: [], outLevels: [], sent: 0, received: 0, latencyMs: 0, lastPaint: 0,
  });
  liveEl.dataset.state = "connecting";
  liveEl.dataset.rate = String(rate);
  await context.resume();
  ws.onmessage = (event) => {
    if (typeof event.data === "string") {
      const message = JSON.parse(event.data);
      if (message.type === "ready") {
        live.ready = true;
        live.latencyMs = message.latency_ms;
        liveEl.dataset.state = "on";
        $("#live-toggle").textContent = "Stop";
      }
      return;
    }
    const view = new DataView(event.data);
    const seq = view.getUint32(0, true);
    const samples = new Float32Array(event.data, 4);
    const sentAt = live.sentAt.get(seq);
    if (sentAt !== undefined) {
      live.sentAt.delete(seq);
      live.rtts.push(performance.now() - sentAt);
      if (live.rtts.length > 100) live.rtts.shift();
    }
    if (samples.length) {
      const db = rmsDb(samples);
      if (live.received > FLOOR_SKIP_SECONDS * live.rate) live.outLevels.push(db);
      if (live.outLevels.length > 1500) live.outLevels.shift();
      live.received += samples.length;
      live.outDb = db;
      node.port.postMessage({ type: "play", samples }, [samples.buffer]);
    }
    paintLive();
  };
  ws.onclose = (event) => {
    if (live.on && live.ws === ws) {
      stopLive();
      liveError(closeReason(event));
    }
  };
  node.port.onmessage = (event) => {
    const chunk = event.data; // Float32Array of CHUNK_SECONDS of microphone input
    const db = rmsDb(chunk);
    live.inDb = db;
    if (!live.ready || ws.readyState !== WebSocket.OPEN) return;
    if (live.sent > FLOOR_SKIP_SECONDS * live.rate) live.inLevels.push(db);
    if (live.inLevels.length > 1500) live.inLevels.shift();
    const message = new ArrayBuffer(4 + chunk.length * 4);
    new DataView(message).setUint32(0, live.seq, true);
    new Float32Array(message, 4).set(chunk);
    live.sentAt.set(live.seq, performance.now());
    live.seq = (live.seq + 1) >>> 0;
    live.sent += chunk.length;
    ws.send(message);
  };
}

function paintLive() {
  const now = performance.now();
  if (now - live.lastPaint < 100) return; // ~10 updates per second
  live.lastPaint = now;
  if (live.inDb !== undefined) showLevel("in", live.inDb);
  if (live.outDb !== undefined) showLevel("out", live.outDb);
  const rtt = percentile(live.rtts, 0.5);
  const bufferMs = PREBUFFER_SECONDS * 1000;
  if (rtt !== null) {
    $("#live-latency").textContent =
      `round trip to the server: ${rtt.toFixed(0)} ms (measured) + ${live.latencyMs.toFixed(0)} ms ` +
      `algorithmic + ~${bufferMs.toFixed(0)} ms playback buffer ≈ ${(rtt + live.latencyMs + bufferMs).toFixed(0)} ms mouth to ear`;
  }
  const floorIn = percentile(live.inLevels, 0.1), floorOut = percentile(live.outLevels, 0.1);
  const data = {
    inDb: live.inDb, outDb: live.outDb, rttMs: rtt, inFloorDb: floorIn, outFloorDb: floorOut,
    sentSamples: live.sent, receivedSamples: live.received,
  };
  for (const [key, value] of Object.entries(data)) {
    if (value !== null && value !== undefined) liveEl.dataset[key] = Number(value).toFixed(key.endsWith("Samples") ? 0 : 1);
  }
}

function stopLive() {
  if (!live.on) return;
  live.on = false;
  try { live.ws.close(); } catch (e) { /* closed */ }
  for (const track of live.stream.getTracks()) track.stop();
  live.context.close();
  liveEl.dataset.state = "off";
  $("#live-toggle").textContent = "Denoise my microphone";
}

$("#live-toggle").addEventListener("click", async () => {
  if (live.on) { stopLive(); return; }
  try {
    await startLive();
  } catch (error) {
    if (live.on) stopLive();
    liveEl.dataset.state = "off";
    liveError(error.message);
  }
});
$("#live-bypass").addEventListener("change", (e) => {
  liveEl.dataset.bypass = String(e.target.checked);
  if (live.on) live.node.port.postMessage({ type: "bypass", value: e.target.checked });
});
$("#live-strength").addEventListener("input", (e) => {
  $("#live-strength-value").textContent = Number(e.target.value).toFixed(2);
  if (live.on && live.ws.readyState === WebSocket.OPEN) {
    live.ws.send(JSON.stringify({ type: "strength", value: Number(e.target.value) }));
  }
});
