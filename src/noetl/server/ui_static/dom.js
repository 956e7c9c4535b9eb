// Building DOM safely: every string becomes a text node or an attribute value, never markup.
// Nothing in the UI assigns HTML markup; user data (results, errors, paths) is shown as text.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.setAttribute("class", value);
    } else if (key === "value" || key === "checked" || key === "selected") {
      node[key] = value;
    } else if (key === "href" && !/^(#|\/|https?:)/.test(String(value))) {
      node.setAttribute(key, "#"); // no javascript: or data: links
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  return node;
}

export function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

export function s(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function mount(node, ...children) {
  return append(clear(node), children);
}

export function pretty(value) {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch (err) {
    return String(value);
  }
}

export function pre(value, cls) {
  return h("pre", { class: cls || "json" }, pretty(value));
}

export function statusBadge(status) {
  const st = String(status || "PENDING").toUpperCase();
  return h("span", { class: `badge st-${st.toLowerCase()}`, "data-status": st }, st);
}

export function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} m ${Math.round(seconds % 60)} s`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function duration(start, end) {
  if (!start) return null;
  const a = new Date(start).getTime();
  const b = end ? new Date(end).getTime() : Date.now();
  return (b - a) / 1000;
}

export function notice(text, kind) {
  return h("div", { class: `notice ${kind || "info"}`, role: "status" }, text);
}

export function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}
