// Queues: per queue the executor, tasks waiting and running, broker messages, workers and
// free slots, the oldest wait and the workers the load calls for, with the formula.
import { fetchAll } from "./api.js";
import { every, fill, h, table } from "./dom.js";

function seconds(value) {
  if (value === null || value === undefined) return "";
  return value < 120 ? `${Math.round(value)} s` : value < 7200 ? `${Math.round(value / 60)} min` : `${(value / 3600).toFixed(1)} h`;
}

function workers(queue) {
  if (queue.executor === "KubernetesExecutor" && queue.pods_pending !== null) return `pods: ${queue.pods_pending} pending, ${queue.pods_running} running`;
  return queue.workers ?? "";
}

export function queuesPage(root) {
  const body = h("div");
  fill(root, h("h1", {}, "Queues"), body);
  return every(5, async () => {
    const queues = await fetchAll("/crossdock/queues", "queues");
    const columns = [
      ["Queue", (q) => q.queue], ["Executor", (q) => q.executor], ["Waiting", (q) => q.scheduled + q.queued],
      ["Running", (q) => q.running], ["Broker", (q) => q.broker_messages ?? ""], ["Workers", workers],
      ["Free slots", (q) => q.free_slots ?? ""], ["Oldest wait", (q) => seconds(q.oldest_wait_seconds)],
      ["Desired", (q) => q.desired_workers ?? ""], ["Why", (q) => h("span", { class: "reason" }, q.desired_reason)],
    ];
    const notes = queues.flatMap((q) => q.errors.map((error) => h("p", { class: "muted" }, `${q.queue}: ${error}`)));
    fill(body, table(columns, queues, (q) => ({ dataset: { queue: q.queue } })), ...notes);
  });
}
