// runs.js: agent runs and actions on the chat page. RunPanel shows the conversation's active run
// (working…, waiting for you, failed) with a Stop button; actionBody draws a message's question to
// the human as buttons (confirm, choice) or a small form, and once answered who answered it.
// Data goes into textContent and input attributes only, never into innerHTML.

const ENDED = new Set(["completed", "failed", "cancelled"]);
const RUN_LABELS = { queued: "queued…", running: "working…", requires_action: "waiting for you",
                     completed: "done", failed: "failed", cancelled: "stopped" };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, onClick) {
  const node = el("button", "", label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

/** The run shown under the conversation: the newest one not ended, else the newest one. */
export function shownRun(runs) {
  const newest = [...runs.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  return newest.find((run) => !ENDED.has(run.status)) ?? newest[0] ?? null;
}

export class RunPanel {
  /** @param {HTMLElement} node  where the run state goes; @param client a ChatClient */
  constructor(node, client, onProblem) {
    this.node = node;
    this.client = client;
    this.onProblem = onProblem;
  }

  show() {
    const run = shownRun(this.client.runs);
    this.node.replaceChildren();
    this.node.hidden = !run || (ENDED.has(run.status) && run.status !== "failed");
    if (this.node.hidden) return;
    this.node.dataset.status = run.status;
    let label = `${run.agent}: ${RUN_LABELS[run.status]}`;
    if (run.status === "running" && run.activity) label += ` (${run.activity})`;
    if (run.status === "failed" && run.error) label += `: ${run.error.message ?? run.error.code ?? ""}`;
    if (!ENDED.has(run.status) && run.cancel_requested_at) label += " stopping…";
    this.node.append(el("span", "run-state", label));
    if (!ENDED.has(run.status) && !run.cancel_requested_at) {
      const stop = button("Stop", () => {
        stop.disabled = true;
        this.client.cancelRun(run.id).catch((err) => { stop.disabled = false; this.onProblem(err.message); });
      });
      stop.className = "stop";
      this.node.append(stop);
    }
  }
}

function answeredText(action) {
  const { answer } = action;
  const chosen = answer.option !== undefined
    ? (action.options ?? []).find((o) => o.id === answer.option)?.label ?? answer.option
    : Object.entries(answer.values ?? {}).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(", ");
  return `${chosen} — answered by ${action.answered_by}`;
}

function formInputs(schema) {
  return Object.entries(schema.properties ?? {}).map(([name, property]) => {
    const label = el("label", "field", property.title ?? name);
    const input = el("input");
    input.name = name;
    input.type = property.type === "integer" || property.type === "number" ? "number"
      : property.type === "boolean" ? "checkbox" : "text";
    if (property.type === "number") input.step = "any";
    input.required = (schema.required ?? []).includes(name) && input.type !== "checkbox";
    input.dataset.kind = property.type ?? "string";
    label.append(input);
    return label;
  });
}

function formValues(form) {
  const values = {};
  for (const input of form.querySelectorAll("input")) {
    if (input.dataset.kind === "boolean") values[input.name] = input.checked;
    else if (input.value === "") continue;
    else if (input.dataset.kind === "integer" || input.dataset.kind === "number") values[input.name] = Number(input.value);
    else values[input.name] = input.value;
  }
  return values;
}

/** A message's action: its prompt, then the answer, or buttons / a form that answer it. */
export function actionBody(message, answer) {
  const { action } = message;
  const box = el("div", "action");
  box.dataset.kind = action.kind;
  box.append(el("div", "prompt", action.prompt));
  if (action.answer) {
    box.dataset.answered = "true";
    box.append(el("div", "answered", answeredText(action)));
    return box;
  }
  if (action.expires_at && new Date(action.expires_at) <= new Date()) {
    box.append(el("div", "answered", "expired"));
    return box;
  }
  const send = (body, controls) => {
    controls.forEach((c) => { c.disabled = true; });
    answer(message.id, body).catch(() => controls.forEach((c) => { c.disabled = false; }));
  };
  if (action.kind === "form") {
    const form = el("form", "action-form");
    const submit = el("button", "", "Send");
    submit.type = "submit";
    form.append(...formInputs(action.schema ?? {}), submit);
    form.addEventListener("submit", (e) => { e.preventDefault(); send({ values: formValues(form) }, [submit]); });
    box.append(form);
  } else {
    const row = el("div", "options");
    const buttons = (action.options ?? []).map((option) => button(option.label, () => send({ option: option.id }, buttons)));
    buttons.forEach((b, i) => { b.dataset.option = action.options[i].id; });
    row.append(...buttons);
    box.append(row);
  }
  return box;
}
