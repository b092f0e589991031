// The page's router (#/dags, #/dags/ID, #/dags/ID/runs/RUN, .../tasks/TASK/logs/TRY,
// #/queues, #/pools, #/signin) and signing in and out.
import { api, setToken, token } from "./api.js";
import { fill, h, notice } from "./dom.js";
import { dagsPage } from "./dags.js";
import { dagPage } from "./grid.js";
import { runPage } from "./run.js";
import { logPage } from "./log.js";
import { queuesPage } from "./queues.js";
import { poolsPage } from "./pools.js";

const ROUTES = [
  [/^\/dags\/([^/]+)\/runs\/([^/]+)\/tasks\/([^/]+)\/logs\/(\d+)$/, (m) => [logPage, { dagId: m[1], runId: m[2], taskId: m[3], tryNumber: m[4] }]],
  [/^\/dags\/([^/]+)\/runs\/([^/]+)$/, (m) => [runPage, { dagId: m[1], runId: m[2] }]],
  [/^\/dags\/([^/]+)$/, (m) => [dagPage, { dagId: m[1] }]],
  [/^\/queues$/, () => [queuesPage, {}]],
  [/^\/pools$/, () => [poolsPage, {}]],
  [/^\/signin$/, () => [signInPage, {}]],
  [/^\/(dags)?$/, () => [dagsPage, {}]],
];

let stopPage = null;
let afterSignIn = "#/dags";

function signInPage(root) {
  const user = h("input", { id: "signin-user", autocomplete: "username", placeholder: "user", required: true });
  const password = h("input", { id: "signin-password", type: "password", autocomplete: "current-password", placeholder: "password", required: true });
  const form = h("form", { class: "signin", onsubmit: async (event) => {
    event.preventDefault();
    try {
      const session = await api("/crossdock/session", { method: "POST", body: { username: user.value, password: password.value } });
      setToken(session.token);
      notice("");
      await showUser();
      location.hash = afterSignIn;
    } catch (error) { notice(error.message); }
  } }, user, password, h("button", { class: "primary" }, "Sign in"));
  fill(root, h("h1", {}, "Sign in"), form);
  user.focus();
  return null;
}

async function showUser() {
  const who = document.getElementById("who");
  const session = await api("/crossdock/session");
  if (!session.auth_enabled) { fill(who, h("span", { class: "muted" }, "sign-in off (this machine only)")); return session; }
  if (!session.user) { fill(who, h("a", { href: "#/signin" }, "Sign in")); return session; }
  const out = h("button", { onclick: async () => {
    await api("/crossdock/session", { method: "DELETE" }).catch(() => null);
    setToken(null);
    await showUser();
    location.hash = "#/signin";
  } }, "Sign out");
  fill(who, `${session.user} (${session.role})`, out);
  return session;
}

function route() {
  const [path, search] = (location.hash.replace(/^#/, "") || "/dags").split("?");
  const query = new URLSearchParams(search || "");
  if (stopPage) stopPage();
  stopPage = null;
  notice("");
  const root = document.getElementById("page");
  for (const [pattern, make] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    const [page, params] = make(match.map((part, i) => (i ? decodeURIComponent(part) : part)));
    document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", path.startsWith("/" + a.dataset.nav)));
    stopPage = page(root, { ...params, query });
    return;
  }
  fill(root, h("p", {}, "No such page. ", h("a", { href: "#/dags" }, "Back to the DAGs")));
}

window.addEventListener("crossdock:signin", () => {
  if (location.hash !== "#/signin") { afterSignIn = location.hash || "#/dags"; setToken(null); location.hash = "#/signin"; }
});
window.addEventListener("hashchange", route);
showUser().then((session) => {
  if (session.auth_enabled && !session.user && !token()) { afterSignIn = location.hash || "#/dags"; location.hash = "#/signin"; }
  route();
}).catch((error) => { notice(error.message); route(); });
