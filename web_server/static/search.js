"use strict";
// The search page: an uploaded image (picked, dropped or pasted) or ?key=... (more like this).

const form = document.getElementById("search-form");
const fileInput = document.getElementById("file");
const drop = document.getElementById("drop");
const kInput = document.getElementById("k");
const distanceInput = document.getElementById("max-distance");
const whereInput = document.getElementById("where");
const button = document.getElementById("search-button");
const errorBox = document.getElementById("error");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const intro = document.getElementById("intro");
const grid = document.getElementById("grid");

let chosenFile = null; // the image to search with, or null: search from the URL's key
let chosenUrl = null;
let maxImageBytes = 0;

function params() {
  const values = { k: kInput.value.trim() };
  if (distanceInput.value.trim() !== "") values.max_distance = distanceInput.value.trim();
  return values;
}

function filters() {
  return whereInput.value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/** The page address that searches from `key` with the current settings (shareable). */
function similarHref(key) {
  const query = new URLSearchParams({ key, ...params() });
  for (const f of filters()) query.append("where", f);
  return `/?${query}`;
}

function setBusy(busy, message) {
  button.disabled = busy;
  form.setAttribute("aria-busy", busy ? "true" : "false");
  statusLine.textContent = message || "";
}

function fail(error) {
  setBusy(false);
  results.hidden = true;
  showError(errorBox, error);
}

function render(answer, querySrc, queryLabel) {
  clearError(errorBox);
  intro.hidden = true;
  results.hidden = false;
  document.getElementById("query-img").src = querySrc;
  const count = answer.neighbors.length;
  const name = splitKey(queryLabel)[1];
  const within = answer.max_distance !== null ? ` within ${answer.max_distance}` : "";
  document.getElementById("results-title").textContent = count
    ? `${count} image${count === 1 ? "" : "s"} closest to ${name}`
    : `No images${within} of ${name}`;
  document.getElementById("query-name").textContent =
    (queryLabel === name ? "uploaded image" : queryLabel) + (count ? `, closest first${within}` : "");
  const note = document.getElementById("results-note");
  note.hidden = answer.missing_shards.length === 0;
  note.textContent = note.hidden
    ? ""
    : `Shards missing from these results: ${answer.missing_shards.join(", ")}`;
  grid.replaceChildren(
    ...answer.neighbors.map((n) => {
      const [folder, name] = splitKey(n.key);
      const link = el(
        "a",
        {
          className: "card-link",
          href: similarHref(n.key),
          title: `${n.key}\nMore like this`, // the link's description; its name is its text
        },
        thumbnail(n.thumbnail, ""),
        el(
          "span",
          { className: "card-meta" },
          hiddenText("Rank"),
          el("span", { className: "rank", text: `#${n.rank}` }),
          hiddenText("distance"),
          el("span", { className: "distance", text: formatDistance(n.distance) }),
        ),
        el("span", { className: "card-name" }, breakable(name)),
        el("span", { className: "card-folder" }, el("bdi", { text: folder || " " })),
      );
      return el("li", { className: "card", "data-key": n.key }, link);
    }),
  );
  setBusy(false, count ? "" : "Nothing matched: try a larger max distance or fewer filters.");
}

async function searchFile(file) {
  clearError(errorBox);
  if (maxImageBytes && file.size > maxImageBytes) {
    fail({
      title: "That image file is too large.",
      detail: `${file.name} is ${formatBytes(file.size)}; the limit is ${formatBytes(maxImageBytes)}.`,
    });
    return;
  }
  const body = new FormData();
  body.append("image", file, file.name || "pasted image");
  for (const [name, value] of Object.entries(params())) body.append(name, value);
  for (const f of filters()) body.append("where", f);
  setBusy(true, `Searching with ${file.name || "the pasted image"}…`);
  try {
    const { body: answer } = await api("/api/search", { method: "POST", body });
    render(answer, chosenUrl, file.name || "pasted image");
  } catch (error) {
    if (error.status >= 400 && error.status < 500 && error.detail && file.name) {
      error.detail = `${file.name}: ${error.detail}`;
    }
    fail(error);
  }
}

async function searchKey(key) {
  clearError(errorBox);
  const query = new URLSearchParams({ key, ...params() });
  for (const f of filters()) query.append("where", f);
  setBusy(true, "Searching…");
  try {
    const { body: answer } = await api(`/api/similar?${query}`);
    render(answer, `/api/thumbnail?key=${encodeURIComponent(key)}`, key);
    document.title = `imagesim · like ${splitKey(key)[1]}`;
  } catch (error) {
    fail(error);
  }
}

function choose(file) {
  if (!file) return;
  chosenFile = file;
  if (chosenUrl) URL.revokeObjectURL(chosenUrl);
  chosenUrl = URL.createObjectURL(file);
  const preview = document.getElementById("chosen-img");
  preview.src = chosenUrl;
  document.getElementById("chosen").hidden = false;
  document.getElementById("drop-title").textContent = file.name || "Pasted image";
  document.getElementById("drop-hint").textContent = "Choose another image, drag or paste one";
  drop.classList.add("has-file");
  // An upload has no address: leave the key's page.
  if (new URLSearchParams(location.search).has("key")) history.replaceState(null, "", "/");
  searchFile(file);
}

fileInput.addEventListener("change", () => choose(fileInput.files[0]));
// Not a picture the browser can show (the server says why): no broken preview.
document.getElementById("chosen-img").addEventListener("error", () => {
  document.getElementById("chosen").hidden = true;
});

for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("dragging");
  });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, () => drop.classList.remove("dragging"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer && event.dataTransfer.files[0];
  if (file) choose(file);
});
// Dropped next to the target: do not let the browser navigate away to the file.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

document.addEventListener("paste", (event) => {
  const items = (event.clipboardData && event.clipboardData.files) || [];
  const file = Array.from(items).find((f) => f.type.startsWith("image/")) || items[0];
  if (file) {
    event.preventDefault();
    choose(file);
  }
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (chosenFile) {
    searchFile(chosenFile);
    return;
  }
  const key = new URLSearchParams(location.search).get("key");
  if (key) {
    history.replaceState(null, "", similarHref(key));
    searchKey(key);
  } else {
    fail({ title: "Choose an image first.", detail: "Pick a file, drop one here or paste one." });
    fileInput.focus();
  }
});

async function start() {
  const url = new URLSearchParams(location.search);
  try {
    const l = await limits();
    maxImageBytes = l.max_image_bytes;
    kInput.max = l.max_k;
    if (!url.has("k")) kInput.value = l.default_k;
    document.getElementById("limits").textContent =
      `JPEG, PNG, GIF, WebP… up to ${formatBytes(l.max_image_bytes)}, ` +
      `${Math.round(l.max_image_pixels / 1e6)} megapixels`;
  } catch (error) {
    showError(errorBox, error);
  }
  if (url.has("k")) kInput.value = url.get("k");
  if (url.has("max_distance")) distanceInput.value = url.get("max_distance");
  if (url.getAll("where").length) whereInput.value = url.getAll("where").join(", ");
  const key = url.get("key");
  if (key) searchKey(key);
}

start();
