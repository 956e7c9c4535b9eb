// The executions list: server-side filters (status, path prefix, time range, free text), keyset
// paging, live updates from the change stream, warning and stall markers, bulk cancel and re-run.

import { get, post, qs, stream } from "./api.js";
import { h, mount, notice, statusBadge, fmtTime, fmtDuration, duration, field } from "./dom.js";
import { session } from "./app.js";

const STATUSES = ["RUNNING", "COMPLETED", "FAILED", "CANCELLED"];
const PAGE = 50;

function filtersFrom(query) {
  return {
    status: query.getAll("status"),
    path_prefix: query.get("path_prefix") || "",
    since: query.get("since") || "",
    until: query.get("until") || "",
    q: query.get("q") || "",
    cursor: query.get("cursor") || "",
    prev: query.getAll("prev"),
  };
}

function hashFor(filters) {
  const params = { status: filters.status, path_prefix: filters.path_prefix, since: filters.since, until: filters.until, q: filters.q, cursor: filters.cursor, prev: filters.prev };
  return "#/executions" + qs(params);
}

function toIso(local) {
  if (!local) return "";
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

function markerList(markers) {
  return (markers || []).map((m) => h("span", { class: `marker ${m.kind}`, title: m.text }, m.kind === "stall" ? "⏸ " + m.text : "⚠ " + m.text));
}

function row(item, selected) {
  const box = h("input", { type: "checkbox", class: "pick", "data-id": item.execution_id, "aria-label": `select ${item.execution_id}`, checked: selected.has(item.execution_id) });
  box.addEventListener("change", () => (box.checked ? selected.add(item.execution_id) : selected.delete(item.execution_id)));
  return h(
    "tr",
    { "data-id": item.execution_id, "data-status": item.status },
    h("td", {}, box),
    h("td", {}, h("a", { href: `#/executions/${item.execution_id}`, class: "mono" }, item.execution_id)),
    h("td", { class: "path" }, item.path),
    h("td", { class: "status" }, statusBadge(item.status)),
    h("td", { class: "markers" }, markerList(item.markers)),
    h("td", {}, fmtTime(item.created_at)),
    h("td", {}, fmtDuration(duration(item.created_at, item.completed_at))),
    h("td", {}, item.parent_execution_id ? h("a", { href: `#/executions/${item.parent_execution_id}`, class: "mono" }, "↑ " + item.parent_execution_id) : ""),
  );
}

export async function render(root, { query }) {
  const filters = filtersFrom(query);
  const selected = new Set();
  const statusBoxes = STATUSES.map((st) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "status", value: st, checked: filters.status.includes(st) }), st));
  const prefix = h("input", { name: "path_prefix", value: filters.path_prefix, placeholder: "e.g. finance/", size: 16 });
  const since = h("input", { name: "since", type: "datetime-local", value: filters.since ? filters.since.slice(0, 16) : "" });
  const until = h("input", { name: "until", type: "datetime-local", value: filters.until ? filters.until.slice(0, 16) : "" });
  const text = h("input", { name: "q", value: filters.q, placeholder: "id, path or error text", size: 22 });
  const form = h("form", { class: "filters", id: "filters" },
    h("div", { class: "statuses" }, statusBoxes),
    field("Path prefix", prefix), field("From", since), field("To", until), field("Search", text),
    h("button", { type: "submit", class: "primary" }, "Apply"),
    h("a", { href: "#/executions", class: "button" }, "Reset"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = hashFor({
      status: statusBoxes.map((l) => l.firstChild).filter((b) => b.checked).map((b) => b.value),
      path_prefix: prefix.value.trim(), since: since.value, until: until.value, q: text.value.trim(), cursor: "", prev: [],
    });
  });

  const message = h("div", { id: "bulk-message" });
  const banner = h("div", { id: "new-banner" });
  const body = h("tbody", { id: "executions-body" });
  const canAct = session.role !== "viewer";
  const bulk = h("div", { class: "bulk", hidden: !canAct },
    h("button", { id: "bulk-cancel", onclick: () => bulkAction("cancel") }, "Cancel selected"),
    h("button", { id: "bulk-rerun", onclick: () => bulkAction("rerun") }, "Re-run selected"),
    message);
  const pager = h("div", { class: "pager" });
  const table = h("table", { class: "grid", id: "executions" },
    h("thead", {}, h("tr", {},
      h("th", {}, h("input", { type: "checkbox", id: "pick-all", "aria-label": "select all", onchange: (e) => pickAll(e.target.checked) })),
      h("th", {}, "Execution"), h("th", {}, "Path"), h("th", {}, "Status"), h("th", {}, "Markers"),
      h("th", {}, "Started"), h("th", {}, "Duration"), h("th", {}, "Parent"))),
    body);
  mount(root, h("h1", {}, "Executions"), form, bulk, banner, table, pager);

  function pickAll(on) {
    for (const box of body.querySelectorAll("input.pick")) {
      box.checked = on;
      on ? selected.add(box.dataset.id) : selected.delete(box.dataset.id);
    }
  }

  async function bulkAction(kind) {
    const ids = [...selected];
    if (!ids.length) return mount(message, notice("Select executions first.", "info"));
    const results = await Promise.allSettled(
      ids.map((id) => (kind === "cancel" ? post(`/executions/${id}/cancel`, { reason: "cancelled from the UI" }) : post(`/executions/${id}/rerun`, {}))),
    );
    const failed = results.map((r, i) => [r, ids[i]]).filter(([r]) => r.status === "rejected");
    const verb = kind === "cancel" ? "cancelled" : "re-run";
    const lines = [`${ids.length - failed.length} of ${ids.length} ${verb}.`];
    for (const [r, id] of failed) lines.push(` ${id}: ${r.reason.message}`);
    mount(message, notice(lines.join(""), failed.length ? "error" : "ok"));
    if (kind === "rerun") setTimeout(() => load(), 300);
  }

  const params = {
    status: filters.status, path_prefix: filters.path_prefix, since: toIso(filters.since), until: toIso(filters.until),
    q: filters.q, cursor: filters.cursor, limit: PAGE,
  };
  let shown = new Map();
  async function load() {
    const page = await get("/executions/search" + qs(params));
    shown = new Map(page.executions.map((item) => [item.execution_id, item]));
    mount(body, page.executions.length ? page.executions.map((item) => row(item, selected)) : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No executions match.")));
    const links = [];
    if (filters.cursor) {
      const prev = [...filters.prev];
      const back = prev.pop() || "";
      links.push(h("a", { href: hashFor({ ...filters, cursor: back, prev }), class: "button", id: "prev-page" }, "← Newer"));
      links.push(h("a", { href: hashFor({ ...filters, cursor: "", prev: [] }), class: "button" }, "Newest"));
    }
    if (page.next_cursor) {
      links.push(h("a", { href: hashFor({ ...filters, cursor: page.next_cursor, prev: [...filters.prev, filters.cursor] }), class: "button", id: "next-page" }, "Older →"));
    }
    mount(pager, links);
  }
  await load();

  // Live: rows on screen change in place; new executions appear on the first page.
  let fresh = 0;
  const changes = stream("/executions/changes" + qs({ path_prefix: filters.path_prefix }));
  changes.addEventListener("changes", (event) => {
    for (const item of JSON.parse(event.data)) {
      const current = shown.get(item.execution_id);
      if (current) {
        const merged = { ...current, ...item, markers: item.status === "RUNNING" ? current.markers : (current.markers || []).filter((m) => m.kind === "warning") };
        shown.set(item.execution_id, merged);
        const old = body.querySelector(`tr[data-id="${CSS.escape(item.execution_id)}"]`);
        if (old) old.replaceWith(row(merged, selected));
      } else if (!filters.cursor && BigInt(item.execution_id) > maxShown()) {
        const plain = !filters.q && !filters.since && !filters.until;
        if (plain && (!filters.status.length || filters.status.includes(item.status))) {
          shown.set(item.execution_id, { ...item, markers: [] });
          const empty = body.querySelector("td[colspan]");
          if (empty) empty.parentElement.remove();
          body.prepend(row(item, selected));
        } else {
          fresh += 1;
          mount(banner, h("a", { href: "#", class: "notice info", onclick: (e) => { e.preventDefault(); fresh = 0; mount(banner); load(); } }, `${fresh} new execution(s) — refresh`));
        }
      }
    }
  });
  function maxShown() {
    let max = 0n;
    for (const id of shown.keys()) if (BigInt(id) > max) max = BigInt(id);
    return max;
  }
  return () => changes.close();
}
