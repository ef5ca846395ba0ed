"use strict";
// Shared by the pages: calling the API, showing its errors, building elements.

class ApiError extends Error {
  constructor(status, detail) {
    super(detail.message || detail.title || "Request failed");
    this.status = status;
    this.reason = detail.reason || "";
    this.title = detail.title || "The request failed.";
    this.detail = detail.message || "";
  }
}

/** fetch + JSON; an error answer (or no answer) throws an ApiError. */
async function api(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    throw new ApiError(0, {
      reason: "NETWORK",
      title: "The imagesim web server cannot be reached.",
      message: String(e.message || e),
    });
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (response.status === 401) {
    // This server needs an API key and the browser has none (or one since revoked).
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
  }
  if (!response.ok) {
    const detail = (body && body.error) || { title: `The server answered ${response.status}.` };
    throw new ApiError(response.status, detail);
  }
  return { status: response.status, body };
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

/** Words screen readers read as part of a link's name, not shown (.visually-hidden). */
function hiddenText(text) {
  return el("span", { className: "visually-hidden", text });
}

function showError(box, error) {
  box.replaceChildren(
    el("strong", { text: error.title || "Something went wrong." }),
    error.detail ? el("span", { className: "error-detail", text: error.detail }) : null,
  );
  box.hidden = false;
}

function clearError(box) {
  box.hidden = true;
  box.replaceChildren();
}

function formatBytes(n) {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(n % (1024 * 1024) ? 1 : 0)} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}

function formatDistance(d) {
  return Number(d).toFixed(4);
}

/** The last path component of a key, and what comes before it. */
function splitKey(key) {
  const cut = key.lastIndexOf("/");
  return cut < 0 ? ["", key] : [key.slice(0, cut + 1), key.slice(cut + 1)];
}

/** A file name that may wrap after _ or - (where a person would break it), not mid-word. */
function breakable(text) {
  const parts = text.split(/(?<=[_-])/);
  const fragment = document.createDocumentFragment();
  parts.forEach((part, i) => {
    if (i) fragment.append(document.createElement("wbr"));
    fragment.append(part);
  });
  return fragment;
}

/** A thumbnail that turns into a "no preview" box when the server has no picture. */
function thumbnail(src, alt) {
  const box = el("span", { className: "thumb" });
  const img = el("img", { src, alt: alt || "", loading: "lazy", decoding: "async" });
  img.addEventListener("error", () => {
    box.classList.add("missing");
    img.remove();
    box.append(el("span", { className: "missing-text", text: "no preview" }));
  });
  box.append(img);
  return box;
}

let limitsPromise = null;
function limits() {
  limitsPromise = limitsPromise || api("/api/limits").then((r) => r.body);
  return limitsPromise;
}

// A server with API keys: the pages offer to sign out (forget the key the browser keeps).
if (document.getElementById("signout")) {
  limits()
    .then((l) => {
      document.getElementById("signout").hidden = !l.api_keys;
    })
    .catch(() => {});
}
