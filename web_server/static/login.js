"use strict";
// The sign-in page: where to go afterwards, why the last attempt failed, and a warning when
// the browser would not keep the key (a Secure cookie needs HTTPS, or this very machine).

const query = new URLSearchParams(location.search);
document.getElementById("next").value = query.get("next") || "/";

const FAILURES = {
  key: ["That API key is not valid.", "Check it, or ask for a key with the read role."],
  role: [
    "Sign in with a read key.",
    "This key may change the collection: the page needs only read, and your browser would keep the key.",
  ],
};
const box = document.getElementById("error");
const failure = FAILURES[query.get("failed")];
const local = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);
if (location.protocol !== "https:" && !local) {
  showError(box, {
    title: "Signing in needs HTTPS.",
    detail:
      "Browsers keep the key only for a secure connection: open this page with https://, " +
      "and run imagesim-web with --tls-cert and --tls-key (or behind a TLS proxy).",
  });
} else if (failure) {
  showError(box, { title: failure[0], detail: failure[1] });
}
