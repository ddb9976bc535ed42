// The dashboard's catalog pages. A form with data-busy-text is handled by the server while the page loads (a sample
// import validates and stores every image before it answers): once submitted, its button is disabled and says so,
// and its status line tells the person to wait rather than submit again.
document.addEventListener("submit", function (event) {
  const form = event.target;
  const text = form.dataset ? form.dataset.busyText : "";
  if (!text) {
    return;
  }
  const button = form.querySelector("button[type=submit]");
  if (button) {
    // After this handler: a button disabled before the submission would leave the form's data unchanged anyway.
    window.setTimeout(function () {
      button.disabled = true;
      button.textContent = text;
    }, 0);
  }
  const status = form.querySelector(".busy-status");
  if (status) {
    status.hidden = false;
  }
});

// A sample import's page: while the import runs, poll its progress and redraw the bar; when it ends, reload the page
// for its result (what was imported, or every problem).
(function () {
  const box = document.querySelector("[data-poll-url]");
  if (!box) {
    return;
  }
  const url = box.dataset.pollUrl;
  const bar = document.getElementById("job-bar");
  const text = document.getElementById("job-text");
  const hint = document.getElementById("job-hint");
  const status = document.getElementById("job-status");
  function draw(state) {
    status.textContent = state.status_display;
    status.className = "pill " + state.status;
    if (state.finished) {
      window.location.reload();
      return;
    }
    if (state.status === "pending") {
      text.textContent = "Waiting for a worker to take the import (" + state.waiting_s + " s).";
    } else {
      bar.max = state.total || 1;
      bar.value = state.done;
      text.textContent = (state.phase_display || "Working") + ": " + state.done +
        (state.total ? " of " + state.total : "") + ".";
    }
    hint.hidden = state.status !== "pending";
    window.setTimeout(poll, 1500);
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(draw)
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();

// The generation runs page: while any listed run is pending or running, poll the runs' state and redraw their
// done/total and failures; when a run's status changes (its actions change with it), reload the page.
(function () {
  const table = document.querySelector("table[data-runs-url]");
  if (!table) {
    return;
  }
  const url = table.dataset.runsUrl;
  const live = ["pending", "running"];
  function shown(row) {
    return row.querySelector(".run-status").textContent.trim();
  }
  function active() {
    return Array.prototype.some.call(table.querySelectorAll("tr[data-run]"), function (row) {
      return live.indexOf(shown(row)) >= 0;
    });
  }
  function draw(state) {
    let changed = false;
    state.runs.forEach(function (run) {
      const row = table.querySelector("tr[data-run='" + run.id + "']");
      if (!row) {
        return;
      }
      if (shown(row) !== run.status) {
        changed = true;
      }
      row.querySelector(".run-progress").textContent = run.done + " / " + run.total;
      row.querySelector(".run-failures").textContent = run.failed;
    });
    if (changed) {
      window.location.reload();
      return;
    }
    if (active()) {
      window.setTimeout(poll, 3000);
    }
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(draw)
      .catch(function () { window.setTimeout(poll, 10000); });
  }
  if (active()) {
    window.setTimeout(poll, 3000);
  }
})();
