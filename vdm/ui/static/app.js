// The vdm ui page: fills the controls from /api/options, sends requests to /api/jobs, follows
// the running one (progress, cancel) and shows its clips. Plain DOM, no build step.
"use strict";

const FIELDS = ["prompt", "negative_prompt", "seed", "seconds", "fps", "aspect", "resolution",
                "steps", "guidance", "sampler", "chunk", "context_noise", "post"];
const $ = (id) => document.getElementById(id);
let options = null;
let following = null;   // id of the request whose progress is shown
let shown = null;       // id of the request whose results are shown

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function fillSelect(select, values, keepFirst = true) {
  const first = keepFirst ? select.querySelector("option") : null;
  select.replaceChildren(...(first ? [first] : []));
  for (const [value, label, title] of values) {
    select.append(el("option", Object.assign({value, text: label}, title ? {title} : {})));
  }
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function count(n) {
  if (!n) return "-";
  const units = ["", "K", "M", "B"];
  const e = Math.min(Math.floor(Math.log10(n) / 3), 3);
  return (n / 1000 ** e).toPrecision(3).replace(/\.?0+$/, "") + units[e];
}

function modelDefaults() {
  // Placeholders show the left model's sample defaults: an empty field means "the model's".
  const model = options.models.find((m) => m.path === $("pane-a-model").value);
  if (!model || !model.sample) return;
  for (const name of ["seconds", "fps", "resolution", "steps", "guidance"]) {
    $(name).placeholder = String(model.sample[name]);
  }
}

async function loadOptions() {
  options = await (await fetch("/api/options")).json();
  const models = options.models.filter((m) => !m.error);
  const modelChoices = models.map((m) => [m.path, `${m.path} (${count(m.params)})`]);
  fillSelect($("pane-a-model"), modelChoices, false);
  fillSelect($("pane-b-model"), modelChoices, true);
  const modes = options.modes.map((m) => [m.name, m.name, m.doc]);
  fillSelect($("pane-a-mode"), modes);
  fillSelect($("pane-b-mode"), modes);
  fillSelect($("sampler"), options.samplers.map((s) => [s, s]));
  fillSelect($("aspect"), options.aspects.map((a) => [a, a]));
  fillSelect($("sweep-axis"), options.sweep_axes.map((a) => [a, a]), false);
  $("sweep-axis").value = "guidance";
  const rows = options.models.map((m) => el("tr", {}, [
    el("td", {text: m.path}), el("td", {text: count(m.params)}),
    el("td", {text: m.resolution || "-"}), el("td", {text: m.trained_on || m.error || "-"}),
    el("td", {text: (m.trained_for || []).join(", ") || "-"}),
    el("td", {text: Object.entries(m.features || {}).filter(([, v]) => v).map(([k]) => k)
                   .join(", ") || "-"})]));
  $("model-table").querySelector("tbody").replaceChildren(...rows);
  modelDefaults();
}

function collectFields(skip) {
  const fields = {};
  for (const name of FIELDS) {
    const value = $(name).value.trim();
    if ((value !== "" || name === "prompt") && name !== skip) fields[name] = $(name).value;
  }
  return fields;
}

function pane(side, skipMode) {
  const p = {checkpoint: $(`pane-${side}-model`).value};
  const mode = $(`pane-${side}-mode`).value;
  if (mode && !skipMode) p.mode = mode;
  return p;
}

async function submit(kind) {
  showError("");
  let request;
  if (kind === "sweep") {
    const axis = $("sweep-axis").value;
    // The swept option comes from the sweep alone (the command refuses it twice).
    request = {kind, fields: collectFields(axis), panes: [pane("a", axis === "mode")],
               sweep: `${axis}=${$("sweep-values").value.trim()}`};
  } else {
    const panes = [pane("a")];
    if ($("pane-b-model").value) panes.push(pane("b"));
    request = {kind, fields: collectFields(null), panes};
  }
  const response = await fetch("/api/jobs", {method: "POST", body: JSON.stringify(request),
                                             headers: {"Content-Type": "application/json"}});
  const body = await response.json();
  if (!response.ok) { showError(body.error); return; }
  follow(body.id);
}

function follow(id) {
  following = id;
  shown = id;
  $("activity").hidden = false;
  poll();
}

async function poll() {
  if (!following) return;
  const job = await (await fetch(`/api/jobs/${following}`)).json();
  const p = job.progress;
  let text = `${job.id}: ${job.status}`;
  if (job.status === "running" && p) {
    text += ` · clip ${p.clip}/${p.clips} · step ${p.step}/${p.steps}` +
            (p.chunks > 1 ? ` · chunk ${p.chunk}/${p.chunks}` : "");
    $("progress").max = p.clips * p.chunks * p.steps;
    $("progress").value = ((p.clip - 1) * p.chunks + (p.chunk - 1)) * p.steps + p.step;
  } else if (job.status === "running") {
    text += " · loading the model and compiling";
    $("progress").removeAttribute("value");
  }
  $("progress-text").textContent = text;
  if (shown === job.id) render(job);
  if (["done", "failed", "cancelled", "interrupted"].includes(job.status)) {
    following = null;
    $("cancel").disabled = true;
    $("progress").max = 1; $("progress").value = job.status === "done" ? 1 : 0;
    if (job.error) showError(job.error);
    loadHistory();
  } else {
    $("cancel").disabled = false;
    setTimeout(poll, 250);
  }
}

function video(src) {
  const v = el("video", {src, muted: "", autoplay: "", loop: "", playsinline: "", controls: ""});
  v.muted = true;
  v.addEventListener("loadeddata", () => v.play().catch(() => {}));
  return v;
}

function keepVideo(container, key, src) {
  // Re-rendering on every poll must not restart a clip that is already playing.
  if (!src) return null;
  const node = container.querySelector(`[data-key="${key}"]`);
  return node && node.dataset.src === src ? node : null;
}

function render(job) {
  const url = (name) => `/files/${job.id}/${name}`;
  $("results-title").hidden = false;
  $("results-title").textContent = `${job.id} · ${job.kind} · ${job.status}`;
  const compare = $("compare"), sweep = $("sweep");
  if (job.kind === "compare") {
    sweep.replaceChildren();
    $("grid-files").hidden = true;
    const panes = job.request.panes.map((p, i) => {
      const label = "AB"[i];
      const clip = job.clips.find((c) => c.label === label);
      const key = `pane-${label}`;
      const src = clip ? url(clip.file) : "";
      const kept = keepVideo(compare, key, src);
      if (kept) return kept;
      const title = `${label === "A" ? "Left" : "Right"}: ${p.checkpoint}` +
                    (p.mode ? ` · ${p.mode}` : "");
      const children = [el("h3", {text: title})];
      if (clip) {
        const t = clip.record.timings, r = clip.record.request;
        children.push(video(src),
          el("div", {class: "timings", text: `${r.frames} frames ${r.width}x${r.height} at ` +
            `${r.fps} fps · ${r.mode} · ${r.sampler} · generate ${t.generate_seconds.toFixed(2)} s` +
            ` · load ${t.load_seconds.toFixed(2)} s`}),
          el("code", {class: "command", text: job.commands[i]}),
          el("details", {}, [el("summary", {text: `sidecar ${clip.sidecar}`}),
                             el("pre", {text: JSON.stringify(clip.record, null, 1)})]));
      } else {
        children.push(el("div", {class: "timings", text: job.status === "running" ||
                                 job.status === "queued" ? "waiting…" : "no clip"}));
      }
      const node = el("div", {class: "pane", id: `result-${label.toLowerCase()}`}, children);
      node.dataset.key = key;
      node.dataset.src = src;
      return node;
    });
    compare.replaceChildren(...panes);
  } else {
    compare.replaceChildren();
    const cells = job.clips.map((clip) => {
      const src = url(clip.file), key = `cell-${clip.file}`;
      const kept = keepVideo(sweep, key, src);
      if (kept) return kept;
      const axis = job.request.sweep.split("=")[0];
      const t = clip.record.timings;
      const node = el("figure", {class: "cell"}, [video(src), el("figcaption", {
        text: `${axis}=${clip.value} · ${t.generate_seconds.toFixed(2)} s`})]);
      node.dataset.key = key;
      node.dataset.src = src;
      return node;
    });
    sweep.replaceChildren(...cells);
    if (job.grid) {
      $("grid-files").hidden = false;
      $("grid-png-link").href = url(job.grid.png);
      $("grid-gif-link").href = url(job.grid.gif);
      if ($("grid-png").getAttribute("src") !== url(job.grid.png)) $("grid-png").src = url(job.grid.png);
    } else {
      $("grid-files").hidden = true;
    }
  }
}

async function loadHistory() {
  const jobs = await (await fetch("/api/jobs")).json();
  const items = jobs.map((job) => {
    const prompt = (job.request.fields || {}).prompt || "";
    const item = el("li", {class: `status-${job.status}`, text:
      `${job.id} · ${job.kind}${job.request.sweep ? " " + job.request.sweep : ""} · ` +
      `${job.status} · ${job.clips.length} clip(s) · "${prompt.slice(0, 60)}"`});
    item.addEventListener("click", () => { shown = job.id; render(job); showError(job.error); });
    return item;
  });
  $("history-list").replaceChildren(...items);
}

$("run-compare").addEventListener("click", () => submit("compare"));
$("run-sweep").addEventListener("click", () => submit("sweep"));
$("cancel").addEventListener("click", async () => {
  if (following) await fetch(`/api/jobs/${following}/cancel`, {method: "POST"});
});
$("pane-a-model").addEventListener("change", modelDefaults);
loadOptions().then(loadHistory);
