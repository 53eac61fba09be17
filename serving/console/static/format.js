// How numbers, times and explanations read in the console.

const TWO = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const ABOUT = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 2 });
const SHARE = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 0 });
const RISK = new Intl.NumberFormat("en-US", { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
const SCORE = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 4 });
const VALUE = new Intl.NumberFormat("en-US", { maximumFractionDigits: 4 });

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

export const risk = (v) => (isNumber(v) ? RISK.format(v) : "—");
export const score = (v) => (isNumber(v) ? SCORE.format(v) : "—");
export const share = (v) => (isNumber(v) ? SHARE.format(v) : "—");
export const money = (v) => (isNumber(v) ? TWO.format(v) : "—");

function observed(v) {
  if (isNumber(v)) return TWO.format(v);
  return v === undefined || v === null ? null : String(v);
}

// A top feature: "amount 1,250.00, expected about 48" when the model says
// what it expected; its value and share of the explanation otherwise.
export function featureText(f) {
  const value = observed(f.value);
  if (f.expected !== undefined && f.expected !== null) {
    const expected = isNumber(f.expected) ? ABOUT.format(f.expected) : String(f.expected);
    return `${f.feature} ${value ?? "(not kept)"}, expected about ${expected}`;
  }
  const part = `${share(f.contribution)} of the explanation`;
  return value === null ? `${f.feature} (${part})` : `${f.feature} ${value} (${part})`;
}

export const reasonText = (r) => `${r.reason} (${share(r.contribution)})`;

// The amount of an alert: the record's own field as the audit keeps it;
// for decisions stored before the audit kept it, a top feature's observed
// value where one carries it (a log-derived input reports the amount's units).
const AMOUNT_FEATURES = new Set(["amount", "log_amount"]);

export function amountOf(decision) {
  const kept = decision.context?.record?.amount;
  if (isNumber(kept)) return TWO.format(kept);
  const f = (decision.top_features ?? []).find((x) => AMOUNT_FEATURES.has(x.feature));
  return f && isNumber(f.value) ? TWO.format(f.value) : "—";
}

// A record field or behaviour feature as kept in the audit (numbers, yes/no, text).
export function plain(v) {
  if (isNumber(v)) return VALUE.format(v);
  if (typeof v === "boolean") return v ? "yes" : "no";
  return v === undefined || v === null ? "—" : String(v);
}

// ISO times from the API are UTC: shown as such, to the second.
export function utc(iso) {
  if (!iso) return "—";
  return `${iso.replace("T", " ").slice(0, 19)} UTC`;
}

export function duration(seconds) {
  if (!isNumber(seconds)) return "—";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}
