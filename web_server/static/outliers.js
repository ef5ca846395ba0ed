"use strict";
// The outliers page: the most isolated items of the collection, with their score.
// The address holds the count (?n=50), so it can be shared.

const outForm = document.getElementById("outliers-form");
const countInput = document.getElementById("count");
const outError = document.getElementById("error");
const outStatus = document.getElementById("status");
const outSection = document.getElementById("outliers");
const outGrid = document.getElementById("grid");

function renderOutliers(answer) {
  outStatus.textContent = "";
  outSection.hidden = false;
  const n = answer.outliers.length;
  document.getElementById("outliers-summary").textContent =
    `The ${n} most isolated of ${answer.items.toLocaleString()} items ` +
    `(score: mean distance to the ${answer.neighbors} nearest)`;
  outGrid.replaceChildren(
    ...answer.outliers.map((o, i) => {
      const [folder, name] = splitKey(o.key);
      return el(
        "li",
        { className: "card", "data-key": o.key },
        el(
          "a",
          {
            className: "card-link",
            href: o.similar,
            title: `${o.key}\nMore like this`, // the link's description; its name is its text
          },
          thumbnail(o.thumbnail, ""),
          el(
            "span",
            { className: "card-meta" },
            el("span", { className: "rank", text: `#${i + 1}` }),
            el("span", { className: "distance outlier-score", text: formatDistance(o.score) }),
          ),
          el("span", { className: "card-name" }, breakable(name)),
          el("span", { className: "card-folder" }, el("bdi", { text: folder || " " })),
        ),
      );
    }),
  );
}

async function loadOutliers(n) {
  clearError(outError);
  outStatus.textContent = "Scanning the collection…";
  try {
    const { body } = await api(`/api/outliers?${new URLSearchParams({ n })}`);
    renderOutliers(body);
  } catch (error) {
    outStatus.textContent = "";
    outSection.hidden = true;
    showError(outError, error);
  }
}

outForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const n = parseInt(countInput.value, 10);
  if (!(n >= 1 && n <= 200)) {
    showError(outError, { title: "Enter a number from 1 to 200.", detail: "" });
    countInput.focus();
    return;
  }
  history.pushState(null, "", `/outliers?${new URLSearchParams({ n })}`);
  loadOutliers(n);
});

function startOutliers() {
  const n = parseInt(new URLSearchParams(location.search).get("n") || "50", 10) || 50;
  countInput.value = String(n);
  loadOutliers(n);
}

window.addEventListener("popstate", startOutliers);
startOutliers();
