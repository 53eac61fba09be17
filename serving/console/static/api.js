// The /v1 API as the console calls it: the key from this tab's session
// storage in the X-API-Key header (never a URL or a cookie), JSON both ways,
// and the API's own error message when it refuses.

const KEY = "gendetect.console.key";
const ANALYST = "gendetect.console.analyst";

export const session = {
  key: () => sessionStorage.getItem(KEY),
  analyst: () => sessionStorage.getItem(ANALYST) ?? "",
  start(key, analyst) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(ANALYST, analyst);
  },
  end() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ANALYST);
  },
};

// Transaction ids are 64-bit: past 2^53 a JS number would round them to
// another transaction's id. The console keeps every id as the digits the
// API sent (the reviver's source text) and sends them back as such.
function exactIds(key, value, context) {
  if (key === "transaction_id" && typeof value === "number") {
    return context?.source ?? String(value);
  }
  return value;
}

export function idJson(id) {
  return JSON.rawJSON ? JSON.rawJSON(id) : Number(id);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, { method = "GET", body, key } = {}) {
  const headers = { "X-API-Key": key ?? session.key() ?? "", Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "unreachable", "the API could not be reached");
  }
  let data = null;
  try {
    data = JSON.parse(await response.text(), exactIds);
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(response.status, err.code ?? `http_${response.status}`,
      err.message ?? response.statusText);
  }
  return data;
}

// Query string from the set values only.
export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") q.set(name, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

// What a refusal means to an analyst.
export function explain(error) {
  if (!(error instanceof ApiError)) return String(error);
  if (error.status === 401) return "The API did not recognise this key. Sign in again.";
  if (error.status === 403) return `This key is not allowed to do this (${error.message}).`;
  if (error.status === 0) return "The API could not be reached. Check the connection and retry.";
  return `The API refused: ${error.message} (HTTP ${error.status}).`;
}
