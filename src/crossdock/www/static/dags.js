// The DAG list: paused toggle, newest runs' states, trigger, and import errors with their traceback.
import { fetchAll, enc } from "./api.js";
import { every, fill, formatDate, h, notice, stateClass, table } from "./dom.js";
import { setPaused, triggerDag } from "./actions.js";

function scheduleText(schedule) {
  if (!schedule) return "None";
  if (schedule.__type === "CronExpression") return schedule.value;
  if (schedule.__type === "TimeDelta") return `every ${schedule.days ? schedule.days + " d " : ""}${schedule.seconds} s`;
  return JSON.stringify(schedule);
}

function pausedToggle(dag, refresh) {
  const input = h("input", { type: "checkbox", checked: !dag.is_paused, title: dag.is_paused ? "paused" : "active",
    dataset: { dagId: dag.dag_id, role: "pause-toggle" } });
  input.addEventListener("change", async () => {
    input.checked = !input.checked; // stays as it was until the change is confirmed and made
    try { if (await setPaused(dag.dag_id, !dag.is_paused)) refresh(); } catch (error) { notice(error.message); }
  });
  return h("label", { class: "switch" }, input);
}

function recentRuns(dag) {
  return dag.recent_dag_runs.map((run) => h("a", {
    href: `#/dags/${enc(dag.dag_id)}/runs/${enc(run.dag_run_id)}`, title: `${run.dag_run_id}: ${run.state}`,
  }, h("span", { class: "dot " + stateClass(run.state), dataset: { state: run.state, runId: run.dag_run_id } })));
}

export function dagsPage(root) {
  const body = h("div");
  fill(root, h("h1", {}, "DAGs"), body);
  const refresh = async () => {
    const [dags, errors] = await Promise.all([fetchAll("/dags", "dags"), fetchAll("/importErrors", "import_errors")]);
    const columns = [
      ["Active", (dag) => pausedToggle(dag, refresh)],
      ["DAG", (dag) => h("a", { href: `#/dags/${enc(dag.dag_id)}`, class: "dag-link" }, dag.dag_id)],
      ["Tags", (dag) => dag.tags.map((tag) => h("span", { class: "tag" }, tag.name))],
      ["Schedule", (dag) => scheduleText(dag.schedule_interval)],
      ["Recent runs", recentRuns],
      ["Last parsed", (dag) => formatDate(dag.last_parsed_time)],
      ["", (dag) => h("button", { onclick: async () => { try { if (await triggerDag(dag)) refresh(); } catch (e) { notice(e.message); } },
        dataset: { role: "trigger", dagId: dag.dag_id } }, "Trigger")],
    ];
    const parts = [dags.length ? table(columns, dags, (dag) => ({ dataset: { dagId: dag.dag_id } }))
      : h("p", { class: "muted" }, "No DAGs are parsed yet: put DAG files in the DAGs folder.")];
    if (errors.length) {
      parts.push(h("h2", {}, `Import errors (${errors.length})`));
      for (const error of errors) {
        parts.push(h("details", { class: "import-error", dataset: { filename: error.filename } },
          h("summary", {}, error.filename, h("span", { class: "muted" }, "  " + formatDate(error.timestamp))),
          h("pre", {}, error.stack_trace)));
      }
    }
    const open = new Set([...body.querySelectorAll("details[open]")].map((d) => d.dataset.filename));
    fill(body, ...parts);
    body.querySelectorAll("details").forEach((d) => { if (open.has(d.dataset.filename)) d.open = true; });
  };
  return every(5, refresh);
}

