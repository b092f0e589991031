// One try's log, followed live: asks for what follows the last offset every second until the
// try has ended and all of its log is shown (a finished pod's log is the saved copy).
import { api, enc } from "./api.js";
import { badge, every, fill, h } from "./dom.js";

export function logPage(root, { dagId, runId, taskId, tryNumber, query }) {
  const mapIndex = Number(query.get("map_index") ?? -1);
  const text = h("pre", { class: "log", id: "log" });
  const status = h("p", { id: "log-status" });
  const source = h("p", { class: "muted", id: "log-source" });
  const tries = h("span");
  const instance = mapIndex >= 0 ? `${taskId}[${mapIndex}]` : taskId;
  fill(root, 
    h("h1", {}, h("a", { href: `#/dags/${enc(dagId)}` }, dagId), " / ",
      h("a", { href: `#/dags/${enc(dagId)}/runs/${enc(runId)}?task=${enc(taskId)}` }, runId), " / ", instance, ` — try ${tryNumber}`),
    h("div", { class: "toolbar" }, "tries: ", tries), status, source, text);
  let token = "0";
  let shown = 0;
  const base = `/dags/${enc(dagId)}/dagRuns/${enc(runId)}/taskInstances/${enc(taskId)}`;
  return every(1, async () => {
    const chunk = await api(`${base}/logs/${Number(tryNumber)}`, { params: { token, map_index: mapIndex } });
    if (chunk.content) {
      const atBottom = text.scrollTop + text.clientHeight >= text.scrollHeight - 4;
      text.append(document.createTextNode(chunk.content));
      if (atBottom) text.scrollTop = text.scrollHeight;
    }
    token = chunk.continuation_token;
    source.textContent = chunk.source;
    fill(status, chunk.finished
      ? h("span", { dataset: { following: "false" } }, "End of log; the try ended ", badge(chunk.state))
      : h("span", { class: "following", dataset: { following: "true" } }, "Following the running try live… ", badge(chunk.state)));
    if (shown !== chunk.try_number) {
      shown = chunk.try_number;
      const ti = await api(mapIndex >= 0 ? `${base}/${mapIndex}` : base);
      const links = [];
      for (let n = 1; n <= ti.try_number; n++) {
        const href = `#/dags/${enc(dagId)}/runs/${enc(runId)}/tasks/${enc(taskId)}/logs/${n}${mapIndex >= 0 ? "?map_index=" + mapIndex : ""}`;
        links.push(n === Number(tryNumber) ? h("b", {}, String(n)) : h("a", { href }, String(n)), " ");
      }
      fill(tries, ...links);
    }
    return !chunk.finished;
  });
}
