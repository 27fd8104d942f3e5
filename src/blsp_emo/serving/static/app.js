// BLSP-Emo web chat. The conversation lives here, in `conversation` (OpenAI messages); every request sends all of
// it, so the server keeps no state. Speech is recorded with MediaRecorder (or uploaded) and sent as
// input_audio; the reply streams in as server-sent events; the emotion heard in each user turn is shown as a
// badge. With "speak replies" on, the reply is asked for as OpenAI audio (pcm16 at 24 kHz): its text comes as
// the audio's transcript, its speech sentence by sentence while the text is still being generated; with
// "autoplay" on (off by default, remembered in this browser) each sentence plays as it arrives, and the whole
// reply is attached to the answer as a player either way.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = [];  // OpenAI-format messages, user audio kept as base64 input_audio parts
let pending = null;            // {blob, format, name} audio waiting to be sent
let recorder = null;
let busy = false;
// The method's system prompts (blsp_emo.prompts.SYSTEM_PROMPTS).
const SYSTEM_PROMPTS = {
  empathetic: "You are a helpful assistant. Your response should fulfill requests with empathy toward user's emotion tone.",
  default: "You are a helpful assistant.",
};

function status(text) { $("status").textContent = text || ""; }

const REPLY_RATE = 24000;  // OpenAI's pcm16: 16-bit little-endian mono at 24 kHz
let audioContext = null;   // plays streamed speech when autoplay is on
let playAt = 0;            // when the next streamed piece starts, in audioContext time

function base64Bytes(text) {
  const raw = atob(text), bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

// Queue one pcm16 piece right after the previous one (a streamed reply plays without gaps).
function playPcm16(bytes) {
  if (!audioContext || bytes.length < 2) return;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length >> 1, buffer = audioContext.createBuffer(1, n, REPLY_RATE), out = buffer.getChannelData(0);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true) / 32768;
  const source = audioContext.createBufferSource();
  source.buffer = buffer;
  source.connect(audioContext.destination);
  playAt = Math.max(playAt, audioContext.currentTime + 0.05);
  source.start(playAt);
  playAt += buffer.duration;
}

// The streamed pcm16 pieces as one wav file, for the reply's player.
function wavBlob(pieces) {
  const size = pieces.reduce((n, p) => n + p.length, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) header.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF"); header.setUint32(4, 36 + size, true); text(8, "WAVE"); text(12, "fmt ");
  header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, REPLY_RATE, true); header.setUint32(28, 2 * REPLY_RATE, true);
  header.setUint16(32, 2, true); header.setUint16(34, 16, true); text(36, "data"); header.setUint32(40, size, true);
  return new Blob([header, ...pieces], { type: "audio/wav" });
}

// Decoding fields a URL may set, e.g. /?max_tokens=64&temperature=0 (the server checks them; unset: its defaults).
const URL_SETTINGS = ["max_tokens", "temperature", "top_p", "seed", "repetition_penalty", "no_repeat_ngram_size",
  "frequency_penalty", "presence_penalty"];

function urlSettings() {
  const params = new URLSearchParams(location.search), out = {};
  for (const name of URL_SETTINGS) {
    const raw = params.get(name);
    if (raw !== null && raw.trim() !== "" && Number.isFinite(Number(raw))) out[name] = Number(raw);
  }
  return out;
}

// What the settings bar asks for: the temperature, and with "avoid repeats" off, no repetition penalty and
// no n-gram block (on: the server's defaults, a mild penalty and no 4 tokens repeated).
function decodingSettings() {
  const out = {};
  const temperature = $("temperature").valueAsNumber;
  if (Number.isFinite(temperature)) out.temperature = temperature;
  if (!$("no-repeat").checked) Object.assign(out, { repetition_penalty: 1, no_repeat_ngram_size: 0 });
  const url = urlSettings();
  delete url.temperature;  // the URL's temperature starts the control (see below); the control is what counts
  return Object.assign(out, url);
}

{
  const start = urlSettings().temperature;
  if (start !== undefined) $("temperature").value = String(start);
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function formatOf(type, name) {
  const t = (type || "").toLowerCase(), n = (name || "").toLowerCase();
  for (const f of ["webm", "ogg", "wav", "mp3", "flac", "m4a", "mp4", "aac", "opus"]) {
    if (t.includes(f) || n.endsWith("." + f)) return f;
  }
  if (t.includes("mpeg")) return "mp3";
  return "wav";
}

function blobToBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function setPending(blob, name) {
  pending = blob ? { blob, format: formatOf(blob.type, name), name } : null;
  $("pending").hidden = !pending;
  if (pending) {
    $("pending-audio").src = URL.createObjectURL(blob);
    $("pending-name").textContent = `${name} (${Math.round(blob.size / 1024)} kB)`;
  }
}

function bubble(role) {
  $("hint")?.remove();
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const meta = document.createElement("div");
  meta.className = "meta";
  const text = document.createElement("div");
  text.className = "text";
  div.append(meta, text);
  $("thread").append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function setBadge(div, emotion) {
  const badge = div.querySelector(".emotion-badge");
  if (!badge) return;
  badge.classList.remove("pending");
  if (emotion && emotion.label) {
    badge.textContent = emotion.label;
    badge.classList.add(emotion.label);
    const scores = emotion.scores || {};
    badge.title = Object.entries(scores).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join(", ");
  } else {
    badge.textContent = "no emotion";
  }
}

async function recordToggle() {
  if (recorder && recorder.state === "recording") { recorder.stop(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    status("Microphone unavailable: " + err.message);
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    $("record").classList.remove("recording");
    $("record").textContent = "● Record";
    const blob = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
    setPending(blob, "recording." + formatOf(blob.type, ""));
    status("Recorded " + Math.round(blob.size / 1024) + " kB");
  };
  recorder.start();
  $("record").classList.add("recording");
  $("record").textContent = "■ Stop";
  status("Recording… press Stop when done");
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

async function send(event) {
  event.preventDefault();
  if (busy) return;
  const text = $("text").value.trim();
  if (!pending && !text) { status("Record or upload audio, or type some text."); return; }
  busy = true;
  $("send").disabled = true;
  const content = [];
  const userDiv = bubble("user");
  if (text) content.push({ type: "text", text });
  if (pending) {
    const data = await blobToBase64(pending.blob);
    content.push({ type: "input_audio", input_audio: { data, format: pending.format } });
    const player = document.createElement("audio");
    player.controls = true;
    player.src = URL.createObjectURL(pending.blob);
    userDiv.querySelector(".text").before(player);
    const badge = document.createElement("span");
    badge.className = "emotion-badge pending";
    badge.textContent = "listening…";
    userDiv.querySelector(".meta").append(badge);
  }
  userDiv.querySelector(".text").textContent = text;
  conversation.push({ role: "user", content });
  $("text").value = "";
  setPending(null);

  const botDiv = bubble("assistant");
  botDiv.classList.add("streaming");
  const out = botDiv.querySelector(".text");
  const model = $("model-name").textContent;
  const body = {
    model: model && model !== "?" ? model : undefined,  // unknown until /v1/models answered: the server's default
    messages: [{ role: "system", content: SYSTEM_PROMPTS[$("system").value] }, ...conversation],
    stream: true,
    stream_options: { include_usage: true },
  };
  Object.assign(body, decodingSettings());
  const speak = $("speak").checked;
  if (speak) { body.modalities = ["text", "audio"]; body.audio = { voice: "joe", format: "pcm16" }; }
  if (speak && $("autoplay").checked) {
    // Created (or resumed) here, in the click that sent the turn: browsers only let sound start from a gesture.
    audioContext = audioContext || new AudioContext();
    audioContext.resume().catch(() => {});
    document.querySelectorAll("audio").forEach((a) => a.pause());  // one voice at a time
    playAt = 0;
  }
  const autoplay = speak && $("autoplay").checked;
  status("Thinking…");
  let reply = "", style = null;
  const speech = [];
  try {
    const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!response.ok) {
      const err = await response.json().catch(() => ({ error: { message: response.statusText } }));
      throw new Error(err.error?.message || response.statusText);
    }
    for await (const data of sseEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.emotion !== undefined) setBadge(userDiv, chunk.emotion);
      if (chunk.usage) status(`${chunk.usage.prompt_tokens} prompt + ${chunk.usage.completion_tokens} reply tokens`);
      if (chunk.speech_style) style = chunk.speech_style;
      const delta = chunk.choices?.[0]?.delta || {};
      // A spoken reply's text is its audio's transcript (content is null then, as with OpenAI).
      const piece = delta.content || delta.audio?.transcript;
      if (piece) { reply += piece; out.textContent = reply; botDiv.scrollIntoView({ block: "end" }); }
      if (delta.audio?.data) {
        const bytes = base64Bytes(delta.audio.data);
        speech.push(bytes);
        if (autoplay) playPcm16(bytes);
      }
    }
    if (speech.length) {
      const player = document.createElement("audio");
      player.controls = true;
      player.className = "reply-audio";
      player.src = URL.createObjectURL(wavBlob(speech));
      out.after(player);
      if (style) {
        const tag = document.createElement("span");
        tag.className = "style-tag";
        tag.textContent = "spoken: " + style;
        botDiv.querySelector(".meta").append(tag);
      }
    }
    conversation.push({ role: "assistant", content: reply });
  } catch (err) {
    conversation.pop();  // the turn failed: keep the conversation as it was
    userDiv.remove();
    botDiv.className = "msg error";
    out.textContent = "Error: " + err.message;
    status("");
  } finally {
    botDiv.classList.remove("streaming");
    busy = false;
    $("send").disabled = false;
  }
}

function reset() {
  conversation.length = 0;
  $("thread").innerHTML = "";
  setPending(null);
  status("New conversation");
}

async function init() {
  $("record").addEventListener("click", recordToggle);
  $("file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) setPending(f, f.name); e.target.value = ""; });
  $("discard").addEventListener("click", () => setPending(null));
  $("composer").addEventListener("submit", send);
  $("reset").addEventListener("click", reset);
  $("api-key").value = localStorage.getItem("blsp-emo-key") || "";
  $("api-key").addEventListener("change", () => localStorage.setItem("blsp-emo-key", $("api-key").value));
  $("autoplay").checked = localStorage.getItem("blsp-emo-autoplay") === "on";  // off unless chosen before
  $("autoplay").addEventListener("change", () => {
    localStorage.setItem("blsp-emo-autoplay", $("autoplay").checked ? "on" : "off");
    if (!$("autoplay").checked && audioContext) audioContext.suspend().catch(() => {});  // stop talking now
  });
  if (!window.MediaRecorder) { $("record").disabled = true; $("record").title = "MediaRecorder is not supported here"; }
  try {
    const models = await (await fetch("/v1/models", { headers: headers() })).json();
    $("model-name").textContent = models.data[0].id;
  } catch (err) {
    $("model-name").textContent = "?";
  }
}

init();
