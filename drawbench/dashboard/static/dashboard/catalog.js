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
