// The study page: copy the rater link, and keep the page live by polling progress.json every few seconds (rating
// progress overall and per category, time to finish, raters and flags, the runs table). Buttons that depend on the
// study's state are drawn by the server: when they would change, the page says so and offers a reload.
(function () {
  "use strict";
  const root = document.getElementById("study-page");
  if (!root) return;
  const POLL_MS = 3000;

  // --- copy link ------------------------------------------------------------------------------------------------
  const copy = document.getElementById("copy-link");
  const field = document.getElementById("rater-url");
  const status = document.getElementById("copy-status");
  if (copy && field) {
    copy.hidden = false;
    copy.addEventListener("click", async function () {
      try {
        if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard");
        await navigator.clipboard.writeText(field.value);
        status.textContent = "Copied the rater link.";
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = "Copy link"; }, 2000);
      } catch (e) {
        // No clipboard access (plain HTTP, permissions): select the link for the user to copy.
        field.focus();
        field.select();
        status.textContent = "Could not copy automatically: the link is selected, press Ctrl+C (⌘C on a Mac).";
      }
    });
  }

  // --- live state ---------------------------------------------------------------------------------------------
  const progressUrl = root.dataset.progressUrl;
  const actionUrls = { resume: root.dataset.resumeUrl, cancel: root.dataset.cancelUrl };
  const csrfInput = document.querySelector("#csrf input[name=csrfmiddlewaretoken]");
  const csrf = csrfInput ? csrfInput.value : "";

  function text(id, value) {
    const element = document.getElementById(id);
    if (element) element.textContent = value;
  }

  function bar(fraction) {
    const outer = document.createElement("div");
    outer.className = "bar";
    const inner = document.createElement("span");
    inner.style.width = (100 * Math.min(1, fraction)).toFixed(1) + "%";
    outer.append(inner);
    return outer;
  }

  function drawCategories(categories) {
    const body = document.getElementById("categories-body");
    if (!body) return;
    body.replaceChildren();
    for (const c of categories) {
      const row = body.insertRow();
      row.dataset.category = c.category;
      row.insertCell().textContent = c.category;
      const done = row.insertCell();
      done.className = "cat-done";
      done.textContent = c.done + " / " + c.wanted;
      row.insertCell().append(bar(c.fraction));
    }
  }

  function drawRaters(raters) {
    text("raters-started", raters.started);
    text("raters-finished", raters.finished);
    text("raters-flagged", raters.flagged);
    const list = document.getElementById("flags");
    if (!list) return;
    list.replaceChildren();
    for (const f of raters.flags) {
      const item = document.createElement("li");
      item.dataset.reason = f.reason;
      item.textContent = f.label + ": " + f.n;
      list.append(item);
    }
    if (!raters.flags.length) {
      const none = document.createElement("li");
      none.className = "muted";
      none.textContent = "None.";
      list.append(none);
    }
  }

  function cell(row, value) { row.insertCell().textContent = value; return row; }

  function action(td, runId, name, label) {
    const form = document.createElement("form");
    form.method = "post";
    form.style.display = "inline";
    form.action = actionUrls[name].replace("/runs/0/", "/runs/" + runId + "/");
    const token = document.createElement("input");
    token.type = "hidden"; token.name = "csrfmiddlewaretoken"; token.value = csrf;
    const button = document.createElement("button");
    button.className = "btn secondary"; button.type = "submit"; button.textContent = label;
    form.append(token, button);
    td.append(form, " ");
  }

  function drawRuns(runs) {
    const body = document.getElementById("runs-body");
    if (!body) return;
    body.replaceChildren();
    if (!runs.length) {
      const row = body.insertRow(); const td = row.insertCell();
      td.colSpan = 10; td.className = "muted"; td.textContent = "No generation runs.";
      return;
    }
    for (const r of runs) {
      const row = body.insertRow();
      row.className = "run"; row.dataset.run = r.id;
      const eta = r.eta_s === null ? "" : Math.round(r.eta_s) + " s";
      const rate = r.images_per_s === null ? "" : r.images_per_s.toFixed(2);
      for (const v of [r.id, r.model, r.queue, r.status, r.done + " / " + r.total, rate, eta, r.failed]) cell(row, v);
      const overhead = row.insertCell();
      overhead.className = "run-overhead";
      overhead.textContent = r.overhead_text;
      const actions = row.insertCell();
      if (r.can_resume) action(actions, r.id, "resume", "Resume");
      if (r.can_cancel) action(actions, r.id, "cancel", "Cancel");
      if (r.failures.length) {
        const failures = body.insertRow();
        failures.className = "run-failures"; failures.dataset.run = r.id;
        failures.insertCell();
        const td = failures.insertCell(); td.colSpan = 9;
        const list = document.createElement("ul"); list.className = "failures";
        for (const f of r.failures) {
          const item = document.createElement("li");
          const message = document.createElement("span");
          message.className = "errorlist"; message.textContent = f.message;
          item.append("prompt " + f.position + " (" + f.category + ") “" + f.text + "”: ", message);
          list.append(item);
        }
        if (r.more_failures) {
          const more = document.createElement("li");
          more.className = "muted"; more.textContent = "and " + r.more_failures + " more (see the admin)";
          list.append(more);
        }
        td.append(list);
      }
    }
  }

  function actionsKey(a) {
    return [a.generate, a.open, a.close, a.results].map(function (v) { return v ? "1" : "0"; }).join("");
  }

  function draw(state) {
    const p = state.progress;
    const ratingBar = document.getElementById("rating-bar");
    if (ratingBar) ratingBar.style.width = (100 * p.fraction_complete).toFixed(1) + "%";
    text("rating-text", p.judgments + " of " + p.target + " judgments");
    const t = state.time_to_finish;
    text("time-to-finish", t.eta_text);
    text("answer-rate", t.rate_per_min === null ? "" : "(" + t.rate_per_min.toFixed(1) + " judgments/min recently)");
    drawCategories(state.categories);
    drawRaters(state.raters);
    drawRuns(state.runs);
    const badge = document.getElementById("status");
    if (badge) { badge.textContent = state.status_label; badge.className = "pill " + state.status; }
    const changed = state.status !== root.dataset.status || actionsKey(state.actions) !== root.dataset.actions;
    const notice = document.getElementById("state-changed");
    if (notice) notice.hidden = !changed;
  }

  async function tick() {
    try {
      const response = await fetch(progressUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) draw(await response.json());
    } catch (e) { /* a missed poll is retried on the next tick */ }
  }

  setInterval(tick, POLL_MS);
})();
