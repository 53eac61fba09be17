// The review queue: flagged decisions without a verdict, ordered (newest or
// riskiest first) and filtered (time, model version, reason) by the API and
// paged by its cursor: what is shown is always the API's list, page by page.

import { api, query } from "./api.js";
import { h } from "./dom.js";
import { amountOf, reasonText, risk, utc } from "./format.js";

export const queue = {
  alerts: [],
  cursor: null,
  loaded: false,
  filters: { since: "", until: "", model_version: "", reason: "", order: "newest", limit: "50" },
  selected: 0,

  // Reasons seen so far: suggestions for the reason filter.
  reasons: new Set(),

  visible() {
    return this.alerts;
  },

  async load({ more = false } = {}) {
    const f = this.filters;
    const page = await api(`/v1/alerts${query({
      since: toIso(f.since), until: toIso(f.until), model_version: f.model_version,
      reason: f.reason.trim(), order: f.order, limit: f.limit, cursor: more ? this.cursor : null,
    })}`);
    for (const a of page.alerts) for (const r of a.top_reasons ?? []) this.reasons.add(r.reason);
    this.alerts = more ? [...this.alerts, ...page.alerts] : page.alerts;
    this.cursor = page.next_cursor;
    this.loaded = true;
  },

  // Optimistic: a verdict takes the alert out at once; put back if refused.
  remove(id) {
    const at = this.alerts.findIndex((a) => a.transaction_id === id);
    return at < 0 ? null : { at, alert: this.alerts.splice(at, 1)[0] };
  },
  restore(taken) {
    if (taken && !this.alerts.some((a) => a.transaction_id === taken.alert.transaction_id)) {
      this.alerts.splice(taken.at, 0, taken.alert);
    }
  },

  // The neighbour of `id` in the shown order (step +1 next, -1 previous).
  neighbour(id, step) {
    const rows = this.visible();
    const at = rows.findIndex((a) => a.transaction_id === id);
    const next = at < 0 ? (step > 0 ? 0 : -1) : at + step;
    return rows[next]?.transaction_id ?? null;
  },
};

// datetime-local values are the analyst's local time.
function toIso(local) {
  if (!local) return "";
  const t = new Date(local);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString();
}

function field(id, label, control) {
  return h("p", { class: "field" }, h("label", { for: id }, label), control);
}

function filtersForm(ui) {
  const f = queue.filters;
  const reasons = [...queue.reasons].sort();
  const input = (id, type, value, extra = {}) => h("input", { id, name: id, type, value, ...extra });
  const select = (id, value, options) => h("select", { id, name: id },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
  const form = h("form", { class: "filters", id: "queue-filters", "aria-label": "Queue filters" },
    field("f-since", "From (your local time)", input("f-since", "datetime-local", f.since)),
    field("f-until", "Until", input("f-until", "datetime-local", f.until)),
    field("f-version", "Model version", input("f-version", "text", f.model_version, { size: 6 })),
    field("f-reason", "Reason", input("f-reason", "text", f.reason, { list: "f-reasons", size: 14 })),
    h("datalist", { id: "f-reasons" }, reasons.map((r) => h("option", { value: r }))),
    field("f-order", "Order", select("f-order", f.order,
      [["newest", "Newest first"], ["riskiest", "Riskiest first"]])),
    field("f-limit", "Page size", select("f-limit", f.limit, [["5", "5"], ["25", "25"], ["50", "50"], ["100", "100"]])),
    h("p", { class: "field" }, h("button", { type: "submit" }, "Apply")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    Object.assign(queue.filters, {
      since: data.get("f-since"), until: data.get("f-until"),
      model_version: String(data.get("f-version")).trim(), reason: String(data.get("f-reason")),
      order: data.get("f-order"), limit: data.get("f-limit"),
    });
    queue.selected = 0;
    await ui.guard(() => queue.load());
    ui.show();
  });
  return form;
}

function row(alert, index) {
  const id = alert.transaction_id;
  return h("tr", { dataset: { id: String(id) }, class: index === queue.selected ? "selected" : null },
    h("td", {}, utc(alert.decided_at)),
    h("td", {}, h("a", { href: `#/alert/${id}`, class: "open" }, String(id))),
    h("td", { class: "num" }, amountOf(alert)),
    h("td", { class: "num" }, risk(alert.risk)),
    h("td", {}, (alert.top_reasons ?? []).slice(0, 3).map(reasonText).join(", ") || "—"),
    h("td", {}, alert.model.version),
  );
}

export async function renderQueue(view, ui) {
  if (!queue.loaded) await ui.guard(() => queue.load());
  const rows = queue.visible();
  queue.selected = Math.min(queue.selected, Math.max(rows.length - 1, 0));
  const more = h("button", { type: "button", id: "load-more", disabled: !queue.cursor },
    queue.cursor ? "Load more" : "No more alerts");
  more.addEventListener("click", async () => {
    await ui.guard(() => queue.load({ more: true }));
    ui.show();
  });
  view.replaceChildren(
    h("h1", {}, "Review queue"),
    h("p", {}, "Flagged decisions without a verdict. Open one with Enter or a click; ",
      "j and k move through the list."),
    filtersForm(ui),
    rows.length === 0
      ? h("p", { id: "queue-empty" }, "No alert waits for a verdict with these filters.")
      : h("table", { id: "queue-table" },
        h("caption", {}, `${rows.length} alert${rows.length === 1 ? "" : "s"} shown, `
          + (queue.filters.order === "riskiest" ? "riskiest first" : "newest first")),
        h("thead", {}, h("tr", {},
          ["Time", "Transaction", "Amount", "Risk", "Top reasons", "Model version"].map(
            (c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.map(row))),
    h("p", {}, more),
  );
}

// j/k on the queue page: move the selection and its focus.
export function moveSelection(view, step) {
  const links = [...view.querySelectorAll("#queue-table a.open")];
  if (links.length === 0) return;
  // The first j or k selects the marked row; the next ones move.
  const move = links.includes(document.activeElement) ? step : 0;
  queue.selected = Math.max(0, Math.min(links.length - 1, queue.selected + move));
  view.querySelectorAll("#queue-table tr.selected").forEach((r) => r.classList.remove("selected"));
  const link = links[queue.selected];
  link.closest("tr").classList.add("selected");
  link.focus();
}
