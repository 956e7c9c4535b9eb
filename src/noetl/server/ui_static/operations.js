// Operations: the queue by pool, priority and key; workers with pools, resources and heartbeats;
// stalled executions with the reason; schedules (pause/resume) and triggers; global resources;
// credentials (names, types, scopes - never values). Sections the principal may not read say so.

import { get, post } from "./api.js";
import { h, mount, notice, pretty, statusBadge } from "./dom.js";

function cell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return pretty(value);
  return String(value);
}

function tableOf(id, items, columns) {
  if (!items || !items.length) return h("p", { class: "muted" }, "None.");
  return h("table", { class: "grid", id },
    h("thead", {}, h("tr", {}, columns.map(([, label]) => h("th", {}, label)))),
    h("tbody", {}, items.map((item) => h("tr", {}, columns.map(([key, , render]) => h("td", {}, render ? render(item) : cell(item[key])))))));
}

async function section(title, id, load) {
  const box = h("section", { id }, h("h2", {}, title));
  try {
    box.append(await load());
  } catch (err) {
    box.append(notice(err.status === 403 ? `Not available to you: ${err.message}` : `Could not load: ${err.message}`, err.status === 403 ? "info" : "error"));
  }
  return box;
}

export async function render(root) {
  const sections = await Promise.all([
    section("Queue", "ops-queue", async () => {
      const q = await get("/queue");
      return h("div", {},
        tableOf("queue-pools", Object.entries(q.pools || {}).map(([pool, ready]) => ({ pool, ready })), [["pool", "Pool"], ["ready", "Ready"]]),
        h("h3", {}, "By pool, priority and key"),
        tableOf("queue-groups", q.groups, [["pool", "Pool"], ["priority", "Priority"], ["concurrency_key", "Key"], ["ready", "Ready"], ["in_flight", "In flight"], ["oldest_wait_seconds", "Oldest wait (s)"]]));
    }),
    section("Workers", "ops-workers", async () => {
      const w = await get("/worker/pools");
      return tableOf("workers", w.workers, [["name", "Name"], ["status", "Status", (x) => statusBadge(x.status)], ["pools", "Pools"], ["capacity", "Capacity"], ["meta", "Resources", (x) => cell((x.meta || {}).resources || x.meta)], ["hostname", "Host"], ["heartbeat_age", "Heartbeat (s ago)", (x) => (x.heartbeat_age == null ? "" : Number(x.heartbeat_age).toFixed(1))]]);
    }),
    section("Stalled and waiting executions", "ops-stalled", async () => {
      const page = await get("/executions/search?status=RUNNING&limit=200");
      const stalled = page.executions.filter((e) => (e.markers || []).some((m) => m.kind === "stall"));
      return tableOf("stalled", stalled, [["execution_id", "Execution", (x) => h("a", { href: `#/executions/${x.execution_id}` }, x.execution_id)], ["path", "Path"], ["markers", "Reason", (x) => x.markers.map((m) => m.text).join("; ")]]);
    }),
    section("Schedules", "ops-schedules", async () => {
      const data = await get("/schedules");
      const box = h("div");
      const refresh = async () => mount(box, scheduleTable((await get("/schedules")).schedules, refresh));
      mount(box, scheduleTable(data.schedules, refresh));
      return box;
    }),
    section("Triggers", "ops-triggers", async () => tableOf("triggers", (await get("/triggers")).triggers, [["name", "Name"], ["path", "Playbook"], ["enabled", "Enabled"], ["fired", "Fired"]])),
    section("Global resources", "ops-resources", async () => {
      const r = await get("/resources");
      return tableOf("resources", r.resources || r, [["name", "Name"], ["capacity", "Capacity"], ["held", "Held"]]);
    }),
    section("Credentials", "ops-credentials", async () => tableOf("credentials", (await get("/credentials")).credentials, [["name", "Name"], ["type", "Type"], ["description", "Description"], ["tags", "Tags / scopes"], ["updated_at", "Updated"]])),
  ]);
  mount(root, h("h1", {}, "Operations"), sections);
}

function scheduleTable(items, refresh) {
  return tableOf("schedules", items, [
    ["name", "Name"], ["path", "Playbook"], ["cron", "When", (x) => x.cron || `every ${x.interval_seconds} s`],
    ["next_run_at", "Next run"], ["runs", "Runs"], ["paused", "State", (x) => (x.paused ? "paused" : "active")],
    ["name", "", (x) => h("button", { class: "small", onclick: async () => { await post(`/schedules/${encodeURIComponent(x.name)}/${x.paused ? "resume" : "pause"}`); await refresh(); } }, x.paused ? "Resume" : "Pause")],
  ]);
}
