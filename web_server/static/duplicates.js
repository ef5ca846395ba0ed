"use strict";
// The duplicates page: groups at a threshold, largest first, a page at a time.
// The address holds the threshold and page (?max_distance=0.04&page=2), so it can be shared.

const PAGE_SIZE = 20;
const MEMBERS_SHOWN = 24;

const dupForm = document.getElementById("dup-form");
const distance = document.getElementById("max-distance");
const errorBox = document.getElementById("error");
const statusLine = document.getElementById("status");
const section = document.getElementById("groups");
const list = document.getElementById("group-list");

let polling = null;

function pageHref(maxDistance, page) {
  return `/duplicates?${new URLSearchParams({ max_distance: maxDistance, page })}`;
}

function seconds(s) {
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`;
}

function renderGroups(answer) {
  clearError(errorBox);
  statusLine.textContent = "";
  section.hidden = false;
  const first = (answer.page - 1) * answer.page_size;
  document.getElementById("summary").textContent = answer.groups_total
    ? `${answer.groups_total} group${answer.groups_total === 1 ? "" : "s"}, ` +
      `${answer.duplicated_items} images within ${answer.max_distance} ` +
      `(${answer.items.toLocaleString()} items searched in ${seconds(answer.seconds)})`
    : `No near-duplicates within ${answer.max_distance} among ${answer.items.toLocaleString()} items. ` +
      "Try a larger distance.";
  list.replaceChildren(
    ...answer.groups.map((group, i) => {
      const number = first + i + 1;
      const heading = el(
        "h3",
        {},
        `Group ${number} `,
        el("span", { className: "count", text: `${group.size} images` }),
      );
      const strip = el(
        "ul",
        { className: "strip" },
        ...group.members.map((m) => {
          const [folder, name] = splitKey(m.key);
          return el(
            "li",
            { className: "card", "data-key": m.key },
            el(
              "a",
              {
                className: "card-link",
                href: `/?key=${encodeURIComponent(m.key)}`,
                title: `${m.key}\nMore like this`, // the link's description; its name is its text
              },
              thumbnail(m.thumbnail, ""),
              el(
                "span",
                { className: "card-meta" },
                el("span", { className: "closest-label", text: "closest" }),
                el("span", { className: "distance", text: formatDistance(m.closest) }),
              ),
              el("span", { className: "card-name" }, breakable(name)),
              el("span", { className: "card-folder" }, el("bdi", { text: folder || " " })),
            ),
          );
        }),
      );
      const more =
        group.size > group.members.length
          ? el("p", { className: "note", text: `and ${group.size - group.members.length} more` })
          : null;
      return el(
        "section",
        { className: "group", "aria-label": `Group ${number}`, "data-group": number - 1 },
        heading,
        strip,
        more,
      );
    }),
  );
  if (answer.groups_total) reviewGroups(answer.max_distance);
  else document.getElementById("review").hidden = true;
  const pager = document.getElementById("pager");
  pager.hidden = answer.pages <= 1;
  document.getElementById("page-info").textContent = `Page ${answer.page} of ${answer.pages}`;
  for (const [id, page, show] of [
    ["prev", answer.page - 1, answer.page > 1],
    ["next", answer.page + 1, answer.page < answer.pages],
  ]) {
    const link = document.getElementById(id);
    if (show) {
      link.href = pageHref(answer.max_distance, page);
      link.removeAttribute("aria-disabled");
    } else {
      link.removeAttribute("href");
      link.setAttribute("aria-disabled", "true");
    }
  }
}

async function load(maxDistance, page) {
  clearTimeout(polling);
  clearError(errorBox);
  const query = new URLSearchParams({
    max_distance: maxDistance,
    page,
    page_size: PAGE_SIZE,
    members: MEMBERS_SHOWN,
    wait: 5,
  });
  try {
    const { status, body } = await api(`/api/duplicates?${query}`);
    if (status === 202) {
      const other = body.computing !== null && body.computing !== Number(maxDistance);
      statusLine.textContent = other
        ? `Busy with the groups at ${body.computing}; yours come next…`
        : `Searching the collection: ${body.items.toLocaleString()} of ` +
          `${body.total.toLocaleString()} items…`;
      polling = setTimeout(() => load(maxDistance, page), 1000);
      return;
    }
    renderGroups(body);
  } catch (error) {
    statusLine.textContent = "";
    section.hidden = true;
    showError(errorBox, error);
  }
}

dupForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const value = distance.value.trim();
  if (value === "" || !(Number(value) >= 0)) {
    showError(errorBox, { title: "Enter a distance of 0 or more.", detail: "" });
    distance.focus();
    return;
  }
  history.pushState(null, "", pageHref(value, 1));
  statusLine.textContent = "Searching…";
  load(value, 1);
});

async function startDuplicates() {
  const url = new URLSearchParams(location.search);
  let value = url.get("max_distance");
  if (value === null) {
    try {
      value = String((await limits()).duplicates_distance);
    } catch (error) {
      showError(errorBox, error);
      return;
    }
  }
  distance.value = value;
  const page = Math.max(1, parseInt(url.get("page") || "1", 10) || 1);
  statusLine.textContent = "Searching…";
  load(value, page);
}

window.addEventListener("popstate", startDuplicates);
startDuplicates();
