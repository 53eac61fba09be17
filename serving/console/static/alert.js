// One alert: the decision, why it was flagged, where it came from (hashed
// entity ids), its verdict history, and the verdict buttons. A verdict shows
// at once (optimistic) and is taken back, with the API's reason, if the API
// refuses it.

import { api, explain, idJson, session } from "./api.js";
import { definitions, h } from "./dom.js";
import { featureText, plain, reasonText, risk, score, utc } from "./format.js";
import { queue } from "./queue.js";

export const current = { id: null, history: null, origin: null, busy: false };

async function fetchAlert(id) {
  const [history, origin] = await Promise.all([
    api(`/v1/decisions/${id}`),
    // The origin is a nicety: the alert still shows without it.
    api(`/v1/decisions/${id}/origin`).catch(() => null),
  ]);
  return { history, origin };
}

function historyTable(verdicts) {
  if (verdicts.length === 0) return h("p", { id: "no-verdicts" }, "No verdict yet.");
  return h("table", { id: "verdict-history" },
    h("caption", {}, "Verdict history, oldest first"),
    h("thead", {}, h("tr", {}, ["When", "Verdict", "Analyst", "Note", "Via"].map(
      (c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, verdicts.map((v) => h("tr", { class: v.pending ? "pending" : null },
      h("td", {}, v.pending ? "saving…" : utc(v.labelled_at)),
      h("td", { class: `label ${v.label}` }, v.label),
      h("td", { class: "analyst" }, v.analyst),
      h("td", { class: "note" }, v.note ?? ""),
      h("td", {}, v.source ?? "")))));
}

function section(title, ...body) {
  const id = `s-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...body);
}

function verdictForm(ui) {
  const note = h("textarea", { id: "verdict-note", rows: 2, maxlength: 1000 });
  const button = (label, key) => h("button", {
    type: "button", id: `mark-${label}`, class: `verdict ${label}`, "aria-keyshortcuts": key,
    onclick: () => markVerdict(label, ui),
  }, `Mark ${label} (${key})`);
  return h("div", { class: "verdict-form" },
    h("p", { class: "field" }, h("label", { for: "verdict-note" }, "Note (optional, kept with the verdict)"), note),
    h("p", {}, button("fraud", "f"), " ", button("genuine", "g")),
    h("p", { class: "hint" }, `Recorded as ${session.analyst()}. The same verdict twice changes nothing.`));
}

// A table of (name, value) rows; every value a Text node.
function factsTable(id, caption, pairs) {
  return h("table", { id },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Value"))),
    h("tbody", {}, pairs.map(([name, value]) => h("tr", {},
      h("th", { scope: "row" }, name), h("td", { class: "num" }, plain(value))))));
}

function recordFacts(d, entities) {
  const fields = Object.entries(d?.context?.record ?? {});
  return [
    d?.context
      ? (fields.length === 0
        ? h("p", {}, "The record has no non-personal field besides its id and time.")
        : factsTable("record-fields", "The record's non-personal fields, as sent", fields))
      : h("p", { id: "record-not-kept" }, "Stored before the audit kept the record's fields."),
    h("p", { class: "hint" }, "Ids, entities and fields the schema marks personal or "
      + "protected are never kept."),
    entities.length === 0 ? h("p", {}, "No entity ids stored.") : definitions(
      entities.map(([field, digest]) => [`${field} (keyed hash)`, h("code", {}, digest)])),
  ];
}

function behaviourFacts(context) {
  const features = Object.entries(context?.behaviour ?? {});
  if (!context) return h("p", {}, "Stored before the audit kept the behaviour features.");
  if (features.length === 0) return h("p", {}, "The model reads no behaviour features.");
  return factsTable("behaviour-features", "As the model got them (— marks a gap)", features);
}

function render(view, ui) {
  const { id, history, origin } = current;
  const d = history.decision;
  const latest = history.label;
  const entities = Object.entries(origin?.entities ?? {});
  view.replaceChildren(
    h("h1", {}, `Alert: transaction ${id}`),
    h("p", { class: "hint", id: "find-customer" },
      "Entity ids stay hashed, as in the audit. To find the customer, look up transaction ",
      h("strong", {}, String(id)), " in your own systems."),
    h("nav", { "aria-label": "Alerts", class: "pager" },
      h("button", { type: "button", id: "prev-alert", onclick: () => ui.step(-1) }, "Previous (k)"), " ",
      h("button", { type: "button", id: "next-alert", onclick: () => ui.step(1) }, "Next (j)"), " ",
      h("a", { href: "#/queue" }, "Back to the queue (q)")),
    section("Verdict",
      h("p", { id: "current-verdict" }, latest ? `Current verdict: ${latest}` : "No verdict yet."),
      verdictForm(ui)),
    d === null
      ? h("p", {}, "No stored decision for this transaction (the audit was off).")
      : section("Decision", definitions([
        ["Score", score(d.score)], ["Risk", risk(d.risk)], ["Threshold", score(d.threshold)],
        ["Flagged", d.is_fraud ? "yes" : "no"], ["Model", `${d.model.name} version ${d.model.version}`],
        ["Decided at", utc(d.decided_at)], ["Transaction time", utc(d.event_time)],
        ["Asked by key", origin?.key_name ?? "—"], ["Request id", origin?.request_id ?? "—"],
      ])),
    d === null ? null : section("Why it was flagged",
      h("h3", {}, "Top features"),
      h("ul", { id: "top-features" }, (d.top_features ?? []).map((f) => h("li", {}, featureText(f)))),
      h("h3", {}, "Top reasons"),
      h("ul", { id: "top-reasons" }, (d.top_reasons ?? []).map((r) => h("li", {}, reasonText(r))))),
    section("Record", ...recordFacts(d, entities)),
    d === null ? null : section("Behaviour features", behaviourFacts(d.context)),
    section("Verdict history", historyTable(history.verdicts)),
  );
}

export async function renderAlert(view, ui, id) {
  if (current.id !== id || current.history === null) {
    current.id = id;
    current.history = null;
    const got = await ui.guard(() => fetchAlert(id));
    if (!got) {
      view.replaceChildren(h("h1", {}, `Alert: transaction ${id}`),
        h("p", {}, h("a", { href: "#/queue" }, "Back to the queue")));
      return;
    }
    Object.assign(current, got);
  }
  render(view, ui);
}

export async function markVerdict(label, ui) {
  if (current.history === null || current.busy) return;
  const id = current.id;
  const noteField = document.getElementById("verdict-note");
  const note = noteField?.value.trim() ?? "";
  const analyst = session.analyst();
  const body = { transaction_id: idJson(id), label, analyst, ...(note ? { note } : {}) };
  // Optimistic: shown and out of the queue before the API answers.
  const pending = { label, analyst, note: note || null, pending: true, source: "feedback" };
  const before = { verdicts: current.history.verdicts, label: current.history.label };
  current.history = { ...current.history, verdicts: [...before.verdicts, pending], label };
  const taken = queue.remove(id);
  current.busy = true;
  ui.say(`Marked ${label}: saving…`);
  ui.show();
  let saved = false;
  try {
    const result = await api("/v1/feedback", { method: "POST", body });
    saved = true;
    const fresh = await api(`/v1/decisions/${id}`).catch(() => null);
    if (current.id === id && fresh) current.history = fresh;
    ui.say(result.duplicates > 0
      ? `Already marked ${label}: nothing changed. Press j for the next alert.`
      : `Saved: transaction ${id} marked ${label}. Press j for the next alert.`);
  } catch (error) {
    queue.restore(taken);
    if (current.id === id) current.history = { ...current.history, ...before };
    ui.fail(`The verdict was not saved: ${explain(error)}`);
  } finally {
    current.busy = false;
    if (current.id === id) {
      ui.show();
      // A refused verdict keeps its note for the retry.
      const field = document.getElementById("verdict-note");
      if (field && !saved) field.value = note;
    }
  }
}
