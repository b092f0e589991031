// Building the page from data with textContent only (no HTML from data: a DAG id or a log
// line can never become markup), plus the confirmation dialog and notices.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

// Replace an element's children, skipping null, undefined and false (replaceChildren would print them).
export function fill(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

export function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const SVG = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

export function stateClass(state) {
  return "state-" + (state || "none");
}

export function badge(state) {
  return h("span", { class: "badge " + stateClass(state), dataset: { state: state || "none" } }, state || "none");
}

export function formatDate(value) {
  if (!value) return "";
  const date = new Date(value);
  return isNaN(date) ? String(value) : date.toLocaleString();
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return seconds.toFixed(seconds < 10 ? 2 : 1) + " s";
  const minutes = Math.floor(seconds / 60);
  return minutes < 60 ? `${minutes} min ${Math.round(seconds % 60)} s` : `${(minutes / 60).toFixed(1)} h`;
}

export function notice(message, kind = "error") {
  const box = document.getElementById("notice");
  box.textContent = message;
  box.className = "notice " + kind;
  box.hidden = !message;
  if (message && kind === "ok") setTimeout(() => { if (box.textContent === message) box.hidden = true; }, 4000);
}

// Ask before acting: resolves true only when the user presses Confirm.
export function confirmAction(title, ...body) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  const holder = document.getElementById("confirm-body");
  fill(holder, body);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

export function table(columns, rows, rowAttrs = () => ({})) {
  return h("table", { class: "list" },
    h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", {}, label)))),
    h("tbody", {}, rows.map((row) => h("tr", rowAttrs(row), columns.map(([, cell]) => h("td", {}, cell(row)))))));
}

// Run `work` now and every `seconds` until the returned stop function is called or
// `work` returns false.
export function every(seconds, work) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      if ((await work()) === false) stopped = true;
    } catch (error) { notice(error.message); }
    if (!stopped) timer = setTimeout(tick, seconds * 1000);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
