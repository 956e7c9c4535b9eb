// The playbook graph as SVG, laid out here: steps in columns by their longest distance from the
// entry step (arcs that go back are drawn below), each step coloured by its state. A loop is one
// node with its done/running/failed counts, however many items it has.

import { s, clear } from "./dom.js";

const W = 178, H = 58, GAP_X = 64, GAP_Y = 26, PAD = 20;

export function stepState(c) {
  if (!c) return "pending";
  const entered = c.entered_at_event || 0;
  const closed = Math.max(c.closed_at_event || 0, c.exit_at_event || 0);
  if (c.runs > 0 && entered > closed) return "running";
  if (c.closing) {
    const [type, status] = c.closing.split(":");
    if (type === "step.failed" || status === "FAILED") return "failed";
    if (type === "step.skipped") return "skipped";
    if (status === "CANCELLED") return "cancelled";
    return "completed";
  }
  if (c.runs > 0) return "running";
  if (c.skipped > 0) return "skipped";
  return "pending";
}

export function loopCounts(c) {
  const done = c ? c.completed : 0;
  const failed = c ? c.failed : 0;
  const running = c ? Math.max(0, c.issued - c.completed - c.failed - c.cancelled) : 0;
  return { done, failed, running, total: c && c.loop_size != null ? c.loop_size : null };
}

function layers(graph) {
  const ids = graph.nodes.map((n) => n.id);
  const out = new Map(ids.map((id) => [id, []]));
  for (const e of graph.edges) if (out.has(e.from) && out.has(e.to)) out.get(e.from).push(e.to);
  const entry = (graph.nodes.find((n) => n.entry) || graph.nodes[0] || {}).id;
  const back = new Set();
  const state = new Map();
  const order = [];
  function dfs(id) {
    state.set(id, 1);
    for (const to of out.get(id)) {
      if (state.get(to) === 1) back.add(id + "\u0000" + to);
      else if (!state.has(to)) dfs(to);
    }
    state.set(id, 2);
    order.push(id);
  }
  if (entry) dfs(entry);
  for (const id of ids) if (!state.has(id)) dfs(id);
  const layer = new Map(ids.map((id) => [id, 0]));
  for (const id of order.reverse()) {
    for (const to of out.get(id)) {
      if (back.has(id + "\u0000" + to)) continue;
      layer.set(to, Math.max(layer.get(to), layer.get(id) + 1));
    }
  }
  return { layer, back };
}

export function drawGraph(container, graph, counts, onPick, carried) {
  const { layer, back } = layers(graph);
  const columns = new Map();
  for (const node of graph.nodes) {
    const l = layer.get(node.id);
    if (!columns.has(l)) columns.set(l, []);
    columns.get(l).push(node);
  }
  const rows = Math.max(1, ...[...columns.values()].map((c) => c.length));
  const cols = Math.max(1, columns.size ? Math.max(...columns.keys()) + 1 : 1);
  const pos = new Map();
  for (const [l, nodes] of columns) {
    const offset = ((rows - nodes.length) * (H + GAP_Y)) / 2;
    nodes.forEach((node, i) => pos.set(node.id, { x: PAD + l * (W + GAP_X), y: PAD + offset + i * (H + GAP_Y) }));
  }
  const width = PAD * 2 + cols * W + (cols - 1) * GAP_X;
  const height = PAD * 2 + rows * H + (rows - 1) * GAP_Y + (back.size ? 40 : 0);
  const svg = s("svg", { class: "graph", id: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "playbook graph" },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  for (const e of graph.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    let d;
    if (back.has(e.from + "\u0000" + e.to) || b.x <= a.x) {
      const low = height - 14;
      d = `M${a.x + W / 2},${a.y + H} C${a.x + W / 2},${low} ${b.x + W / 2},${low} ${b.x + W / 2},${b.y + H}`;
    } else {
      const mx = (a.x + W + b.x) / 2;
      d = `M${a.x + W},${a.y + H / 2} C${mx},${a.y + H / 2} ${mx},${b.y + H / 2} ${b.x},${b.y + H / 2}`;
    }
    svg.append(s("path", { d, class: "edge", "marker-end": "url(#arrow)" }, e.when ? s("title", {}, `when ${e.when}`) : null));
  }
  for (const node of graph.nodes) {
    const p = pos.get(node.id);
    const c = counts[node.id];
    const state = !c && carried && carried.has(node.id) ? "carried" : stepState(c);
    const lines = [node.loop ? `loop · ${node.kinds.join(", ")}` : node.kinds.join(", ")];
    if (state === "carried") lines.push("result carried over");
    if (state === "carried") {
      /* not run in this execution */
    } else if (node.loop) {
      const k = loopCounts(c);
      lines.push(`✓${k.done} ▶${k.running} ✗${k.failed}${k.total != null ? " / " + k.total : ""}`);
    } else if (c && c.errors) {
      lines.push(`${c.errors} failed attempt(s)`);
    }
    const g = s("g", { class: `node st-${state}`, "data-step": node.id, "data-state": state, transform: `translate(${p.x},${p.y})`, tabindex: 0 },
      s("title", {}, `${node.id}: ${state}${node.desc ? " — " + node.desc : ""}`),
      s("rect", { width: W, height: H, rx: 8 }),
      s("text", { x: 10, y: 19, class: "name" }, node.id.length > 24 ? node.id.slice(0, 23) + "…" : node.id),
      s("text", { x: 10, y: 35, class: "sub" }, lines[0]),
      lines[1] ? s("text", { x: 10, y: 50, class: "sub counts" }, lines[1]) : null);
    g.addEventListener("click", () => onPick && onPick(node.id));
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") onPick && onPick(node.id); });
    svg.append(g);
  }
  clear(container).append(svg);
}
