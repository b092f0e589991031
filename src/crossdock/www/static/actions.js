// The actions, each asked for before it is sent: trigger, pause, clear, mark, delete.
import { api, enc } from "./api.js";
import { confirmAction, h, notice } from "./dom.js";

function delivered(rows, verb) {
  if (!rows.length) return `nothing to ${verb}`;
  const applied = rows.every((row) => row.applied);
  return `${rows.length} task instance(s) ${verb === "clear" ? "cleared" : "marked " + verb}` +
    (applied ? "" : "; the scheduler applies it in its next loop step");
}

export async function triggerDag(dag) {
  const conf = h("textarea", { rows: 4, placeholder: "{}", id: "trigger-conf" });
  const paused = dag.is_paused ? h("p", { class: "muted" }, "The DAG is paused: the run waits in queued until it is unpaused.") : null;
  if (!(await confirmAction(`Trigger ${dag.dag_id}?`, paused, h("label", {}, "conf (JSON object, optional)"), conf))) return null;
  let body = {};
  if (conf.value.trim()) {
    try { body = { conf: JSON.parse(conf.value) }; } catch (error) { notice("conf is not valid JSON: " + error.message); return null; }
  }
  const run = await api(`/dags/${enc(dag.dag_id)}/dagRuns`, { method: "POST", body });
  notice(`triggered ${dag.dag_id}: run ${run.dag_run_id} is ${run.state}`, "ok");
  return run;
}

export async function setPaused(dagId, paused) {
  const verb = paused ? "Pause" : "Unpause";
  const why = paused ? "No scheduled runs; manual runs wait in queued." : "Its runs are scheduled again and queued runs start.";
  if (!(await confirmAction(`${verb} ${dagId}?`, h("p", {}, why)))) return null;
  const dag = await api(`/dags/${enc(dagId)}`, { method: "PATCH", body: { is_paused: paused } });
  notice(`${dagId} is ${dag.is_paused ? "paused" : "unpaused"}`, "ok");
  return dag;
}

// Clear task instances of one run: list what would be cleared (a dry run) and ask.
export async function clearTasks(dagId, runId, taskIds, { downstream = false, onlyFailed = false } = {}) {
  const body = { dag_run_id: runId, task_ids: taskIds, include_downstream: downstream, only_failed: onlyFailed };
  const planned = (await api(`/dags/${enc(dagId)}/clearTaskInstances`, { method: "POST", body: { ...body, dry_run: true } })).task_instances;
  if (!planned.length) { notice("nothing to clear: no task instance there has a state yet", "ok"); return null; }
  const items = h("ul", {}, planned.map((ti) => h("li", {}, `${ti.task_id}${ti.map_index >= 0 ? "[" + ti.map_index + "]" : ""} (${ti.state})`)));
  if (!(await confirmAction(`Clear ${planned.length} task instance(s) of ${runId}?`, h("p", {}, "They run again; try numbers are kept."), items))) return null;
  const done = (await api(`/dags/${enc(dagId)}/clearTaskInstances`, { method: "POST", body: { ...body, dry_run: false } })).task_instances;
  notice(delivered(done, "clear"), "ok");
  return done;
}

export async function markTask(dagId, runId, taskId, state) {
  const extra = state === "success" ? "Its running try is stopped; failed tasks downstream run again." : "Its running try is stopped.";
  if (!(await confirmAction(`Mark ${taskId} ${state}?`, h("p", {}, extra)))) return null;
  const result = await api(`/dags/${enc(dagId)}/dagRuns/${enc(runId)}/taskInstances/${enc(taskId)}`,
    { method: "PATCH", body: { new_state: state } });
  notice(delivered(result.task_instances, state), "ok");
  return result;
}

export async function deleteRun(dagId, runId) {
  if (!(await confirmAction(`Delete run ${runId}?`, h("p", {}, "Its task instances and their state are deleted; logs stay on disk.")))) return false;
  await api(`/dags/${enc(dagId)}/dagRuns/${enc(runId)}`, { method: "DELETE" });
  notice(`deleted run ${runId}`, "ok");
  return true;
}

// Backfill: one run per schedule interval between two dates, run by the scheduler.
export async function backfillDag(dag) {
  const start = h("input", { type: "date", id: "backfill-start" });
  const end = h("input", { type: "date", id: "backfill-end" });
  const reset = h("input", { type: "checkbox", id: "backfill-reset" });
  const asked = await confirmAction(`Backfill ${dag.dag_id}?`,
    h("p", {}, "One run per schedule interval whose logical date lies in the range, at most max_active_runs at once."),
    h("label", {}, "from ", start), " ", h("label", {}, "to ", end),
    h("p", {}, h("label", {}, reset, " run existing runs in the range again")));
  if (!asked) return null;
  if (!start.value || !end.value) { notice("give both dates to backfill"); return null; }
  const result = await api(`/crossdock/dags/${enc(dag.dag_id)}/backfill`, { method: "POST",
    body: { start_date: start.value + "T00:00:00+00:00", end_date: end.value + "T00:00:00+00:00", reset_dagruns: reset.checked } });
  notice(`${result.total_entries} run(s) of ${dag.dag_id} in the backfill`, "ok");
  return result;
}
