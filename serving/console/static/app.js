// The console's entry: sign-in, the hash routes (#/queue, #/alert/<id>,
// #/stats) and the keyboard shortcuts.

import { current, markVerdict, renderAlert } from "./alert.js";
import { ApiError, api, explain, session } from "./api.js";
import { moveSelection, queue, renderQueue } from "./queue.js";
import { renderStats } from "./stats.js";

const $ = (id) => document.getElementById(id);
const view = $("view");

const ui = {
  say(text) {
    $("status").textContent = text;
    $("error").textContent = "";
  },
  fail(text) {
    $("error").textContent = text;
  },
  // Runs an API call; a refusal becomes the error line (null returned),
  // and a key the API no longer knows ends the session.
  async guard(call) {
    try {
      return await call();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        signOut("The API no longer accepts this key. Sign in again.");
      } else {
        ui.fail(explain(error));
      }
      return null;
    }
  },
  show: () => route(),
  async step(direction) {
    if (!queue.loaded) await ui.guard(() => queue.load());
    const next = queue.neighbour(current.id, direction);
    if (next === null) ui.say(direction > 0 ? "No next alert in the queue." : "No previous alert in the queue.");
    else location.hash = `#/alert/${next}`;
  },
};

function signedIn(yes) {
  $("login").hidden = yes;
  $("nav").hidden = !yes;
  $("keys").hidden = !yes;
  view.hidden = !yes;
  $("who-name").textContent = yes ? session.analyst() : "";
}

function signOut(message) {
  session.end();
  queue.alerts = [];
  queue.reasons.clear();
  queue.loaded = false;
  current.id = null;
  current.history = null;
  view.replaceChildren();
  signedIn(false);
  $("status").textContent = "";
  $("error").textContent = message ?? "";
  $("login-key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const key = $("login-key").value.trim();
  const analyst = $("login-analyst").value.trim();
  if (!key || !analyst) {
    ui.fail("Enter an API key and your name.");
    return;
  }
  try {
    // The queue is what the console reads first: a key that cannot read it
    // (no review scope) gets no further.
    await api("/v1/alerts?limit=1", { key });
  } catch (error) {
    ui.fail(error instanceof ApiError && error.status === 403
      ? "This key cannot read the review queue: the console needs a key with the review scope "
        + "(and the feedback scope to record verdicts)."
      : error instanceof ApiError && error.status === 401
        ? "The API did not recognise this key."
        : explain(error));
    return;
  }
  session.start(key, analyst);
  $("login-key").value = "";
  ui.say(`Signed in as ${analyst}.`);
  signedIn(true);
  if (location.hash.startsWith("#/")) await route();
  else location.hash = "#/queue";
  $("main").focus();
}

async function route() {
  if (!session.key()) {
    signedIn(false);
    return;
  }
  signedIn(true);
  const hash = location.hash;
  const alertMatch = /^#\/alert\/(\d+)$/.exec(hash);
  for (const [id, active] of [["nav-queue", !alertMatch && hash !== "#/stats"], ["nav-stats", hash === "#/stats"]]) {
    if (active) $(id).setAttribute("aria-current", "page");
    else $(id).removeAttribute("aria-current");
  }
  if (alertMatch) await renderAlert(view, ui, alertMatch[1].replace(/^0+(?=\d)/, ""));
  else if (hash === "#/stats") await renderStats(view, ui);
  else await renderQueue(view, ui);
}

function typing(target) {
  return target instanceof HTMLElement
    && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function onKey(event) {
  if (!session.key() || event.ctrlKey || event.metaKey || event.altKey) return;
  if (typing(event.target)) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const onAlert = /^#\/alert\/\d+$/.test(location.hash);
  const onQueue = !onAlert && location.hash !== "#/stats";
  const actions = {
    j: () => (onAlert ? ui.step(1) : onQueue && moveSelection(view, 1)),
    k: () => (onAlert ? ui.step(-1) : onQueue && moveSelection(view, -1)),
    f: () => onAlert && markVerdict("fraud", ui),
    g: () => onAlert && markVerdict("genuine", ui),
    n: () => onAlert && $("verdict-note")?.focus(),
    q: () => { location.hash = "#/queue"; },
  };
  const action = actions[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
}

$("login-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", async () => {
  $("status").textContent = "";
  $("error").textContent = "";
  await route();
  // A new page: keyboard and screen reader users start at its heading.
  const heading = view.querySelector("h1");
  if (heading && !view.hidden) {
    heading.tabIndex = -1;
    heading.focus();
  }
});
document.addEventListener("keydown", onKey);
route();
