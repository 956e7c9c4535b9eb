// The timeline (Gantt): one band per step, a bar per command - a plain step's run or one loop
// iteration - from when it started to when it ended (the wait in the queue drawn lighter before
// it). Commands that ran more than once or had failed attempts are outlined. Concurrent bars share
// a band in up to LANES lanes.

import { s, h, clear, fmtDuration } from "./dom.js";

const LANES = 8, LANE_H = 9, LABEL_W = 150, WIDTH = 1000, PAD = 6;

function classOf(c) {
  if (!c.ended) return c.started ? "running" : "inflight"; // issued: queued or on a worker
  return { "command.completed": "completed", "command.failed": "failed", "command.cancelled": "cancelled" }[c.outcome] || "completed";
}

export function drawTimeline(container, steps, commands, startedAt, status, limit) {
  if (!commands.length) {
    clear(container).append(h("p", { class: "muted" }, "No commands yet."));
    return;
  }
  const now = Date.now() / 1000;
  const t0 = Math.min(startedAt || Infinity, ...commands.map((c) => c.issued || c.started || now));
  const t1 = Math.max(t0 + 0.001, ...commands.map((c) => c.ended || (status === "RUNNING" ? now : c.started || c.issued || t0)));
  const x = (t) => LABEL_W + ((t - t0) / (t1 - t0)) * (WIDTH - LABEL_W - PAD);
  const byStep = new Map(steps.map((st) => [st, []]));
  for (const c of commands) {
    if (!byStep.has(c.step)) byStep.set(c.step, []);
    byStep.get(c.step).push(c);
  }
  const bands = [...byStep.entries()].filter(([, cs]) => cs.length);
  const bandHeights = bands.map(([, cs]) => Math.min(LANES, Math.max(1, concurrency(cs))) * LANE_H + 10);
  const height = bandHeights.reduce((a, b) => a + b, 0) + 24;
  const svg = s("svg", { class: "timeline", id: "timeline", viewBox: `0 0 ${WIDTH} ${height}`, width: "100%", height, role: "img", "aria-label": "timeline" });
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    svg.append(s("line", { x1: x(t), x2: x(t), y1: 0, y2: height - 16, class: "tick" }), s("text", { x: x(t), y: height - 4, class: "tick-label", "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, "+" + fmtDuration(t - t0)));
  }
  let y = 4;
  bands.forEach(([step, cs], b) => {
    const band = s("g", { class: "band", "data-step": step });
    band.append(s("rect", { x: 0, y: y - 2, width: WIDTH, height: bandHeights[b] - 2, class: b % 2 ? "band-bg odd" : "band-bg" }));
    const shown = cs.length >= limit ? ` (first ${limit})` : "";
    band.append(s("text", { x: 4, y: y + 10, class: "band-label" }, (step.length > 20 ? step.slice(0, 19) + "…" : step) + (cs.length > 1 ? ` ×${cs.length}${shown}` : "")));
    const laneEnds = [];
    for (const c of [...cs].sort((a, b2) => (a.started || a.issued || 0) - (b2.started || b2.issued || 0))) {
      const start = c.started || c.issued || t0;
      const end = c.ended || (status === "RUNNING" ? now : start);
      let lane = laneEnds.findIndex((e) => e <= start);
      if (lane < 0) lane = laneEnds.length < LANES ? laneEnds.length : laneEnds.indexOf(Math.min(...laneEnds));
      laneEnds[lane] = end;
      const yy = y + lane * LANE_H;
      if (c.issued && c.started && c.started > c.issued) band.append(s("rect", { x: x(c.issued), y: yy, width: Math.max(1, x(c.started) - x(c.issued)), height: LANE_H - 2, class: "bar wait" }));
      const retried = c.starts > 1 || c.errors > 0;
      const label = `${c.step}${c.idx != null ? " item " + c.idx : ""}: ${classOf(c)}, ${fmtDuration(end - start)}${c.starts > 1 ? `, ${c.starts} attempts` : ""}${c.errors ? `, ${c.errors} failed call(s)` : ""}`;
      band.append(s("rect", { x: x(start), y: yy, width: Math.max(2, x(end) - x(start)), height: LANE_H - 2, class: `bar ${classOf(c)}${retried ? " retried" : ""}`, "data-command": c.command_id }, s("title", {}, label)));
    }
    svg.append(band);
    y += bandHeights[b];
  });
  clear(container).append(svg);
}

function concurrency(cs) {
  const points = [];
  for (const c of cs) {
    const start = c.started || c.issued || 0;
    points.push([start, 1], [c.ended || Infinity, -1]);
  }
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cur = 0, max = 0;
  for (const [, d] of points) { cur += d; max = Math.max(max, cur); }
  return max;
}
