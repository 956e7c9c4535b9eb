// The single page: a hash router over the pages (executions, one execution, catalog, operations,
// sign-in). Each page module exports render(root, params) and may return a cleanup function
// (closing its event streams) that runs when the user navigates away.

import { cfg, loadConfig, setCsrf } from "./api.js";
import { h, mount, notice } from "./dom.js";
import * as executions from "./executions.js";
import * as execution from "./execution.js";
import * as catalog from "./catalog.js";
import * as operations from "./operations.js";
import * as login from "./login.js";

const ROUTES = [
  [/^#\/executions\/(\d+)$/, execution, (m) => ({ id: m[1] })],
  [/^#\/executions\/?$/, executions, () => ({})],
  [/^#\/catalog\/?$/, catalog, () => ({})],
  [/^#\/catalog\/(.+)$/, catalog, (m) => ({ path: decodeURIComponent(m[1]) })],
  [/^#\/operations\/?$/, operations, () => ({})],
  [/^#\/login/, login, () => ({})],
];

let cleanup = null;
export const session = { principal: null, role: null, paths: null };

function splitHash() {
  const [path, query] = (location.hash || "#/executions").split("?");
  return { path, query: new URLSearchParams(query || "") };
}

async function route() {
  if (cleanup) {
    try { cleanup(); } catch (err) { /* a page's cleanup must not block navigation */ }
    cleanup = null;
  }
  const root = document.getElementById("app");
  const { path, query } = splitHash();
  for (const [pattern, page, params] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    const section = path.split("/")[1];
    for (const link of document.querySelectorAll("[data-nav]")) {
      link.classList.toggle("active", link.dataset.nav === section);
    }
    try {
      const done = await page.render(root, { ...params(match), query });
      if (typeof done === "function") cleanup = done;
    } catch (err) {
      if (err && err.status === 401) return;
      mount(root, notice(`Could not load this page: ${err.message || err}`, "error"));
    }
    return;
  }
  location.hash = "#/executions";
}

export function showWho() {
  const who = document.getElementById("who");
  if (!session.principal) return mount(who);
  const out = [h("span", { class: "muted" }, `${session.principal} · ${session.role}`)];
  if (cfg().mode === "gateway") out.push(" ", h("a", { href: "#/login?signout=1", id: "signout" }, "Sign out"));
  mount(who, out);
}

async function start() {
  await loadConfig();
  if (cfg().mode === "gateway") {
    const response = await fetch("/ui/session", { credentials: "same-origin" });
    if (response.ok) {
      const found = await response.json();
      Object.assign(session, found);
      setCsrf(found.csrf);
    } else if (!location.hash.startsWith("#/login")) {
      location.hash = "#/login?next=" + encodeURIComponent(location.hash || "#/executions");
    }
  } else {
    Object.assign(session, { principal: "local", role: "admin", paths: ["*"] });
  }
  showWho();
  window.addEventListener("hashchange", route);
  await route();
}

start();
