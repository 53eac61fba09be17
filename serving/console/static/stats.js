// "How the models are doing" for a period: small SVG charts drawn with DOM
// calls (no chart library, nothing fetched), each with a text summary for
// screen readers.

import { api, query } from "./api.js";
import { h, s } from "./dom.js";
import { duration, share, utc } from "./format.js";

const W = 560;
const period = { since: "", until: "", model_version: "" };

function toIso(local) {
  if (!local) return "";
  const t = new Date(local);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString();
}

function figure(id, title, summary, chart) {
  return h("figure", { id, class: "chart" },
    h("figcaption", {}, h("strong", {}, title), " ", h("span", { class: "summary" }, summary)),
    chart);
}

function frame(height, label, width = W) {
  return s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
}

// Alerts per day, stacked: reviewed (dark) under still open (light).
function perDay(days) {
  const total = days.reduce((n, d) => n + d.alerts, 0);
  const height = 170;
  const svg = frame(height, `Alerts per day: ${total} in the period`);
  const max = Math.max(1, ...days.map((d) => d.alerts));
  const band = (W - 40) / Math.max(days.length, 1);
  const scale = (height - 40) / max;
  svg.append(s("text", { x: 0, y: 12, class: "axis" }, String(max)),
    s("line", { x1: 36, x2: W, y1: height - 24, y2: height - 24, class: "base" }));
  days.forEach((d, i) => {
    const x = 40 + i * band + band * 0.15;
    const w = band * 0.7;
    const base = height - 24;
    const g = s("g", { class: "day", "data-day": d.day },
      s("title", {}, `${d.day}: ${d.alerts} alerts, ${d.reviewed} reviewed, ${d.open} open`),
      s("rect", { x, width: w, y: base - d.reviewed * scale, height: d.reviewed * scale, class: "reviewed" }),
      s("rect", { x, width: w, y: base - d.alerts * scale, height: d.open * scale, class: "open" }));
    if (days.length <= 31 && (days.length <= 10 || i % Math.ceil(days.length / 10) === 0)) {
      g.append(s("text", { x: x + w / 2, y: height - 8, class: "axis", "text-anchor": "middle" }, d.day.slice(5)));
    }
    svg.append(g);
  });
  return figure("chart-days", "Alerts per day", `${total} alerts; dark: reviewed, light: still open.`, svg);
}

// Share of reviewed alerts confirmed as fraud, one bar per model version.
function precision(versions) {
  const rowH = 30;
  const height = Math.max(1, versions.length) * rowH + 10;
  const width = W + 140;  // room for the counts beside the bars
  const svg = frame(height, "Share of reviewed alerts confirmed as fraud, per model version", width);
  versions.forEach((v, i) => {
    const y = 5 + i * rowH;
    const full = W - 320;
    const text = v.reviewed === 0
      ? `${v.alerts} alerts, none reviewed yet`
      : `${v.fraud} of ${v.reviewed} reviewed confirmed fraud (${share(v.precision)})`;
    svg.append(s("g", { class: "version", "data-version": v.model_version },
      s("text", { x: 0, y: y + 17, class: "label" }, `version ${v.model_version}`),
      s("rect", { x: 90, y: y + 4, width: full, height: 18, class: "track" }),
      s("rect", { x: 90, y: y + 4, width: full * (v.precision ?? 0), height: 18, class: "fraud" }),
      s("text", { x: 100 + full, y: y + 17, class: "value" }, text)));
  });
  if (versions.length === 0) svg.append(s("text", { x: 0, y: 20 }, "No alert in the period."));
  return figure("chart-precision", "Alert precision per model version",
    "Of the alerts an analyst reviewed, the share confirmed as fraud.", svg);
}

function waits(t) {
  const height = 150;
  const svg = frame(height, `Time from alert to verdict for ${t.reviewed} reviewed alerts`);
  const max = Math.max(1, ...t.buckets.map((b) => b.count));
  const band = W / t.buckets.length;
  t.buckets.forEach((b, i) => {
    const bar = (height - 50) * (b.count / max);
    const x = i * band + band * 0.2;
    svg.append(s("g", { class: "bucket" },
      s("rect", { x, width: band * 0.6, y: height - 30 - bar, height: bar, class: "reviewed" }),
      s("text", { x: x + band * 0.3, y: height - 34 - bar, "text-anchor": "middle", class: "value" }, String(b.count)),
      s("text", { x: x + band * 0.3, y: height - 10, "text-anchor": "middle", class: "axis" }, b.label)));
  });
  return figure("chart-waits", "Time from alert to verdict",
    `Median ${duration(t.median_seconds)}, 90% within ${duration(t.p90_seconds)} (${t.reviewed} reviewed).`, svg);
}

function backlog(b, days) {
  const height = 60;
  const svg = frame(height, `Backlog: ${b.open} alerts without a verdict`);
  const max = Math.max(1, ...days.map((d) => d.open));
  const band = W / Math.max(days.length, 1);
  days.forEach((d, i) => {
    const bar = (height - 10) * (d.open / max);
    svg.append(s("rect", { x: i * band + 1, width: Math.max(band - 2, 1), y: height - bar, height: bar, class: "open" },
      s("title", {}, `${d.day}: ${d.open} open`)));
  });
  return figure("chart-backlog", "Backlog",
    `${b.open} alert${b.open === 1 ? "" : "s"} of the period wait for a verdict`
    + (b.oldest_decided_at ? `; the oldest since ${utc(b.oldest_decided_at)}.` : "."), svg);
}

function periodForm(ui) {
  const input = (id, type, value) => h("input", { id, name: id, type, value });
  const form = h("form", { class: "filters", "aria-label": "Period" },
    h("p", { class: "field" }, h("label", { for: "p-since" }, "From (your local time; default: 7 days ago)"), input("p-since", "datetime-local", period.since)),
    h("p", { class: "field" }, h("label", { for: "p-until" }, "Until (default: now)"), input("p-until", "datetime-local", period.until)),
    h("p", { class: "field" }, h("label", { for: "p-version" }, "Model version"), input("p-version", "text", period.model_version)),
    h("p", { class: "field" }, h("button", { type: "submit" }, "Show")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    Object.assign(period, { since: data.get("p-since"), until: data.get("p-until"),
      model_version: String(data.get("p-version")).trim() });
    ui.show();
  });
  return form;
}

export async function renderStats(view, ui) {
  const stats = await ui.guard(() => api(`/v1/alerts/stats${query({
    since: toIso(period.since), until: toIso(period.until), model_version: period.model_version,
  })}`));
  view.replaceChildren(
    h("h1", {}, "How the models are doing"),
    periodForm(ui),
    stats === null ? h("p", {}, "No figures.") : h("div", { class: "charts" },
      h("p", {}, `From ${utc(stats.since)} until ${utc(stats.until)}.`),
      perDay(stats.days), precision(stats.versions), waits(stats.time_to_verdict),
      backlog(stats.backlog, stats.days)));
}
