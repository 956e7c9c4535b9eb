// The API client: the same calls whether the page came from the server (/api) or from the
// gateway (/noetl, with the session cookie and a CSRF token on every action).

let config = null;

export class ApiError extends Error {
  constructor(status, reason, body) {
    super(reason);
    this.status = status;
    this.body = body;
  }
}

export async function loadConfig() {
  const response = await fetch("/ui/config.json", { credentials: "same-origin", cache: "no-store" });
  config = await response.json();
  return config;
}

export function cfg() {
  return config || { api: "/api", mode: "server" };
}

export function setCsrf(token) {
  config = { ...cfg(), csrf: token };
}

function reasonOf(body, status) {
  const detail = body && body.detail;
  if (detail && typeof detail === "object" && detail.reason) return detail.reason;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  return `HTTP ${status}`;
}

export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && cfg().csrf) headers["X-CSRF-Token"] = cfg().csrf;
  const response = await fetch(cfg().api + path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch (err) {
    parsed = { detail: text };
  }
  if (!response.ok) {
    if (response.status === 401 && cfg().mode === "gateway" && !location.hash.startsWith("#/login")) {
      location.hash = "#/login?next=" + encodeURIComponent(location.hash);
    }
    throw new ApiError(response.status, reasonOf(parsed, response.status), parsed);
  }
  return parsed;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body === undefined ? {} : body);

export function stream(path) {
  return new EventSource(cfg().api + path, { withCredentials: true });
}

export function qs(params) {
  const out = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => out.append(key, v));
    else out.append(key, value);
  }
  const text = out.toString();
  return text ? "?" + text : "";
}
