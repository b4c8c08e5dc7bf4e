"use strict";
(() => {
  // Polls the state endpoint (relative, so it works under any path prefix)
  // and swaps in each part of the page whose server-rendered HTML changed.
  const box = document.getElementById("connect");
  const note = document.getElementById("live-status");
  let starts = Number(box.dataset.starts) || 0; // Connect presses the daemon answered
  let waiting = box.dataset.phase === "waiting";
  let pending = null; // a Connect just pressed, not yet answered
  let timer = 0;
  const localize = (root) => {
    for (const t of root.querySelectorAll("time[datetime]")) {
      const d = new Date(t.dateTime);
      if (!isNaN(d)) t.textContent = d.toLocaleString();
    }
  };
  // swap puts a part's new HTML in. Its live region is kept and rewritten
  // in place, as screen readers announce changes only to one already there,
  // and focus goes back to the control with the same id.
  const swap = (el, html) => {
    const focused = el.contains(document.activeElement) ? document.activeElement.id : "";
    const t = document.createElement("template");
    t.innerHTML = html;
    const live = el.querySelector("[aria-live]");
    const fresh = t.content.querySelector("[aria-live]");
    if (live && fresh && live.parentNode === el && fresh.parentNode === t.content) {
      const nodes = [...t.content.childNodes];
      const i = nodes.indexOf(fresh);
      for (const n of [...el.childNodes]) if (n !== live) n.remove();
      live.className = fresh.className;
      live.innerHTML = fresh.innerHTML;
      live.before(...nodes.slice(0, i));
      live.after(...nodes.slice(i + 1));
    } else {
      el.replaceChildren(t.content);
    }
    if (focused) document.getElementById(focused)?.focus();
  };
  const schedule = (ms) => { clearTimeout(timer); timer = setTimeout(poll, ms); };
  const apply = (s) => {
    const c = s.connect;
    if (pending && (c.starts !== pending.starts || Date.now() > pending.until)) pending = null;
    if (pending) delete s.parts.connect; // keep "Waiting for Smartcar…" until the press is answered
    for (const [id, part] of Object.entries(s.parts)) {
      const el = document.getElementById(id);
      if (el && el.dataset.v !== part.v) { swap(el, part.html); el.dataset.v = part.v; localize(el); }
    }
    starts = c.starts;
    waiting = pending !== null || c.phase === "waiting";
  };
  const poll = () => fetch("state", { cache: "no-store", headers: { Accept: "application/json" } })
    .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then((s) => { apply(s); note.textContent = ""; })
    .catch(() => { note.textContent = "The daemon does not answer right now: this is what it said last."; })
    .finally(() => schedule(waiting ? 2000 : 10000));
  document.addEventListener("submit", (e) => {
    if (e.target.getAttribute("action") !== "connect") return;
    // Start may wait up to 30 s on Smartcar; past that, the press was lost.
    pending = { starts, until: Date.now() + 40000 };
    waiting = true;
    const msg = box.querySelector(".connect-status");
    if (msg) {
      msg.className = "connect-status";
      msg.innerHTML = "<strong>Waiting for Smartcar…</strong> Approve the connection in the tab that opened.";
    }
    delete box.dataset.v; // no longer the daemon's words: the next state puts them back
    schedule(1000);
  });
  localize(document);
  schedule(waiting ? 2000 : 10000);
})();
