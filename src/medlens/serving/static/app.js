// medlens pages: small progressive enhancements. Every page works without this file; no inline scripts
// anywhere (the Content-Security-Policy allows scripts from /static only).
"use strict";

(function () {
  const TERMINAL = ["done", "failed", "cancelled"];
  const POLL_MS = 2000;

  function fmtNum(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    if (Number.isInteger(v)) return String(v);
    return Number(v).toFixed(3);
  }

  function fmtEta(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, Math.round(Number(seconds)));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
    return Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " min";
  }

  // -- a job's live progress: poll /api/jobs/{id} every 2 s until it ends ---------------------------------
  function watchJob(box) {
    const id = box.dataset.job;
    const field = (name) => box.querySelector('[data-field="' + name + '"]');
    let timer = null;
    let failures = 0;

    function show(job) {
      const p = job.progress || {};
      const state = field("state");
      state.textContent = job.state;
      state.className = "badge state-" + job.state;
      box.dataset.state = job.state;
      field("stage").textContent = p.stage || job.state;
      field("epoch").textContent = p.epoch ? p.epoch + " / " + (p.epochs || "?") : "—";
      const vals = Object.keys(p)
        .filter((k) => k.startsWith("val_") && typeof p[k] === "number")
        .map((k) => k + " " + fmtNum(p[k]));
      field("val").textContent = vals.length ? vals.join(", ") : "—";
      field("eta").textContent = p.eta_s !== undefined && p.eta_s !== null ? fmtEta(p.eta_s) : "—";
      const bar = field("bar");
      if (p.epochs) bar.max = p.epochs;
      if (p.epoch) bar.value = p.epoch;
      const ended = TERMINAL.includes(job.state);
      if (ended) bar.value = bar.max;
      const error = field("error");
      error.textContent = job.error || "";
      error.hidden = !job.error;
      box.querySelectorAll('[data-when="active"]').forEach((el) => { el.hidden = ended; });
      box.querySelectorAll('[data-when="done"]').forEach((el) => { el.hidden = job.state !== "done"; });
      return ended;
    }

    async function poll() {
      try {
        const response = await fetch("/api/jobs/" + encodeURIComponent(id), {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
          cache: "no-store",
        });
        if (response.status === 401) {
          window.location.assign("/login");
          return;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        failures = 0;
        if (show(await response.json())) return;
      } catch (err) {
        failures += 1;
        if (failures >= 30) return; // the server is gone: stop asking
      }
      timer = window.setTimeout(poll, POLL_MS);
    }

    if (!TERMINAL.includes(box.dataset.state)) timer = window.setTimeout(poll, POLL_MS);
    window.addEventListener("pagehide", () => window.clearTimeout(timer));
  }

  // -- forms: confirm where asked, and show that a slow post (upload, training start) is under way -------
  function enhanceForms() {
    document.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
    document.querySelectorAll("form[data-busy]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (event.defaultPrevented) return;
        const button = form.querySelector('button[type="submit"]');
        if (!button) return;
        // disable after the browser has collected the form data (a disabled button is not submitted)
        window.setTimeout(() => {
          button.disabled = true;
          button.textContent = form.dataset.busy;
        }, 0);
      });
    });
    document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
      select.addEventListener("change", () => {
        if (select.value) select.form.submit();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const box = document.getElementById("job");
    if (box && box.dataset.job) watchJob(box);
    enhanceForms();
  });
})();
