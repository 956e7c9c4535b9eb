// One execution: header and actions (cancel, re-run, re-run from a step), the graph coloured by
// step state, a timeline of steps, iterations and attempts, the step detail (definition, results,
// errors - all as text), the event table. A snapshot loads once; the event stream keeps it live.

import { get, post, qs, stream } from "./api.js";
import { h, mount, notice, pre, statusBadge, fmtTime, fmtDuration, duration, field } from "./dom.js";
import { drawGraph } from "./graph.js";
import { drawTimeline } from "./timeline.js";
import { session } from "./app.js";

const EVENT_ROWS = 500;
const TYPES = ["playbook.initialized", "step.enter", "command.issued", "command.started", "call.done", "call.error", "step.exit", "command.completed", "command.failed", "command.cancelled", "step.skipped", "ctx.updated", "loop.done", "template.warning", "next.evaluated", "step.failed", "execution.cancel_requested", "playbook.completed", "playbook.failed", "playbook.cancelled"];
const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

function emptyCounts() {
  return { runs: 0, issued: 0, started: 0, completed: 0, failed: 0, cancelled: 0, errors: 0, skipped: 0, step_failed: 0, loops_done: 0, exits: 0, entered_at_event: 0, closed_at_event: 0, exit_at_event: 0, closing: null, loop_size: null };
}

export function applyEvent(counts, e) {
  if (!e.step) return;
  const c = counts[e.step] || (counts[e.step] = emptyCounts());
  const d = e.data || {};
  switch (e.event_type) {
    case "step.enter":
      c.runs += 1; c.entered_at_event = e.event_id;
      if (d.loop && Array.isArray(d.loop.items)) c.loop_size = d.loop.items.length;
      else if (d.loop_size != null) c.loop_size = d.loop_size;
      break;
    case "command.issued": c.issued += 1; break;
    case "command.started": c.started += 1; break;
    case "command.completed": c.completed += 1; break;
    case "command.failed": c.failed += 1; break;
    case "command.cancelled": c.cancelled += 1; break;
    case "call.error": c.errors += 1; break;
    case "step.skipped": c.skipped += 1; c.closed_at_event = e.event_id; c.closing = "step.skipped:"; break;
    case "step.failed": c.step_failed += 1; c.closed_at_event = e.event_id; c.closing = "step.failed:"; break;
    case "loop.done": c.loops_done += 1; c.closed_at_event = e.event_id; c.closing = "loop.done:" + (d.status || ""); break;
    case "step.exit":
      if (d.index === undefined || d.index === null) { c.exit_at_event = e.event_id; c.closing = "step.exit:" + (d.status || ""); }
      break;
    default: break;
  }
}

function link(id, text) {
  return h("a", { href: `#/executions/${id}`, class: "mono" }, text || id);
}

export async function render(root, { id }) {
  const snap = await get(`/executions/${id}/snapshot`);
  const ex = snap.execution;
  const counts = snap.steps;
  const steps = snap.graph.nodes.map((n) => n.id);
  let status = ex.status;

  const statusSlot = h("span", { id: "exec-status" }, statusBadge(status));
  const message = h("div", { id: "action-message" });
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "Playbook"), h("dd", {}, h("a", { href: `#/catalog/${encodeURIComponent(ex.path)}` }, ex.path), snap.version != null ? ` v${snap.version}` : ""),
    h("dt", {}, "Started"), h("dd", {}, fmtTime(ex.created_at)),
    h("dt", {}, "Duration"), h("dd", { id: "exec-duration" }, fmtDuration(duration(ex.created_at, ex.completed_at))),
    ex.parent_execution_id ? [h("dt", {}, "Parent"), h("dd", {}, link(ex.parent_execution_id, "↑ " + ex.parent_execution_id))] : null,
    snap.rerun_of ? [h("dt", {}, "Re-run of"), h("dd", {}, link(snap.rerun_of))] : null,
    snap.resume ? [h("dt", {}, "Started from"), h("dd", {}, `step ${snap.resume.from_step} (results carried over: ${snap.resume.carried.join(", ") || "none"})`)] : null,
    ex.cancel_reason ? [h("dt", {}, "Cancel reason"), h("dd", {}, ex.cancel_reason)] : null,
  );
  const errorBox = h("div", { id: "exec-error" }, ex.error ? [h("h3", {}, "Error"), errorView(ex.error)] : null);

  const canAct = session.role !== "viewer";
  const cancelBtn = h("button", { id: "cancel", class: "danger", disabled: TERMINAL.has(status) || !canAct, title: canAct ? null : "viewers may not cancel" }, "Cancel");
  cancelBtn.addEventListener("click", async () => {
    try {
      await post(`/executions/${id}/cancel`, { reason: "cancelled from the UI" });
      mount(message, notice("Cancellation requested.", "ok"));
    } catch (err) {
      mount(message, notice(`Cancel refused: ${err.message}`, "error"));
    }
  });
  const rerunBtn = h("button", { id: "rerun", disabled: !canAct }, "Re-run with the same inputs");
  rerunBtn.addEventListener("click", () => rerun(null));
  const stepPick = h("select", { id: "rerun-step" }, steps.map((st) => h("option", { value: st }, st)));
  const rerunFromBtn = h("button", { id: "rerun-from", disabled: !canAct }, "Re-run from step");
  rerunFromBtn.addEventListener("click", () => rerun(stepPick.value));
  async function rerun(fromStep) {
    try {
      const started = await post(`/executions/${id}/rerun`, fromStep ? { from_step: fromStep } : {});
      location.hash = `#/executions/${started.execution_id}`;
    } catch (err) {
      mount(message, notice(`Re-run refused: ${err.message}`, "error"));
    }
  }
  const actions = h("div", { class: "actions" }, cancelBtn, rerunBtn, h("span", { class: "sep" }), stepPick, rerunFromBtn,
    h("p", { class: "muted small" }, "Re-run from a step starts a new execution of the same playbook version with the same inputs at that step. The steps before it are not run again: their results and the variables, as they stood when this execution first entered that step, are carried over."));

  const stalled = snap.stalled.length
    ? h("div", { class: "notice stall", id: "stalled" }, h("strong", {}, "Stalled: "), snap.stalled.map((c) => h("div", {}, `${c.step} (${c.pool}) waiting ${c.waiting_seconds} s: ${c.reasons.join("; ")}`)))
    : null;
  const children = snap.children.length
    ? h("section", { id: "children" }, h("h3", {}, "Sub-playbook executions"),
        h("table", { class: "grid" }, h("tbody", {}, snap.children.map((c) => h("tr", {}, h("td", {}, link(c.execution_id)), h("td", {}, c.path), h("td", {}, statusBadge(c.status)))))))
    : null;

  const graphBox = h("div", { class: "graph-box", id: "graph-box" });
  const stepBox = h("section", { id: "step-detail", class: "step-detail" }, h("p", { class: "muted" }, "Select a step in the graph to see its input, results and errors."));
  const timelineBox = h("div", { class: "timeline-box", id: "timeline-box" }, h("p", { class: "muted" }, "Loading the timeline…"));

  // -- event table ---------------------------------------------------------------------------
  const typeSel = h("select", { id: "ev-type" }, h("option", { value: "" }, "all types"), TYPES.map((t) => h("option", { value: t }, t)));
  const stepSel = h("select", { id: "ev-step" }, h("option", { value: "" }, "all steps"), steps.map((st) => h("option", { value: st }, st)));
  const textIn = h("input", { id: "ev-text", placeholder: "text in data", size: 18 });
  const evBody = h("tbody", { id: "events-body" });
  const more = h("button", { id: "ev-more" }, "Load older");
  let nextBefore = null;
  function evRow(e) {
    const data = e.data || {};
    const cell = h("td", { class: "data" }, h("details", {}, h("summary", {}, summaryOf(e)), pre(data)));
    return h("tr", { "data-event": e.event_id, "data-type": e.event_type },
      h("td", { class: "mono" }, e.event_id), h("td", {}, fmtTime(e.timestamp)), h("td", {}, e.event_type), h("td", {}, e.step || ""), h("td", { class: "mono" }, e.command_id || ""), cell);
  }
  function matches(e) {
    if (typeSel.value && e.event_type !== typeSel.value) return false;
    if (stepSel.value && e.step !== stepSel.value) return false;
    if (textIn.value && !JSON.stringify(e.data || {}).toLowerCase().includes(textIn.value.toLowerCase())) return false;
    return true;
  }
  async function loadEvents(older) {
    const params = { event_type: typeSel.value, step: stepSel.value, q: textIn.value, limit: 200, before: older ? nextBefore : "" };
    const page = await get(`/executions/${id}/log` + qs(params));
    if (!older) mount(evBody);
    for (const e of page.events) evBody.append(evRow(e));
    nextBefore = page.next_before;
    more.disabled = !nextBefore;
  }
  more.addEventListener("click", () => loadEvents(true));
  for (const input of [typeSel, stepSel]) input.addEventListener("change", () => loadEvents(false));
  textIn.addEventListener("change", () => loadEvents(false));
  const eventsSection = h("section", { id: "events" }, h("h2", {}, "Events"),
    h("div", { class: "filters" }, field("Type", typeSel), field("Step", stepSel), field("Text", textIn)),
    h("table", { class: "grid events" }, h("thead", {}, h("tr", {}, ["#", "Time", "Type", "Step", "Command", "Data"].map((t) => h("th", {}, t)))), evBody),
    more);

  mount(root,
    h("div", { class: "title" }, h("h1", {}, "Execution ", h("span", { class: "mono" }, id)), statusSlot),
    facts, errorBox, actions, message, stalled, children,
    h("section", {}, h("h2", {}, "Graph"), graphBox),
    stepBox,
    h("section", {}, h("h2", {}, "Timeline"), timelineBox),
    eventsSection);

  const carried = new Set(snap.resume ? snap.resume.carried : []);
  const redrawGraph = () => drawGraph(graphBox, snap.graph, counts, showStep, carried);
  redrawGraph();
  await loadEvents(false);

  // -- step detail -----------------------------------------------------------------------------
  async function showStep(step) {
    mount(stepBox, h("p", { class: "muted" }, `Loading ${step}…`));
    const detail = await get(`/executions/${id}/steps/${encodeURIComponent(step)}`);
    const outcomes = detail.outcomes.map((e) => {
      const d = e.data || {};
      const parts = [h("div", { class: "outcome-head" }, h("strong", {}, e.event_type), d.index != null ? ` item ${d.index}` : "", d.attempts ? ` · attempts ${d.attempts}` : "", e.command_id ? ` · ${e.command_id}` : "", ` · ${fmtTime(e.timestamp)}`)];
      if (e.event_type === "call.error" || e.event_type === "step.failed" || e.event_type === "command.failed") parts.push(h("div", { class: "label" }, "Error"), errorView(d.error !== undefined ? d.error : d));
      else if (e.event_type === "call.done") parts.push(h("div", { class: "label" }, "Result"), pre(d.result, "json result"));
      else if (e.event_type === "loop.done") parts.push(h("div", { class: "label" }, `Loop ${d.status || ""}`), pre(d.result && d.result.stats ? d.result.stats : d.result, "json result"));
      else parts.push(pre(d));
      return h("div", { class: `outcome ev-${e.event_type.replace(".", "-")}`, "data-type": e.event_type }, parts);
    });
    mount(stepBox,
      h("h2", {}, "Step ", h("span", { class: "mono", id: "step-name" }, step)),
      detail.definition ? [h("div", { class: "label" }, "Input (the step's definition, templates unrendered)"), pre(detail.definition, "json definition")] : null,
      outcomes.length ? outcomes : h("p", { class: "muted" }, "No results or errors recorded for this step yet."));
    stepBox.scrollIntoView({ block: "nearest" });
  }

  // -- timeline --------------------------------------------------------------------------------
  const tl = await get(`/executions/${id}/timeline`);
  const commands = new Map(tl.commands.map((c) => [c.command_id, c]));
  const perStep = new Map();
  for (const c of tl.commands) perStep.set(c.step, (perStep.get(c.step) || 0) + 1);
  const redrawTimeline = () => drawTimeline(timelineBox, steps, [...commands.values()], tl.started, status, tl.per_step_limit);
  redrawTimeline();

  function trackCommand(e) {
    if (!e.command_id) return;
    let c = commands.get(e.command_id);
    if (!c) {
      if (e.event_type !== "command.issued") return;
      const n = perStep.get(e.step) || 0;
      if (n >= tl.per_step_limit) return;
      perStep.set(e.step, n + 1);
      c = { step: e.step, command_id: e.command_id, idx: (e.data || {}).index ?? null, issued: e.timestamp, started: null, ended: null, starts: 0, errors: 0, outcome: null };
      commands.set(e.command_id, c);
    }
    if (e.event_type === "command.started") { c.starts += 1; if (!c.started) c.started = e.timestamp; }
    if (e.event_type === "call.error") c.errors += 1;
    if (e.event_type.startsWith("command.") && ["command.completed", "command.failed", "command.cancelled"].includes(e.event_type)) { c.ended = e.timestamp; c.outcome = e.event_type; }
  }

  // -- live ------------------------------------------------------------------------------------
  let dirty = false;
  const timer = setInterval(() => {
    if (!dirty) return;
    dirty = false;
    redrawGraph();
    redrawTimeline();
  }, 500);
  const live = stream(`/executions/${id}/stream` + qs({ after: snap.last_event_id }));
  live.addEventListener("events", (event) => {
    const batch = JSON.parse(event.data);
    const fresh = [];
    for (const e of batch) {
      applyEvent(counts, e);
      trackCommand(e);
      if (matches(e)) fresh.push(e);
    }
    for (const e of fresh) evBody.prepend(evRow(e));
    while (evBody.children.length > EVENT_ROWS) evBody.lastChild.remove();
    dirty = true;
  });
  live.addEventListener("status", (event) => {
    const next = JSON.parse(event.data).status;
    if (next && next !== status) {
      status = next;
      mount(statusSlot, statusBadge(status));
      cancelBtn.disabled = TERMINAL.has(status) || !canAct;
      dirty = true;
    }
  });
  live.addEventListener("end", async () => {
    live.close();
    const after = await get(`/executions/${id}/snapshot`);
    status = after.execution.status;
    mount(statusSlot, statusBadge(status));
    cancelBtn.disabled = TERMINAL.has(status) || !canAct;
    mount(errorBox, after.execution.error ? [h("h3", {}, "Error"), errorView(after.execution.error)] : null);
    document.getElementById("exec-duration").textContent = fmtDuration(duration(after.execution.created_at, after.execution.completed_at));
    Object.assign(counts, after.steps);
    redrawGraph();
    redrawTimeline();
  });
  return () => {
    live.close();
    clearInterval(timer);
  };
}

function summaryOf(e) {
  const d = e.data || {};
  if (d._truncated) return `(${d._size} bytes, preview)`;
  if (e.event_type === "call.error" && d.error) return String(d.error.message || d.error.type || "error").slice(0, 120);
  if (e.event_type === "call.done") return JSON.stringify(d.result === undefined ? null : d.result).slice(0, 120);
  const text = JSON.stringify(d);
  return text.length > 120 ? text.slice(0, 119) + "…" : text;
}

// An error: where and what (step, kind, message), the failing template or the traceback as
// plain text with its line breaks, then everything else it carries.
function errorView(error) {
  if (!error || typeof error !== "object") return pre(error, "json error");
  const py = error.py && typeof error.py === "object" ? error.py : {};
  const trace = error.traceback || py.traceback;
  const where = [error.step ? `step ${error.step}` : null, error.kind || null, error.template ? `template ${error.template}` : null].filter(Boolean).join(" · ");
  return h("div", { class: "error-view" },
    where ? h("div", { class: "muted small" }, where) : null,
    h("pre", { class: "error message" }, String(error.message || error.type || "error")),
    trace ? [h("div", { class: "label" }, "Traceback"), h("pre", { class: "error trace" }, String(trace))] : null,
    h("details", {}, h("summary", { class: "small muted" }, "all fields"), pre(error, "json error")));
}
