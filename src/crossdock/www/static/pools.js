// Pools: slots and their use; set (create or change) and delete, each confirmed.
import { api, enc, fetchAll } from "./api.js";
import { confirmAction, every, fill, h, notice, table } from "./dom.js";

export function poolsPage(root) {
  const body = h("div");
  const name = h("input", { placeholder: "name", id: "pool-name", required: true });
  const slots = h("input", { type: "number", min: 0, placeholder: "slots", id: "pool-slots", required: true });
  const description = h("input", { placeholder: "description", id: "pool-description" });
  let refresh;
  const form = h("form", { class: "toolbar", onsubmit: async (event) => {
    event.preventDefault();
    try {
      const exists = (await fetchAll("/pools", "pools")).some((pool) => pool.name === name.value);
      if (!(await confirmAction(`${exists ? "Change" : "Create"} pool ${name.value} with ${slots.value} slots?`))) return;
      const fields = { slots: Number(slots.value), description: description.value };
      if (exists) await api(`/pools/${enc(name.value)}`, { method: "PATCH", body: fields });
      else await api("/pools", { method: "POST", body: { name: name.value, ...fields } });
      notice(`pool ${name.value} set to ${slots.value} slots`, "ok");
      refresh();
    } catch (error) { notice(error.message); }
  } }, name, slots, description, h("button", { class: "primary" }, "Set pool"));
  fill(root, h("h1", {}, "Pools"), form, body);
  refresh = async () => {
    const pools = await fetchAll("/pools", "pools");
    const remove = (pool) => async () => {
      try {
        if (!(await confirmAction(`Delete pool ${pool.name}?`, h("p", {}, "Tasks naming it fail until it is set again.")))) return;
        await api(`/pools/${enc(pool.name)}`, { method: "DELETE" });
        notice(`deleted pool ${pool.name}`, "ok");
        refresh();
      } catch (error) { notice(error.message); }
    };
    fill(body, table([
      ["Pool", (p) => p.name], ["Slots", (p) => p.slots], ["Running", (p) => p.running_slots],
      ["Queued", (p) => p.queued_slots], ["Open", (p) => p.open_slots], ["Description", (p) => p.description || ""],
      ["", (p) => p.name === "default_pool" ? "" : h("button", { class: "danger", onclick: remove(p) }, "Delete")],
    ], pools, (p) => ({ dataset: { pool: p.name } })));
  };
  return every(5, refresh);
}
