// A DAG's grid: its newest runs (columns, oldest left) by its tasks (rows), nested by task group;
// each cell is coloured by the task instance's state, a mapped task's and a group's by the
// state that most needs a look (the count of each state is in the cell's title).
import { api, enc } from "./api.js";
import { every, fill, h, notice, stateClass } from "./dom.js";
import { backfillDag, setPaused, triggerDag } from "./actions.js";

const collapsed = new Set();

function cellTitle(node, run, cell) {
  if (!cell) return `${node.id}: no task instance in ${run.dag_run_id}`;
  const counts = cell.mapped_states ? " — " + Object.entries(cell.mapped_states).map(([s, n]) => `${n} ${s}`).join(", ") : "";
  return `${node.id} in ${run.dag_run_id}: ${cell.state || "none"}${counts}`;
}

function cell(dagId, node, run, value) {
  if (!value) return h("span", { class: "cell empty", title: cellTitle(node, run, value) });
  const taskParam = node.is_group ? "" : `?task=${enc(node.id)}`;
  return h("a", { href: `#/dags/${enc(dagId)}/runs/${enc(run.dag_run_id)}${taskParam}` },
    h("span", { class: "cell " + stateClass(value.state), title: cellTitle(node, run, value),
      dataset: { taskId: node.id, runId: run.dag_run_id, state: value.state || "none" } }));
}

function rows(dagId, node, runs, depth, out) {
  for (const child of node.children) {
    const label = h("td", { class: "label" + (child.is_group ? " group" : "") },
      "\u00a0".repeat(depth * 3),
      child.is_group ? (collapsed.has(child.id) ? "▸ " : "▾ ") : "",
      child.label,
      child.is_mapped ? h("span", { class: "mapped" }, " [ ]") : "");
    if (child.is_group) label.addEventListener("click", () => {
      collapsed.has(child.id) ? collapsed.delete(child.id) : collapsed.add(child.id);
      window.dispatchEvent(new Event("crossdock:redraw"));
    });
    out.push(h("tr", { dataset: { node: child.id } }, label,
      runs.map((run, index) => h("td", {}, cell(dagId, child, run, child.instances[index])))));
    if (child.is_group && !collapsed.has(child.id)) rows(dagId, child, runs, depth + 1, out);
  }
  return out;
}

function gridTable(grid) {
  const runs = grid.dag_runs;
  if (!runs.length) return h("p", { class: "muted" }, "No runs yet.");
  const header = h("tr", {}, h("th", {}, "task \\ run"), runs.map((run) => h("th", {},
    h("a", { href: `#/dags/${enc(grid.dag_id)}/runs/${enc(run.dag_run_id)}`, title: `${run.dag_run_id}: ${run.state}` },
      h("span", { class: "runbar " + stateClass(run.state), dataset: { runId: run.dag_run_id, state: run.state } })))));
  return h("table", { class: "grid", id: "grid" }, h("thead", {}, header), h("tbody", {}, rows(grid.dag_id, grid.groups, runs, 0, [])));
}

export function dagPage(root, { dagId }) {
  const head = h("div");
  const body = h("div");
  fill(root, head, body);
  let last = null;
  const draw = () => { if (last) fill(body, gridTable(last)); };
  const refresh = async () => {
    const [dag, grid] = await Promise.all([api(`/dags/${enc(dagId)}`), api(`/crossdock/dags/${enc(dagId)}/grid`)]);
    const toggle = h("button", { dataset: { role: "pause" }, onclick: async () => {
      try { if (await setPaused(dagId, !dag.is_paused)) refresh(); } catch (e) { notice(e.message); } } },
    dag.is_paused ? "Unpause" : "Pause");
    const trigger = h("button", { class: "primary", dataset: { role: "trigger" }, onclick: async () => {
      try { if (await triggerDag(dag)) refresh(); } catch (e) { notice(e.message); } } }, "Trigger");
    fill(head, h("h1", {}, dag.dag_id, " ", h("span", { class: "badge", dataset: { paused: dag.is_paused } }, dag.is_paused ? "paused" : "active")),
      dag.description ? h("p", { class: "muted" }, dag.description) : null,
      dag.has_import_errors ? h("p", { class: "notice error" }, "Its file has an import error (see the DAG list); the last good version is shown.") : null,
      h("div", { class: "toolbar" }, trigger, toggle,
        dag.schedule_interval ? h("button", { dataset: { role: "backfill" }, onclick: async () => {
          try { if (await backfillDag(dag)) refresh(); } catch (e) { notice(e.message); } } }, "Backfill") : null,
        h("span", { class: "muted" }, dag.fileloc)));
    last = grid;
    draw();
  };
  window.addEventListener("crossdock:redraw", draw);
  const stop = every(3, refresh);
  return () => { stop(); window.removeEventListener("crossdock:redraw", draw); };
}
