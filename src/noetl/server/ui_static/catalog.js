// The catalog: playbooks and their versions, the YAML (highlighted), a diff between two versions,
// the graph, and a run form built from the playbook's input schema when the server has one, else
// from its workload (with a JSON mode for anything the form cannot express).

import { get, post, ApiError } from "./api.js";
import { h, mount, notice, pre, field, clear } from "./dom.js";
import { drawGraph } from "./graph.js";
import { session } from "./app.js";

export async function render(root, { path }) {
  return path ? renderOne(root, path) : renderList(root);
}

async function renderList(root) {
  const { entries } = await post("/catalog/list", { resource_type: "Playbook" });
  const byPath = new Map();
  for (const e of entries) {
    if (!byPath.has(e.path) || byPath.get(e.path).version < e.version) byPath.set(e.path, e);
  }
  const rows = [...byPath.values()].sort((a, b) => a.path.localeCompare(b.path)).map((e) =>
    h("tr", { "data-path": e.path },
      h("td", {}, h("a", { href: `#/catalog/${encodeURIComponent(e.path)}` }, e.path)),
      h("td", {}, `v${e.version}`),
      h("td", { class: "muted" }, (e.meta && e.meta.description) || ""),
      h("td", {}, e.created_at ? e.created_at.slice(0, 19).replace("T", " ") : "")));
  mount(root, h("h1", {}, "Catalog"),
    rows.length ? h("table", { class: "grid", id: "catalog" }, h("thead", {}, h("tr", {}, ["Playbook", "Latest", "Description", "Registered"].map((t) => h("th", {}, t)))), h("tbody", {}, rows))
      : notice("No playbooks registered yet: noetl catalog register <file>", "info"));
}

async function renderOne(root, path) {
  const { entries } = await post("/catalog/list", { resource_type: "Playbook", path });
  const versions = entries.filter((e) => e.path === path).sort((a, b) => b.version - a.version);
  if (!versions.length) return mount(root, notice(`Playbook ${path} not found.`, "error"));
  let current = versions[0];
  const pick = h("select", { id: "version" }, versions.map((e) => h("option", { value: e.version }, `v${e.version}`)));
  const against = h("select", { id: "diff-against" }, versions.map((e) => h("option", { value: e.version }, `v${e.version}`)));
  if (versions.length > 1) against.value = String(versions[1].version);
  const yamlBox = h("div", { id: "yaml" });
  const diffBox = h("div", { id: "diff" });
  const graphBox = h("div", { class: "graph-box", id: "catalog-graph" });
  const formBox = h("div", { id: "run-form" });
  const tabs = h("div", { class: "tabs" });
  const views = { run: formBox, yaml: yamlBox, graph: graphBox, diff: diffBox };
  let tab = "run";
  function show(name) {
    tab = name;
    for (const [key, node] of Object.entries(views)) node.hidden = key !== name;
    for (const b of tabs.children) b.classList.toggle("active", b.dataset.tab === name);
  }
  for (const name of Object.keys(views)) tabs.append(h("button", { "data-tab": name, onclick: () => show(name) }, { run: "Run", yaml: "YAML", graph: "Graph", diff: "Diff" }[name]));

  async function refresh() {
    current = versions.find((e) => String(e.version) === pick.value) || versions[0];
    mount(yamlBox, highlightYaml(current.content));
    const other = versions.find((e) => String(e.version) === against.value);
    mount(diffBox, h("div", { class: "filters" }, field("Compare with", against)), other ? diffView(other, current) : notice("Only one version.", "info"));
    try {
      const graph = await post("/catalog/graph", { path, version: current.version });
      drawGraph(graphBox, graph, {}, null);
    } catch (err) {
      mount(graphBox, notice(`No graph: ${err.message}`, "error"));
    }
    await runForm(formBox, current);
  }
  pick.addEventListener("change", refresh);
  against.addEventListener("change", refresh);
  mount(root, h("h1", {}, "Playbook ", h("span", { class: "mono" }, path)), h("div", { class: "filters" }, field("Version", pick)), tabs, formBox, yamlBox, graphBox, diffBox);
  await refresh();
  show(tab);
}

async function inputSchema(entry) {
  try {
    const found = await get(`/catalog/${entry.path.split("/").map(encodeURIComponent).join("/")}/schema?version=${entry.version}`);
    return found && found.schema ? found.schema : found;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405 || err.status === 422 || err.status === 403)) return null;
    throw err;
  }
}

function schemaFields(schema, workload) {
  const props = schema && schema.properties && typeof schema.properties === "object" ? schema.properties : null;
  if (props) {
    return Object.entries(props).map(([name, spec]) => ({
      name,
      type: Array.isArray(spec.enum) ? "enum" : spec.writeOnly ? "secret" : ["string", "integer", "number", "boolean"].includes(spec.type) ? spec.type : "json",
      options: Array.isArray(spec.enum) ? spec.enum : null,
      value: spec.default !== undefined ? spec.default : workload[name],
      help: spec.description || "",
      required: (schema.required || []).includes(name),
    }));
  }
  return Object.entries(workload || {}).map(([name, value]) => ({ name, type: typeOf(value), value, help: "", required: false }));
}

function typeOf(value) {
  if (typeof value === "boolean") return "boolean";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  if (typeof value === "string") return "string";
  return "json";
}

async function runForm(box, entry) {
  const schema = await inputSchema(entry);
  const fields = schemaFields(schema, entry.payload || {});
  const message = h("div", { id: "run-message" });
  const inputs = new Map();
  const rows = fields.map((f) => {
    let input;
    if (f.type === "boolean") input = h("input", { type: "checkbox", name: f.name, checked: !!f.value });
    else if (f.type === "integer" || f.type === "number") input = h("input", { type: "number", step: f.type === "integer" ? "1" : "any", name: f.name, value: f.value ?? "" });
    else if (f.type === "string") input = h("input", { type: "text", name: f.name, value: f.value ?? "", size: 40 });
    else if (f.type === "secret") input = h("input", { type: "password", name: f.name, value: f.value ?? "", size: 40, autocomplete: "off" });
    else if (f.type === "enum") input = h("select", { name: f.name }, f.options.map((o, i) => h("option", { value: String(i), selected: JSON.stringify(o) === JSON.stringify(f.value) }, typeof o === "string" ? o : JSON.stringify(o))));
    else input = h("textarea", { name: f.name, rows: 3, cols: 50, value: JSON.stringify(f.value ?? null, null, 2) });
    inputs.set(f.name, [f, input]);
    return field(`${f.name}${f.required ? " *" : ""}${f.help ? " — " + f.help : ""}`, input);
  });
  const jsonMode = h("input", { type: "checkbox", id: "json-mode" });
  const jsonArea = h("textarea", { id: "payload-json", rows: 10, cols: 70, hidden: true });
  jsonMode.addEventListener("change", () => {
    if (jsonMode.checked) {
      try { jsonArea.value = JSON.stringify(collect(), null, 2); } catch (err) { jsonArea.value = "{}"; }
    }
    jsonArea.hidden = !jsonMode.checked;
    formFields.hidden = jsonMode.checked;
  });
  function collect() {
    const out = {};
    for (const [name, [f, input]] of inputs) {
      if (f.type === "boolean") out[name] = input.checked;
      else if (f.type === "integer" || f.type === "number") out[name] = input.value === "" ? null : Number(input.value);
      else if (f.type === "string" || f.type === "secret") out[name] = input.value;
      else if (f.type === "enum") out[name] = f.options[Number(input.value)];
      else {
        try { out[name] = JSON.parse(input.value); } catch (err) { throw new Error(`field ${name}: not valid JSON (${err.message})`); }
      }
    }
    return out;
  }
  const formFields = h("div", { class: "form-fields" }, rows.length ? rows : h("p", { class: "muted" }, "This playbook takes no inputs."));
  const form = h("form", { class: "card", id: "run" },
    h("p", { class: "muted small" }, schema ? "Fields from the playbook's input schema." : "Fields from the playbook's workload (its defaults)."),
    formFields, h("label", { class: "check" }, jsonMode, "JSON mode"), jsonArea,
    h("div", {}, h("button", { type: "submit", class: "primary", id: "run-submit", disabled: session.role === "viewer", title: session.role === "viewer" ? "viewers may not run playbooks" : null }, `Run ${entry.path} v${entry.version}`)), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let payload;
    try {
      payload = jsonMode.checked ? JSON.parse(jsonArea.value || "{}") : collect();
    } catch (err) {
      return mount(message, notice(`Cannot run: ${err.message}`, "error"));
    }
    try {
      const started = await post("/execute", { path: entry.path, version: entry.version, payload });
      location.hash = `#/executions/${started.execution_id}`;
    } catch (err) {
      mount(message, notice(`Run refused: ${err.message}`, "error"));
    }
  });
  mount(box, form);
}

export function highlightYaml(text) {
  const out = h("pre", { class: "yaml" });
  for (const line of String(text).split("\n")) {
    const comment = line.match(/^(\s*)(#.*)$/);
    if (comment) {
      out.append(comment[1], h("span", { class: "y-comment" }, comment[2]), "\n");
      continue;
    }
    const key = line.match(/^(\s*-?\s*)([A-Za-z_][\w.-]*)(:)(.*)$/);
    let rest = line;
    if (key) {
      out.append(key[1], h("span", { class: "y-key" }, key[2]), key[3]);
      rest = key[4];
    }
    for (const chunk of rest.split(/(\{\{.*?\}\})/)) {
      if (!chunk) continue;
      if (chunk.startsWith("{{")) {
        out.append(h("span", { class: "y-template" }, chunk));
        continue;
      }
      for (const part of chunk.split(/("(?:[^"\\]|\\.)*"|'[^']*'|\s#.*$)/)) {
        if (!part) continue;
        if (part.startsWith('"') || part.startsWith("'")) out.append(h("span", { class: "y-string" }, part));
        else if (/^\s#/.test(part)) out.append(h("span", { class: "y-comment" }, part));
        else out.append(part);
      }
    }
    out.append("\n");
  }
  return out;
}

function diffView(older, newer) {
  const a = older.content.split("\n").slice(0, 3000), b = newer.content.split("\n").slice(0, 3000);
  const n = a.length, m = b.length;
  const dp = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const out = h("pre", { class: "diff", id: "diff-text" });
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { out.append(h("span", { class: "d-same" }, "  " + a[i] + "\n")); i++; j++; }
    else if (j < m && (i >= n || dp[i][j + 1] >= dp[i + 1][j])) { out.append(h("span", { class: "d-add" }, "+ " + b[j] + "\n")); j++; }
    else { out.append(h("span", { class: "d-del" }, "- " + a[i] + "\n")); i++; }
  }
  return [h("p", { class: "muted small" }, `v${older.version} → v${newer.version}`), out];
}
