"use strict";
// The duplicates page's review: the keeper the chosen rule proposes in each group (a radio
// button), the members to move (ticked) or leave alone (unticked), the plan as a download
// (the JSON of `imagesim duplicates --plan`, made by the server) and, with a write key and a
// quarantine folder on the server, the move itself after a confirmation.

const review = {
  form: document.getElementById("review"),
  rule: document.getElementById("keep-rule"),
  count: document.getElementById("review-count"),
  why: document.getElementById("review-why"),
  download: document.getElementById("download-plan"),
  apply: document.getElementById("apply-plan"),
  result: document.getElementById("review-result"),
  dialog: document.getElementById("confirm"),
  maxDistance: null,
  plan: null, // the proposal: the server's plan without edits
  edits: new Map(), // group number (0-based) -> {keep, skip: Set}
  config: null,
};

function reviewError(error) {
  showError(document.getElementById("error"), error);
}

function groupChoice(number) {
  const edit = review.edits.get(number);
  if (edit) return edit;
  const group = review.plan.groups[number];
  const skip = new Set(group.members.filter((m) => m.action === "skip").map((m) => m.key));
  return { keep: group.keep, skip };
}

function editsBody() {
  return {
    max_distance: Number(review.maxDistance),
    keep_rule: review.rule.value,
    edits: [...review.edits].map(([group, e]) => ({ group, keep: e.keep, skip: [...e.skip] })),
  };
}

function moves() {
  let count = 0;
  review.plan.groups.forEach((group, number) => {
    const choice = groupChoice(number);
    count += group.members.filter((m) => m.key !== choice.keep && !choice.skip.has(m.key)).length;
  });
  return count;
}

function updateCount() {
  const n = moves();
  const groups = review.plan.groups.length;
  review.count.textContent =
    `${n} file${n === 1 ? "" : "s"} to move, one kept in each of ${groups} ` +
    `group${groups === 1 ? "" : "s"}. Untick a picture to leave it where it is.`;
}

/** Radio (keep) and checkbox (move) on every card of the groups shown. */
function decorate() {
  for (const section of document.querySelectorAll("#group-list .group")) {
    const number = Number(section.dataset.group);
    const group = review.plan.groups[number];
    if (!group) continue;
    const byKey = new Map(group.members.map((m) => [m.key, m]));
    const choice = groupChoice(number);
    for (const card of section.querySelectorAll(".card")) {
      card.querySelector(".card-choice")?.remove();
      const key = card.dataset.key;
      const member = byKey.get(key);
      if (!member) continue;
      const [, name] = splitKey(key);
      const kept = key === choice.keep;
      const missing = Boolean(member.note);
      const radio = el("input", {
        type: "radio",
        name: `keep-${number}`,
        value: key,
        checked: kept,
        disabled: missing,
        "aria-label": `Keep ${name}`,
      });
      const box = el("input", {
        type: "checkbox",
        checked: !kept && !choice.skip.has(key),
        disabled: kept || missing,
        "aria-label": `Move ${name}`,
      });
      radio.addEventListener("change", () => {
        const now = groupChoice(number);
        const skip = new Set(now.skip);
        skip.delete(key);
        review.edits.set(number, { keep: key, skip });
        decorate();
        updateCount();
        section.querySelector(`input[name="keep-${number}"]:checked`)?.focus();
      });
      box.addEventListener("change", () => {
        const now = groupChoice(number);
        const skip = new Set(now.skip);
        if (box.checked) skip.delete(key);
        else skip.add(key);
        review.edits.set(number, { keep: now.keep, skip });
        card.classList.toggle("unticked", !box.checked);
        updateCount();
      });
      card.classList.toggle("keeper", kept);
      card.classList.toggle("unticked", !kept && choice.skip.has(key));
      card.append(
        el(
          "div",
          { className: "card-choice" },
          el("label", { className: "choice" }, radio, el("span", { text: "Keep" })),
          missing || kept
            ? el("span", { className: "choice muted", text: missing ? "no file" : "kept" })
            : el("label", { className: "choice" }, box, el("span", { text: "Move" })),
        ),
      );
    }
  }
}

async function propose() {
  review.edits.clear();
  review.plan = null;
  try {
    const { body } = await api("/api/review/plan", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(editsBody()),
    });
    review.plan = body;
  } catch (error) {
    reviewError(error);
    return;
  }
  review.form.hidden = review.plan.groups.length === 0;
  decorate();
  updateCount();
}

/** The groups of a page are shown: mark their keepers (a new threshold: a new proposal). */
async function reviewGroups(maxDistance) {
  if (review.config === null) {
    try {
      review.config = (await api("/api/review/config")).body;
    } catch (error) {
      reviewError(error);
      return;
    }
    review.apply.hidden = !review.config.apply;
    review.why.hidden = !review.config.why_not;
    review.why.textContent = review.config.why_not;
  }
  if (review.plan === null || review.maxDistance !== String(maxDistance)) {
    review.maxDistance = String(maxDistance);
    await propose();
  } else {
    decorate();
  }
}

/** The plan with the person's edits, as the server wrote it: its text is downloaded and sent
 * back to apply byte for byte (JSON.parse would round each file's mtime_ns, an integer past
 * 2^53, and the apply would then see every file as changed). */
async function editedPlan() {
  let response;
  try {
    response = await fetch("/api/review/plan", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(editsBody()),
    });
  } catch (e) {
    throw new ApiError(0, { title: "The imagesim web server cannot be reached.", message: String(e) });
  }
  const text = await response.text();
  if (!response.ok) {
    let detail = { title: `The server answered ${response.status}.` };
    try {
      detail = JSON.parse(text).error || detail;
    } catch (e) {
      // not JSON: the status says it
    }
    throw new ApiError(response.status, detail);
  }
  return { text, plan: JSON.parse(text) }; // `plan` only for counting
}

async function downloadPlan() {
  try {
    const { text } = await editedPlan();
    const blob = new Blob([text], { type: "application/json" });
    const link = el("a", { href: URL.createObjectURL(blob), download: "plan.json", hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    reviewError(error);
  }
}

async function applyPlan() {
  let plan, text;
  try {
    ({ plan, text } = await editedPlan());
  } catch (error) {
    reviewError(error);
    return;
  }
  const n = plan.groups.reduce((sum, g) => sum + g.members.filter((m) => m.action === "move").length, 0);
  document.getElementById("confirm-text").textContent =
    `${n} file${n === 1 ? "" : "s"} will move into the server's quarantine folder and ` +
    "leave the collection. The manifest you get afterwards puts them back (imagesim undo).";
  review.dialog.returnValue = "";
  review.dialog.showModal();
  const answer = await new Promise((resolve) =>
    review.dialog.addEventListener("close", () => resolve(review.dialog.returnValue), { once: true }),
  );
  if (answer !== "move") {
    review.apply.focus();
    return;
  }
  review.apply.disabled = true;
  try {
    const { body } = await api("/api/review/apply", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: text,
    });
    review.result.replaceChildren(
      el("h2", { text: `Moved ${body.moved.length} file${body.moved.length === 1 ? "" : "s"}` }),
      el(
        "p",
        { className: "note" },
        `${body.items_removed} items left the collection; ${body.skipped.length} skipped. `,
        el("a", { href: body.manifest_url, download: body.manifest }, "Download the manifest"),
        " to undo it with imagesim undo.",
      ),
    );
    review.result.hidden = false;
    review.result.focus();
    review.plan = null;
    load(review.maxDistance, 1); // the groups without the moved files
  } catch (error) {
    reviewError(error);
  } finally {
    review.apply.disabled = false;
  }
}

review.rule.addEventListener("change", () => propose());
review.download.addEventListener("click", downloadPlan);
review.apply.addEventListener("click", applyPlan);
