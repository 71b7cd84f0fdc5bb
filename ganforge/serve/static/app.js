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

function figure(src, caption, downloadName) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  fig.appendChild(img);
  const text = document.createElement("div");
  text.textContent = caption;
  fig.appendChild(text);
  if (downloadName) {
    const link = document.createElement("a");
    link.href = src;
    link.download = downloadName;
    link.textContent = "download";
    fig.appendChild(link);
  }
  return fig;
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
  setStatus(`ready: ${models.length} model(s)`);
}

function updateTranslateOptions() {
  const model = models.find((m) => m.name === $("translate-model").value);
  fillSelect($("translate-direction"), model ? model.directions : []);
  fillSelect($("translate-style"), model ? model.styles : []);
  $("style-box").classList.toggle("hidden", !(model && model.styles.length));
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
  return JSON.stringify(body);
}

async function generate() {
  setStatus("generating…");
  const started = performance.now();
  const response = await call("/api/generate", {
    method: "POST", body: generateBody("json"), headers: { "Content-Type": "application/json" },
  });
  const result = await response.json();
  $("seed").placeholder = `random (last: ${result.seed})`;
  const gallery = $("gallery");
  gallery.replaceChildren(...result.images.map((image) => figure(
    `data:image/png;base64,${image.png_base64}`, `${result.prompt} · seed ${image.seed} · #${image.index}`,
    `${slug(result.prompt)}_s${image.seed}_${image.index}.png`)));
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
  $("translate-result").replaceChildren(
    figure(URL.createObjectURL(file), `input: ${file.name}`),
    figure(src, label, `${slug(file.name)}_${result.direction || "out"}.png`));
  setStatus(`translated (${result.width}x${result.height})`);
}

async function upscale() {
  const file = chosenFile("upscale-file");
  setStatus("upscaling…");
  const result = await postImage("/api/upscale", file, {});
  $("upscale-result").replaceChildren(
    figure(URL.createObjectURL(file), `input: ${file.name}`),
    figure(`data:image/png;base64,${result.png_base64}`, `${result.width}x${result.height}`,
      `${slug(file.name)}_upscaled.png`));
  setStatus(`upscaled to ${result.width}x${result.height}`);
}

function table(object) {
  const tbl = document.createElement("table");
  for (const [key, value] of Object.entries(object)) {
    const row = tbl.insertRow();
    const name = document.createElement("th");
    name.textContent = key;
    row.appendChild(name);
    const cell = row.insertCell();
    if (value && typeof value === "object" && !Array.isArray(value)) {
      cell.appendChild(table(value));
    } else {
      cell.textContent = Array.isArray(value) ? value.join(", ") : String(value);
    }
  }
  return tbl;
}

async function verify() {
  const file = chosenFile("verify-file");
  setStatus("verifying…");
  const result = await postImage("/api/verify", file, {});
  const raw = document.createElement("pre");
  raw.textContent = JSON.stringify(result, null, 2);
  $("verify-result").replaceChildren(table(result), raw);
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
  $("api-key").addEventListener("change", loadModels);
  loadModels().catch((err) => setStatus(err.message, true));
});
