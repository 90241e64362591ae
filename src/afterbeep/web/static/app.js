// afterbeep: the few lines of script the pages use. Everything works without them, except
// live updates of the inbox and seeking from the waveform or the transcript.
"use strict";

function csrfToken() {
  return document.body.dataset.csrf || "";
}

// The open inbox gets new messages as they arrive (server-sent events).
function liveInbox() {
  const list = document.getElementById("messages");
  if (!list || !list.dataset.live || !window.EventSource) return;
  const source = new EventSource(list.dataset.live);
  source.addEventListener("message", (event) => {
    const data = JSON.parse(event.data);
    if (document.getElementById("row-" + data.id)) return;
    list.insertAdjacentHTML("afterbegin", data.html);
    const empty = document.getElementById("no-messages");
    if (empty) empty.remove();
    const link = document.querySelector('nav.mailboxes a[aria-current="page"]');
    if (link) {
      const count = link.querySelector(".count");
      if (count) count.textContent = String(data.total);
      let badge = link.querySelector("[data-unread]");
      if (!badge && data.unread) {
        badge = document.createElement("span");
        badge.className = "badge";
        badge.dataset.unread = "";
        badge.title = "new messages";
        count.before(badge, " ");
      }
      if (badge) badge.textContent = String(data.unread);
    }
  });
}

// The message page: mark read on first play, seek from the waveform and the transcript.
function messagePage() {
  const player = document.getElementById("player");
  if (!player) return;
  const article = player.closest("article");
  player.addEventListener("play", () => {
    if (!article || !("unread" in article.dataset)) return;
    delete article.dataset.unread;
    fetch(article.dataset.markRead, {
      method: "POST",
      headers: { "X-CSRF-Token": csrfToken(), "HX-Request": "true" },
      credentials: "same-origin",
    }).then((r) => (r.ok ? r.text() : null)).then((html) => {
      const actions = document.getElementById("actions");
      if (html && actions) {
        actions.outerHTML = html;
        if (window.htmx) window.htmx.process(document.getElementById("actions"));
      }
    });
  }, { once: false });
  const wave = document.getElementById("wave");
  if (wave) {
    const bars = wave.querySelectorAll("rect");
    const duration = () => (isFinite(player.duration) && player.duration > 0 ? player.duration : Number(wave.dataset.duration));
    wave.addEventListener("click", (event) => {
      const box = wave.getBoundingClientRect();
      player.currentTime = ((event.clientX - box.left) / box.width) * duration();
    });
    player.addEventListener("timeupdate", () => {
      const upto = Math.floor((player.currentTime / duration()) * bars.length);
      bars.forEach((bar, i) => bar.classList.toggle("played", i < upto));
    });
  }
  document.querySelectorAll("[data-seek]").forEach((button) => {
    button.addEventListener("click", () => {
      player.currentTime = Number(button.dataset.seek);
      player.play();
    });
  });
}

// Greetings: record one with the microphone (MediaRecorder), listen, then send it as WAV
// (the browser decodes its own recording; the service decodes WAV whatever the browser).
function wavOf(buffer) {
  const samples = buffer.getChannelData(0);
  const out = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (at, s) => [...s].forEach((c, i) => out.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF"); out.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVEfmt ");
  out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, buffer.sampleRate, true); out.setUint32(28, buffer.sampleRate * 2, true);
  out.setUint16(32, 2, true); out.setUint16(34, 16, true); text(36, "data");
  out.setUint32(40, samples.length * 2, true);
  samples.forEach((v, i) => out.setInt16(44 + i * 2, Math.max(-1, Math.min(1, v)) * 0x7fff, true));
  return new Blob([out], { type: "audio/wav" });
}

function greetingRecorder() {
  const box = document.getElementById("recorder");
  const form = document.getElementById("greeting-form");
  if (!box || !form || !window.MediaRecorder || !navigator.mediaDevices) return;
  box.hidden = false;
  const [start, stop, save] = ["record-start", "record-stop", "record-save"].map((id) => document.getElementById(id));
  const preview = document.getElementById("record-preview");
  const state = document.getElementById("record-state");
  let recorder = null;
  let wav = null;
  start.addEventListener("click", async () => {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.addEventListener("dataavailable", (e) => chunks.push(e.data));
      recorder.addEventListener("stop", async () => {
        stream.getTracks().forEach((t) => t.stop());
        const recorded = new Blob(chunks, { type: recorder.mimeType });
        const context = new AudioContext();
        wav = wavOf(await context.decodeAudioData(await recorded.arrayBuffer()));
        context.close();
        preview.src = URL.createObjectURL(wav);
        preview.hidden = false;
        save.disabled = false;
        state.textContent = "Recorded. Listen, then set it, or record again.";
      });
      recorder.start();
      start.disabled = true; stop.disabled = false; save.disabled = true;
      state.textContent = "Recording…";
    } catch (err) {
      state.textContent = "The microphone could not be used: " + err.message;
    }
  });
  stop.addEventListener("click", () => {
    if (recorder && recorder.state === "recording") recorder.stop();
    start.disabled = false; stop.disabled = true;
  });
  save.addEventListener("click", async () => {
    if (!wav) return;
    const data = new FormData();
    data.append("kind", document.getElementById("greeting-kind").value);
    data.append("name", "recorded greeting");
    data.append("file", wav, "greeting.wav");
    save.disabled = true;
    const answer = await fetch(form.action, {
      method: "POST", body: data, credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken() },
    });
    if (answer.ok && answer.redirected) window.location.assign(answer.url);
    else { state.textContent = "Not saved (" + answer.status + ")."; save.disabled = false; }
  });
}

// The representatives' console: each work item event redraws its item (an offer appears, an
// accepted item gets its actions, the transcript arrives), or takes it away; offers count down.
function seekIn(root) {
  root.querySelectorAll("[data-seek]").forEach((button) => {
    button.addEventListener("click", () => {
      const player = button.closest("article").querySelector("audio");
      if (!player) return;
      player.currentTime = Number(button.dataset.seek);
      player.play();
    });
  });
}

function countDown() {
  document.querySelectorAll("[data-countdown]").forEach((el) => {
    if (!el.dataset.until) el.dataset.until = String(Date.now() + Number(el.dataset.countdown) * 1000);
    el.textContent = String(Math.max(0, Math.ceil((Number(el.dataset.until) - Date.now()) / 1000)));
  });
}

function liveConsole() {
  const work = document.getElementById("work");
  if (!work) return;
  seekIn(work);
  countDown();
  window.setInterval(countDown, 1000);
  if (!work.dataset.live || !window.EventSource) return;
  const empty = document.getElementById("no-work");
  const source = new EventSource(work.dataset.live);
  source.addEventListener("item", (event) => {
    const data = JSON.parse(event.data);
    const old = document.getElementById("item-" + data.id);
    if (data.gone) {
      if (old) old.remove();
    } else {
      const box = document.createElement("div");
      box.innerHTML = data.html;
      const fresh = box.firstElementChild;
      if (old && data.event === "work_item.updated") {
        // Keep the player (it may be playing) unless the recording just arrived.
        const player = old.querySelector("audio");
        if (!player) old.querySelector(".player").replaceWith(fresh.querySelector(".player"));
        old.querySelector(".transcript").replaceWith(fresh.querySelector(".transcript"));
        seekIn(old);
      } else {
        if (old) {
          const notes = old.querySelector("textarea");
          const kept = fresh.querySelector("textarea");
          if (notes && kept) kept.value = notes.value;
          old.replaceWith(fresh);
        } else {
          work.append(fresh);
        }
        seekIn(fresh);
        countDown();
      }
    }
    if (empty) empty.hidden = work.children.length > 0;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  liveConsole();
  liveInbox();
  messagePage();
  greetingRecorder();
});
