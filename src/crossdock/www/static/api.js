// Calls to crossdock's REST API with the signed-in user's token in a header (never a cookie).
export const TOKEN_KEY = "crossdock.token";
export const PAGE = 1000;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value === undefined || value === null) continue;
    for (const one of Array.isArray(value) ? value : [value]) search.append(name, String(one));
  }
  const text = search.toString();
  return text ? "?" + text : "";
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export async function api(path, { method = "GET", body, params } = {}) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch("/api/v1" + path + query(params), {
    method, headers, credentials: "omit", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("crossdock:signin"));
    throw new ApiError(response.status, (data && data.detail) || response.statusText);
  }
  return data;
}

// Every entry of a paged listing (pages of PAGE until total_entries are read).
export async function fetchAll(path, key, params = {}) {
  const entries = [];
  for (;;) {
    const page = await api(path, { params: { ...params, limit: PAGE, offset: entries.length } });
    entries.push(...page[key]);
    if (!page[key].length || entries.length >= page.total_entries) return entries;
  }
}

export const enc = encodeURIComponent;
