"use strict";
(() => {
  // Polls the state endpoint (relative, so it works under any path prefix)
  // and swaps in each part of the page whose server-rendered HTML changed.
  const box = document.getElementById("connect");
  const note = document.getElementById("live-status");
  let started = box.dataset.started || "";
  let waiting = box.dataset.phase === "waiting";
  let pending = null; // a Connect just submitted, not yet seen in the state
  let timer = 0;
  const localize = (root) => {
    for (const t of root.querySelectorAll("time[datetime]")) {
      const d = new Date(t.dateTime);
      if (!isNaN(d)) t.textContent = d.toLocaleString();
    }
  };
  const schedule = (ms) => { clearTimeout(timer); timer = setTimeout(poll, ms); };
  const apply = (s) => {
    const c = s.connect;
    if (pending && (c.phase === "waiting" || (c.startedID || "") !== pending.started || Date.now() > pending.until)) pending = null;
    if (pending) delete s.parts.connect; // keep "Waiting for Smartcar…" until the new flow shows
    for (const [id, part] of Object.entries(s.parts)) {
      const el = document.getElementById(id);
      if (el && el.dataset.v !== part.v) { el.innerHTML = part.html; el.dataset.v = part.v; localize(el); }
    }
    started = c.startedID || "";
    waiting = pending !== null || c.phase === "waiting";
  };
  const poll = () => fetch("state", { cache: "no-store", headers: { Accept: "application/json" } })
    .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then((s) => { apply(s); note.textContent = ""; })
    .catch(() => { note.textContent = "The daemon does not answer right now: this is what it said last."; })
    .finally(() => schedule(waiting ? 2000 : 10000));
  document.addEventListener("submit", (e) => {
    if (e.target.getAttribute("action") !== "connect") return;
    pending = { started, until: Date.now() + 15000 };
    waiting = true;
    const msg = box.querySelector(".connect-status") || box.appendChild(document.createElement("p"));
    msg.className = "connect-status";
    msg.innerHTML = "<strong>Waiting for Smartcar…</strong> Approve the connection in the tab that opened.";
    schedule(1000);
  });
  localize(document);
  schedule(waiting ? 2000 : 10000);
})();
