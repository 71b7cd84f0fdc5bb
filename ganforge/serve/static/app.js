// The ganforge web page: talks to the server's /api endpoints, nothing else.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function headers(extra = {}) {
  const key = $("api-key").value;
  return key ? { ...extra, "X-API-Key": key } : extra;
}

// fetch + the server's JSON error message as a thrown Error
async function call(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    if (response.status === 503) {
      message += ` (retry in ${response.headers.get("Retry-After") || "a few"} s)`;
    }
    throw new Error(message);
  }
  return response;
}

function figure(src, caption, downloadName, extras = []) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  fig.appendChild(img);
  const text = document.createElement("div");
  text.textContent = caption;
  fig.appendChild(text);
  const actions = document.createElement("div");
  actions.className = "actions";
  if (downloadName) {
    const link = document.createElement("a");
    link.href = src;
    link.download = downloadName;
    link.textContent = "download";
    actions.appendChild(link);
  }
  actions.append(...extras);
  fig.appendChild(actions);
  return fig;
}

// which model made an output, linked to its model card when the server has one
function cardLink(modelName) {
  const model = models.find((m) => m.name === modelName);
  if (!model || !model.card) {
    const note = document.createElement("span");
    note.className = "hint card-link";
    note.textContent = `model: ${modelName} (no card)`;
    return note;
  }
  const link = document.createElement("a");
  link.href = model.card;
  link.className = "card-link";
  link.textContent = `model card: ${modelName}`;
  link.addEventListener("click", (event) => {
    event.preventDefault();
    showCard(model).catch((err) => setStatus(err.message, true));
  });
  return link;
}

async function showCard(model) {
  const text = await (await call(model.card)).text();  // with the API key, unlike a plain link
  $("card-title").textContent = `Model card: ${model.name}`;
  $("card-text").textContent = text;
  $("card-dialog").showModal();
}

function pngBlob(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: "image/png" });
}

// "×4" next to an output: the server's upscaler, its result shown right after the output
function upscaleButton(base64, name) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "x4";
  button.textContent = "×4";
  button.title = "upscale x4 with this server's upscaler";
  button.hidden = !models.some((m) => m.task === "upscale");
  button.addEventListener("click", () => busy(button, async () => {
    setStatus("upscaling…");
    const result = await postImage("/api/upscale", new File([pngBlob(base64)], `${name}.png`), {});
    const big = figure(`data:image/png;base64,${result.png_base64}`,
      `×4 · ${result.width}x${result.height}`, `${name}_x4.png`, [cardLink(result.model)]);
    big.classList.add("upscaled");
    button.closest("figure").after(big);
    setStatus(`upscaled to ${result.width}x${result.height}`);
  }));
  return button;
}

function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40) || "image";
}

function fillSelect(select, values) {
  select.replaceChildren(...values.map((value) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = value;
    return option;
  }));
}

async function busy(button, work) {
  button.disabled = true;
  try {
    await work();
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- start-up
async function loadModels() {
  const health = await (await fetch("/api/health")).json();
  $("key-box").classList.toggle("hidden", !health.auth_required);
  try {
    models = (await (await call("/api/models")).json()).models;
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  const byTask = (task) => models.filter((m) => m.task === task);
  fillSelect($("generate-model"), byTask("text-to-image").map((m) => m.name));
  fillSelect($("translate-model"), byTask("image-to-image").map((m) => m.name));
  $("translate-note").classList.toggle("hidden", byTask("image-to-image").length > 0);
  $("translate-btn").disabled = byTask("image-to-image").length === 0;
  $("upscale-note").classList.toggle("hidden", byTask("upscale").length > 0);
  $("upscale-btn").disabled = byTask("upscale").length === 0;
  updateTranslateOptions();
  updateGenerateOptions();
  setStatus(`ready: ${models.length} model(s)`);
}

function updateTranslateOptions() {
  const model = models.find((m) => m.name === $("translate-model").value);
  fillSelect($("translate-direction"), model ? model.directions : []);
  fillSelect($("translate-style"), model ? model.styles : []);
  $("style-box").classList.toggle("hidden", !(model && model.styles.length));
}

function updateGenerateOptions() {
  const model = models.find((m) => m.name === $("generate-model").value);
  $("tones-box").classList.toggle("hidden", !(model && model.options.includes("skin_tones")));
}

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab.dataset.tab === name);
    $(`panel-${tab.dataset.tab}`).classList.toggle("hidden", tab.dataset.tab !== name);
  }
  setStatus("");
}

// ---------------------------------------------------------------- generate
function generateBody(format) {
  const body = { prompt: $("prompt").value, n: Number($("count").value), format };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  if ($("generate-model").value) body.model = $("generate-model").value;
  if (!$("tones-box").classList.contains("hidden") && $("vary-tones").checked) {
    body.skin_tones = "varied";
  }
  return JSON.stringify(body);
}

async function generate() {
  setStatus("generating…");
  const started = performance.now();
  const response = await call("/api/generate", {
    method: "POST", body: generateBody("json"), headers: { "Content-Type": "application/json" },
  });
  const result = await response.json();
  $("last-seed").textContent = `last: ${result.seed}`;
  const gallery = $("gallery");
  gallery.replaceChildren(...result.images.map((image) => {
    const name = `${slug(result.prompt)}_s${image.seed}_${image.index}`;
    return figure(`data:image/png;base64,${image.png_base64}`,
      `${result.prompt} · seed ${image.seed} · #${image.index}`, `${name}.png`,
      [upscaleButton(image.png_base64, name), cardLink(result.model)]);
  }));
  setStatus(`${result.images.length} image(s) in ${((performance.now() - started) / 1000).toFixed(2)} s`);
}

async function downloadZip() {
  setStatus("generating zip…");
  const response = await call("/api/generate", {
    method: "POST", body: generateBody("zip"), headers: { "Content-Type": "application/json" },
  });
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = `${slug($("prompt").value)}.zip`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  setStatus("zip downloaded");
}

// ---------------------------------------------------------------- uploads
function chosenFile(input) {
  const file = $(input).files[0];
  if (!file) throw new Error("choose an image file first");
  return file;
}

async function postImage(path, file, fields) {
  const form = new FormData();
  form.append("image", file);
  for (const [key, value] of Object.entries(fields)) if (value) form.append(key, value);
  form.append("format", "json");
  return (await call(path, { method: "POST", body: form })).json();
}

async function translate() {
  const file = chosenFile("translate-file");
  setStatus("translating…");
  const styleShown = !$("style-box").classList.contains("hidden");
  const result = await postImage("/api/translate", file, {
    model: $("translate-model").value, direction: $("translate-direction").value,
    style: styleShown ? $("translate-style").value : "",
  });
  const src = `data:image/png;base64,${result.png_base64}`;
  const label = [result.model, result.direction, result.style].filter(Boolean).join(" · ");
  const name = `${slug(file.name)}_${result.direction || "out"}`;
  $("translate-result").replaceChildren(
    figure(URL.createObjectURL(file), `input: ${file.name}`),
    figure(src, label, `${name}.png`,
      [upscaleButton(result.png_base64, name), cardLink(result.model)]));
  setStatus(`translated (${result.width}x${result.height})`);
}

async function upscale() {
  const file = chosenFile("upscale-file");
  setStatus("upscaling…");
  const result = await postImage("/api/upscale", file, {});
  $("upscale-result").replaceChildren(
    figure(URL.createObjectURL(file), `input: ${file.name}`),
    figure(`data:image/png;base64,${result.png_base64}`, `${result.width}x${result.height}`,
      `${slug(file.name)}_upscaled.png`, [cardLink(result.model)]));
  setStatus(`upscaled to ${result.width}x${result.height}`);
}

// verdict in words, as `ganforge verify` decides it; anything else (an error) is "unknown"
const VERDICTS = {
  "generated": ["Generated by ganforge", "the invisible ganforge watermark is in the image"],
  "likely-generated": ["Likely generated by ganforge", "ganforge metadata, a C2PA manifest or the detector says so, but no watermark was found"],
  "no-evidence": ["Not marked by ganforge", "no ganforge watermark or metadata; this does not prove the image is real"],
};

function describeSteps(text) {
  try {
    return JSON.parse(text).map((step) => [step.step, step.scale ? `x${step.scale}` : "",
      step.model ? `by ${step.model}` : "", step.from ? `from ${step.from}` : ""]
      .filter(Boolean).join(" ")).join("; then ");
  } catch (_) {
    return text;
  }
}

// the C2PA manifest as `ganforge verify` words it: valid / untrusted signer / invalid / none /
// not checked (no c2pa extra on the server, say)
function describeC2pa(manifest) {
  const state = (manifest || {}).state || "not checked";
  if (state === "valid" || state === "untrusted signer") {
    const source = (manifest.digital_source_type || "").split("/").pop();
    return [state, `by ${manifest.claim_generator || "?"}`, `signed by ${manifest.signer || "?"}`,
      source].filter(Boolean).join(", ");
  }
  if (state === "invalid") return `invalid (${(manifest.failures || []).join(", ") || "?"})`;
  return manifest && manifest.reason ? `${state} (${manifest.reason})` : state;
}

function evidence(result) {
  const rows = [["why", result.reason]];
  const mark = result.watermark || {};
  rows.push(["watermark", mark.found
    ? `found: ganforge, model id ${mark.model_id}${mark.undone ? ` (after undoing ${mark.undone})` : ""}`
    : `not found (score ${mark.score} < ${mark.threshold})`]);
  const metadata = Object.entries(result.metadata || {});
  if (metadata.length === 0) rows.push(["metadata", "none"]);
  for (const [key, value] of metadata) {
    rows.push([`metadata: ${key}`, key === "steps" ? describeSteps(value) : value]);
  }
  rows.push(["C2PA", describeC2pa(result.c2pa)]);
  rows.push(["detector", result.detector_probability !== null && result.detector_probability !== undefined
    ? `${(100 * result.detector_probability).toFixed(1)}% probability generated`
    : `not run${result.detector_unavailable ? ` (${result.detector_unavailable})` : ""}`]);
  if (result.size) rows.push(["size", result.size.join(" x ")]);
  const list = document.createElement("dl");
  list.className = "evidence";
  for (const [name, value] of rows) {
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = String(value);
    list.append(term, detail);
  }
  return list;
}

function verdictLines(kind, meaning) {
  const verdict = document.createElement("p");
  verdict.id = "verdict";
  verdict.className = `verdict ${kind}`;
  verdict.textContent = VERDICTS[kind] ? VERDICTS[kind][0] : "Unknown";
  const why = document.createElement("p");
  why.className = "note";
  why.textContent = meaning;
  return [verdict, why];
}

async function verify() {
  const file = chosenFile("verify-file");
  setStatus("verifying…");
  let result;
  try {
    result = await postImage("/api/verify", file, {});
  } catch (err) {
    $("verify-result").replaceChildren(...verdictLines("unknown", err.message));
    throw err;
  }
  const known = VERDICTS[result.verdict];
  const [verdict, why] = verdictLines(known ? result.verdict : "unknown",
    known ? known[1] : result.reason || "no verdict");
  const raw = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "raw answer (JSON)";
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(result, null, 2);
  raw.append(summary, pre);
  $("verify-result").replaceChildren(verdict, why, evidence(result), raw);
  setStatus(`verified ${file.name}`);
}

// ---------------------------------------------------------------- wiring
function onSubmit(formId, buttonId, work) {
  $(formId).addEventListener("submit", (event) => {
    event.preventDefault();
    busy($(buttonId), work);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
  onSubmit("generate-form", "generate-btn", generate);
  onSubmit("translate-form", "translate-btn", translate);
  onSubmit("upscale-form", "upscale-btn", upscale);
  onSubmit("verify-form", "verify-btn", verify);
  $("zip-btn").addEventListener("click", () => busy($("zip-btn"), downloadZip));
  $("translate-model").addEventListener("change", updateTranslateOptions);
  $("generate-model").addEventListener("change", updateGenerateOptions);
  $("api-key").addEventListener("change", loadModels);
  $("card-close").addEventListener("click", () => $("card-dialog").close());
  loadModels().catch((err) => setStatus(err.message, true));
});
