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

document.addEventListener("DOMContentLoaded", () => {
  liveInbox();
  messagePage();
});
