// speechmask serve, live mode: the audio-thread half.
// Input: the microphone; every `chunk` samples are posted to the page, which sends them to the
// server. Output: the enhanced audio the page hands back ({type: "play"}), from a ring buffer
// that starts after `prebuffer` samples, re-buffers after an underrun and skips ahead when it
// holds too much (bounded latency); or, with bypass, the microphone itself.
"use strict";

class SpeechmaskLive extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const settings = (options && options.processorOptions) || {};
    this.chunk = settings.chunk || 960;
    this.prebuffer = settings.prebuffer || 0;
    this.pending = new Float32Array(this.chunk);
    this.filled = 0;
    this.ring = new Float32Array(Math.max(sampleRate * 2, this.prebuffer * 4)); // 2 s at most
    this.read = 0;
    this.count = 0;
    this.playing = false;
    this.bypass = false;
    this.port.onmessage = (event) => {
      const message = event.data;
      if (message.type === "play") this.push(message.samples);
      else if (message.type === "bypass") this.bypass = Boolean(message.value);
    };
  }

  push(samples) {
    const size = this.ring.length;
    for (let i = 0; i < samples.length; i++) {
      if (this.count === size) { this.read = (this.read + 1) % size; this.count--; } // drop oldest
      this.ring[(this.read + this.count) % size] = samples[i];
      this.count++;
    }
    // After a stall the replies arrive in a burst: skip back to the pre-buffer rather than play
    // everything late (latency stays bounded; a short skip is heard instead).
    const most = Math.max(4 * this.prebuffer, Math.round(0.2 * sampleRate));
    if (this.count > most) {
      const drop = this.count - this.prebuffer;
      this.read = (this.read + drop) % size;
      this.count -= drop;
    }
  }

  process(inputs, outputs) {
    const input = inputs[0] && inputs[0].length ? inputs[0][0] : null;
    const output = outputs[0] && outputs[0].length ? outputs[0][0] : null;
    if (input) {
      for (let i = 0; i < input.length; i++) {
        this.pending[this.filled++] = input[i];
        if (this.filled === this.chunk) {
          this.port.postMessage(this.pending.slice(0));
          this.filled = 0;
        }
      }
    }
    if (!output) return true;
    if (!this.playing && this.count >= this.prebuffer && this.count > 0) this.playing = true;
    const size = this.ring.length;
    for (let i = 0; i < output.length; i++) {
      let value = 0;
      if (this.playing && this.count > 0) {
        value = this.ring[this.read];
        this.read = (this.read + 1) % size;
        this.count--;
      } else if (this.playing) {
        this.playing = false; // underrun: wait for the pre-buffer again
      }
      output[i] = this.bypass ? (input ? input[i] : 0) : value;
    }
    return true;
  }
}

registerProcessor("speechmask-live", SpeechmaskLive);
