// One run: its graph (tasks laid out by dependency depth, coloured by state) and its task
// instances with where each went and why, its logs, and clear / mark / delete.
import { api, enc, fetchAll } from "./api.js";
import { badge, every, fill, formatDate, formatDuration, h, notice, stateClass, svg, table } from "./dom.js";
import { clearTasks, deleteRun, markTask } from "./actions.js";

const PRIORITY = ["failed", "upstream_failed", "up_for_retry", "up_for_reschedule", "queued", "scheduled",
  "running", "restarting", null, "success", "skipped", "removed"];
const NODE_W = 170, NODE_H = 28, GAP_X = 50, GAP_Y = 14;

function summary(states) {
  for (const state of PRIORITY) if (states.includes(state)) return state;
  return states[0] ?? null;
}

function layout(tasks) {
  const depth = {};
  for (const task of tasks) depth[task.task_id] = Math.max(0, ...task.upstream_task_ids.map((up) => (depth[up] ?? 0) + 1));
  const columns = [];
  for (const task of tasks) (columns[depth[task.task_id]] ||= []).push(task.task_id);
  const at = {};
  columns.forEach((ids, x) => ids.forEach((id, y) => { at[id] = { x: 10 + x * (NODE_W + GAP_X), y: 10 + y * (NODE_H + GAP_Y) }; }));
  const width = 20 + columns.length * (NODE_W + GAP_X);
  const height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (NODE_H + GAP_Y);
  return { at, width, height };
}

function graph(tasks, stateOf, select) {
  const { at, width, height } = layout(tasks);
  const edges = tasks.flatMap((task) => task.downstream_task_ids.filter((down) => at[down]).map((down) =>
    svg("line", { x1: at[task.task_id].x + NODE_W, y1: at[task.task_id].y + NODE_H / 2, x2: at[down].x, y2: at[down].y + NODE_H / 2 })));
  const nodes = tasks.map((task) => {
    const state = stateOf(task.task_id);
    const { x, y } = at[task.task_id];
    const label = task.task_id.length > 24 ? task.task_id.slice(0, 23) + "…" : task.task_id;
    return svg("g", { class: "node", dataset: { taskId: task.task_id, state: state || "none" }, onclick: () => select(task.task_id) },
      svg("title", {}, `${task.task_id} (${task.operator_name}): ${state || "none"}`),
      svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 5, class: stateClass(state), stroke: "#0004" }),
      svg("text", { x: x + 8, y: y + 18 }, label + (task.is_mapped ? " [ ]" : "")));
  });
  return svg("svg", { class: "graph", width, height, viewBox: `0 0 ${width} ${height}` }, ...edges, ...nodes);
}

function logLinks(dagId, runId, ti) {
  const links = [];
  for (let n = 1; n <= ti.try_number; n++) {
    const query = ti.map_index >= 0 ? `?map_index=${ti.map_index}` : "";
    links.push(h("a", { href: `#/dags/${enc(dagId)}/runs/${enc(runId)}/tasks/${enc(ti.task_id)}/logs/${n}${query}`,
      dataset: { role: "log", taskId: ti.task_id, try: n } }, String(n)), " ");
  }
  return links;
}

export function runPage(root, { dagId, runId, query }) {
  const head = h("div"), picture = h("div"), list = h("div");
  const downstream = h("input", { type: "checkbox", id: "clear-downstream" });
  fill(root, head, picture, list);
  let selected = query.get("task");
  const refresh = async () => {
    const [run, tasks, tis] = await Promise.all([
      api(`/dags/${enc(dagId)}/dagRuns/${enc(runId)}`),
      fetchAll(`/dags/${enc(dagId)}/tasks`, "tasks"),
      fetchAll(`/dags/${enc(dagId)}/dagRuns/${enc(runId)}/taskInstances`, "task_instances"),
    ]);
    const byTask = {};
    for (const ti of tis) (byTask[ti.task_id] ||= []).push(ti);
    const stateOf = (taskId) => (byTask[taskId] ? summary(byTask[taskId].map((ti) => ti.state)) : null);
    const act = (work) => async () => { try { if (await work()) refresh(); } catch (e) { notice(e.message); } };
    fill(head, 
      h("h1", {}, h("a", { href: `#/dags/${enc(dagId)}` }, dagId), " / ", runId, " ", badge(run.state)),
      h("p", { class: "muted" }, `${run.run_type} run, logical date ${formatDate(run.logical_date)}; started ${formatDate(run.start_date)}` +
        (run.end_date ? `, ended ${formatDate(run.end_date)}` : "")),
      Object.keys(run.conf).length ? h("pre", {}, JSON.stringify(run.conf, null, 2)) : null,
      h("div", { class: "toolbar" },
        h("button", { dataset: { role: "clear-failed" }, onclick: act(() => clearTasks(dagId, runId, null, { onlyFailed: true })) }, "Clear failed tasks"),
        h("label", {}, downstream, " clear also downstream"),
        h("button", { class: "danger", dataset: { role: "delete-run" }, onclick: async () => {
          try { if (await deleteRun(dagId, runId)) location.hash = `#/dags/${enc(dagId)}`; } catch (e) { notice(e.message); } } }, "Delete run")));
    fill(picture, graph(tasks, stateOf, (taskId) => { selected = taskId; refresh(); }));
    const columns = [
      ["Task", (ti) => h("span", {}, ti.task_id, ti.map_index >= 0 ? `[${ti.map_index}]` : "")],
      ["State", (ti) => badge(ti.state)],
      ["Try", (ti) => `${ti.try_number} of ${ti.max_tries + 1}`],
      ["Queue", (ti) => ti.queue],
      ["Executor", (ti) => ti.executor || ""],
      ["Why there", (ti) => h("span", { class: "reason" }, ti.routing_reason || "")],
      ["Host or pod", (ti) => ti.hostname],
      ["Duration", (ti) => formatDuration(ti.duration)],
      ["Started", (ti) => formatDate(ti.start_date)],
      ["Logs", (ti) => logLinks(dagId, runId, ti)],
      ["", (ti) => [
        h("button", { dataset: { role: "clear", taskId: ti.task_id }, onclick: act(() => clearTasks(dagId, runId, [ti.task_id], { downstream: downstream.checked })) }, "Clear"), " ",
        h("button", { dataset: { role: "mark-success", taskId: ti.task_id }, onclick: act(() => markTask(dagId, runId, ti.task_id, "success")) }, "Success"), " ",
        h("button", { dataset: { role: "mark-failed", taskId: ti.task_id }, onclick: act(() => markTask(dagId, runId, ti.task_id, "failed")) }, "Failed")]],
    ];
    const failures = tis.filter((ti) => ti.failure_reason && ti.state !== "success");
    fill(list, h("h2", {}, `Task instances (${tis.length})`),
      tis.length ? table(columns, tis, (ti) => ({ class: ti.task_id === selected ? "selected" : undefined,
        dataset: { taskId: ti.task_id, mapIndex: ti.map_index, state: ti.state || "none" } }))
        : h("p", { class: "muted" }, "The run has no task instances yet."),
      failures.length ? [h("h2", {}, "Why tries failed"), failures.map((ti) => h("p", {}, h("b", {}, ti.task_id), ": ", ti.failure_reason))] : null);
  };
  return every(3, refresh);
}
