// Sign in through the gateway: an API key or a JWT is exchanged for a session cookie (HttpOnly,
// SameSite=Strict); the credential itself is not kept by the page.

import { cfg, setCsrf } from "./api.js";
import { h, mount, notice, field } from "./dom.js";
import { session, showWho } from "./app.js";

export async function render(root, { query }) {
  if (cfg().mode !== "gateway") {
    mount(root, notice("This page talks to the server directly; there is nothing to sign in to.", "info"));
    return;
  }
  if (query.get("signout")) {
    await fetch("/ui/session", {
      method: "DELETE",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": cfg().csrf || "" },
    });
    Object.assign(session, { principal: null, role: null, paths: null });
    setCsrf(null);
    showWho();
  }
  const input = h("input", { type: "password", id: "credential", autocomplete: "off", size: 60, placeholder: "noetl_… or a JWT" });
  const message = h("div");
  const form = h(
    "form",
    { class: "card login", id: "login-form" },
    h("h2", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an API key (noetl token create) or a JWT from your identity provider."),
    field("API key or JWT", input),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch("/ui/session", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ credential: input.value.trim() }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const reason = (body.detail && body.detail.reason) || `HTTP ${response.status}`;
      mount(message, notice(`Sign-in refused: ${reason}`, "error"));
      return;
    }
    input.value = "";
    Object.assign(session, body);
    setCsrf(body.csrf);
    showWho();
    const next = query.get("next");
    location.hash = next && next.startsWith("#/") && !next.startsWith("#/login") ? next : "#/executions";
  });
  mount(root, form);
  input.focus();
}
