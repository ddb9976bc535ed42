// New study: show only the chosen prompt set's categories. The other sets' groups are hidden and disabled, so their
// boxes are not posted; without script every group shows, and the server refuses a category of another set by name.
(function () {
  "use strict";
  const select = document.getElementById("id_prompt_set");
  const groups = document.querySelectorAll(".category-group[data-prompt-set]");
  const hint = document.getElementById("categories-choose");
  if (!select || !groups.length) return;

  function show() {
    const chosen = select.value;
    for (const group of groups) {
      const hidden = group.dataset.promptSet !== chosen;
      group.hidden = hidden;
      group.disabled = hidden;
    }
    if (hint) hint.hidden = chosen !== "";
  }

  select.addEventListener("change", show);
  show();
})();
