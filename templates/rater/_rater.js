{% verbatim %}
(function () {
  "use strict";
  // Measured from when the page is ready to when the rater submits.
  const started = performance.now();
  const form = document.getElementById("rating-form");
  if (!form) return;
  const submitButton = form.querySelector("button[type=submit]");
  const hint = document.getElementById("form-hint");
  const radiosByKey = new Map();
  form.querySelectorAll("input[type=radio][data-key]").forEach(function (input) {
    radiosByKey.set(input.dataset.key, input);
  });
  const questions = Array.from(form.querySelectorAll(".question"));

  function unanswered() {
    return questions.filter(function (group) { return !group.querySelector("input[type=radio]:checked"); });
  }

  form.addEventListener("change", function (event) {
    const group = event.target.closest(".question");
    if (group) group.classList.remove("missing");
    if (unanswered().length === 0 && !form.dataset.submitted) {
      hint.classList.remove("alert");
      hint.innerHTML = "Press <kbd>Enter</kbd> to submit";
    }
  });

  // Answers go to the rater API. The assignment key makes a resent answer harmless (the server answers "already
  // recorded" rather than recording it twice), so a request that fails on the network is simply sent again, with a
  // growing pause, until the server answers: a dropped connection loses nothing.
  const apiUrl = form.dataset.apiUrl;
  const nextUrl = form.dataset.nextUrl;
  const doneUrl = form.dataset.doneUrl;
  const csrfToken = form.elements.csrfmiddlewaretoken.value;
  const RETRY_MAX_PAUSE_MS = 10000;
  const SERVER_ERROR_TRIES = 4;

  function say(text, alert) {
    hint.classList.toggle("alert", Boolean(alert));
    hint.textContent = text;
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  async function send(payload) {
    for (let attempt = 0; ; attempt++) {
      let response = null;
      try {
        response = await fetch(apiUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrfToken },
          body: JSON.stringify(payload),
        });
      } catch (networkError) {
        response = null;
      }
      if (response && response.status !== 429 && response.status < 500) return response;
      // A server error that persists is a fault, not a flaky connection: say so after a few tries.
      if (response && response.status >= 500 && attempt >= SERVER_ERROR_TRIES) return response;
      let pause = Math.min(RETRY_MAX_PAUSE_MS, 500 * Math.pow(2, attempt));
      if (response && response.status === 429) {
        pause = Math.max(pause, 1000 * Number(response.headers.get("Retry-After") || 1));
      }
      say("Connection problem: your answers are kept and will be sent again in a moment…", true);
      await sleep(pause);
    }
  }

  function answersOf() {
    const answers = {};
    questions.forEach(function (group) {
      const checked = group.querySelector("input[type=radio]:checked");
      answers[checked.name.replace(/^answer_/, "")] = checked.value;
    });
    return answers;
  }

  function fail(messages, continueLink) {
    const previous = form.parentNode.querySelector(".js-errors");
    if (previous) previous.remove();
    const box = document.createElement("div");
    box.className = "errors js-errors";
    box.setAttribute("role", "alert");
    const list = document.createElement("ul");
    messages.forEach(function (text) {
      const item = document.createElement("li");
      item.textContent = text;
      list.appendChild(item);
    });
    box.appendChild(list);
    if (continueLink) {
      const link = document.createElement("a");
      link.href = nextUrl;
      link.textContent = "Continue";
      box.appendChild(link);
    }
    form.parentNode.insertBefore(box, form);
    say(messages[0], true);
  }

  function messagesOf(body, status) {
    if (status >= 500) return ["The server could not record your answers; they are kept on this page. Press Enter to try again."];
    if (!body) return ["The server refused the answer."];
    if (body.detail) return [String(body.detail)];
    const messages = [];
    Object.keys(body).forEach(function (field) {
      [].concat(body[field]).forEach(function (text) {
        messages.push(typeof text === "string" ? text : field + ": " + JSON.stringify(text));
      });
    });
    return messages.length ? messages : ["The server refused the answer."];
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const missing = unanswered();
    if (missing.length) {
      missing.forEach(function (group) { group.classList.add("missing"); });
      say(missing.length > 1 ? "Please answer both questions." : "Please answer the highlighted question.", true);
      return;
    }
    if (form.dataset.submitted) return;
    form.dataset.submitted = "1";
    submitButton.disabled = true;
    const payload = {
      key: form.elements.key.value,
      answers: answersOf(),
      response_time_ms: Math.max(0, Math.round(performance.now() - started)),
      // The answer that finds nothing left records the rater's work as over (a page's GET writes nothing), and
      // the finish page shows what they get.
      include_next: true,
    };
    say("Saving…", false);
    const response = await send(payload);
    if (response.ok) {
      let answered = null;
      try { answered = await response.json(); } catch (parseError) { answered = null; }
      const over = answered && answered.next && answered.next.assignment === null;
      window.location.assign(over ? doneUrl : nextUrl);
      return;
    }
    let body = null;
    try { body = await response.json(); } catch (parseError) { body = null; }
    // 409 (answered differently, or reclaimed) and 404 (unknown item) end this page; 400 and a persistent server
    // error let the rater try again from here.
    const final = response.status !== 400 && response.status < 500;
    fail(messagesOf(body, response.status), final);
    if (!final) {
      delete form.dataset.submitted;
      submitButton.disabled = false;
    }
  });

  // Both sets on one screen: the CSS guesses the height of the rest of the page; a long caption can make it taller,
  // so shrink the sets until nothing scrolls (never below a readable size).
  // Not on phones, where the sets stack and the page scrolls down: there the sets keep the screen's width.
  const sets = document.querySelector(".sets");
  const stacked = window.matchMedia("(max-width: 820px)");
  function fit() {
    sets.style.width = "";
    if (stacked.matches) return;
    for (let i = 0; i < 3; i++) {
      const overflow = document.documentElement.scrollHeight - window.innerHeight;
      if (overflow <= 0) return;
      const width = sets.getBoundingClientRect().width;
      const gridHeight = sets.querySelector(".grid").getBoundingClientRect().height;
      sets.style.width = Math.max(480, width * (1 - overflow / gridHeight)) + "px";
    }
  }
  fit();
  window.addEventListener("resize", fit);

  // Lightbox: click (or Enter on) an image to enlarge it; Esc, a click or × closes it; arrows move within a set.
  const lightbox = document.getElementById("lightbox");
  const bigImage = lightbox.querySelector("img");
  const bigLabel = lightbox.querySelector("figcaption");
  const thumbs = Array.from(document.querySelectorAll(".thumb"));
  let current = null;
  // The image that got the focus back when the lightbox closed: Enter there submits (the rater has looked), rather
  // than enlarging it again. A focus moved by the rater (Tab, a click) makes Enter enlarge again.
  let refocused = null;

  function show(thumb) {
    current = thumb;
    bigImage.src = thumb.dataset.full;
    bigImage.alt = thumb.dataset.label;
    bigLabel.textContent = thumb.dataset.label;
    lightbox.hidden = false;
    lightbox.querySelector(".lightbox-close").focus();
  }
  function hide() {
    if (lightbox.hidden) return;
    lightbox.hidden = true;
    bigImage.removeAttribute("src");
    if (current) {
      current.focus();
      refocused = current;
    }
  }
  document.addEventListener("focusin", function (event) {
    if (event.target !== refocused) refocused = null;
  });
  document.addEventListener("pointerdown", function () { refocused = null; });
  function step(delta) {
    const siblings = Array.from(current.parentElement.querySelectorAll(".thumb"));
    const next = siblings[(siblings.indexOf(current) + delta + siblings.length) % siblings.length];
    show(next);
  }
  thumbs.forEach(function (thumb) {
    thumb.addEventListener("click", function () { show(thumb); });
  });
  lightbox.addEventListener("click", hide);

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (!lightbox.hidden) {
      if (event.key === "Escape") { event.preventDefault(); hide(); }
      else if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
      else if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
      return;
    }
    if (event.key === "Enter") {
      // Enter on an image the rater moved to enlarges it, as a button does; anywhere else it submits.
      if (event.target !== refocused && event.target.closest && event.target.closest(".thumb, a, button")) return;
      event.preventDefault();
      form.requestSubmit(submitButton);
      return;
    }
    const input = radiosByKey.get(event.key.toLowerCase());
    if (input) {
      event.preventDefault();
      input.checked = true;
      // Focus follows the answer, so that Enter then submits even if an image had the focus.
      input.focus({ preventScroll: true });
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });
})();
{% endverbatim %}
