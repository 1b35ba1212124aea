// The explorer page: input, class scores, the layer strip, map detail and Grad-CAM.
// Plain ES modules, no build step and nothing from the network: the server sends these files.
// Every result has one of three states: empty (no image yet), loading, or error; an error
// clears the last result, so an old image and its prediction never sit beside a new error.

import { api, postImage } from "./api.js";
import { clearConvStep, showConvStep } from "./conv.js";
import { $, el, loadImage, pngSrc } from "./dom.js";
import { startLive } from "./live.js";
import { formatValue, inferno, paint, scaleBar } from "./maps.js";
import { markSelected, prepareLayers, renderOverview, setupStrip } from "./overview.js";
import { startPlayground } from "./playground.js";
import { TOP, showScores, showScoresMessage, watchScores } from "./scores.js";

const state = { model: null, image: null, layers: [], inputPng: null, selected: null, request: 0 };
const fmt = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
const EMPTY_STRIP = "The feature maps of every layer appear here.";

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// ------------------------------------------------------------------ the model

async function loadModel() {
  const model = await api("/api/model");
  state.model = model;
  $("model-notation").textContent = model.notation;
  const totals = model.plan?.totals; // null for an .onnx model cnnkit did not export
  $("model-totals").textContent = totals
    ? `${fmt.format(totals.params)} params · ${fmt.format(totals.macs)} MACs · ${model.classes.length} classes`
    : `${model.classes.length} classes`;
  const [h, w, c] = model.input_shape;
  $("seen-caption").textContent = `what the model sees: ${h}×${w}×${c}`;
  if (c === 1) setupDrawing();
  const select = $("cam-class");
  select.replaceChildren(
    ...model.classes.map((name, index) => el("option", { value: index }, name === String(index) ? name : `${index}: ${name}`)),
  );
  setStatus("Give the model an image.");
}

// ------------------------------------------------------------------ result states

function setBusy(busy) {
  for (const id of ["predict-card", "overview-card"]) {
    $(id).classList.toggle("busy", busy);
    $(id).setAttribute("aria-busy", String(busy));
  }
}

// Empty and error look alike: nothing of an earlier result stays on the page.
function clearResult(message, isError) {
  Object.assign(state, { image: null, layers: [], inputPng: null, selected: null });
  const seen = $("seen");
  seen.getContext("2d").clearRect(0, 0, seen.width, seen.height);
  seen.dataset.empty = "true";
  showScoresMessage(message, isError);
  $("overview").replaceChildren(el("p", { class: isError ? "empty error" : "empty" }, isError ? `No result: ${message}` : EMPTY_STRIP));
  $("strip-nav").hidden = true;
  $("detail").hidden = true;
  for (const id of ["cam-input", "cam-heat", "cam-saliency"]) $(id).removeAttribute("src");
  $("cam-scales").replaceChildren();
  $("cam-class").disabled = true;
  $("cam-class").selectedIndex = -1;
  $("cam-note").textContent = "";
  setStatus(message, isError);
}

async function analyse(blob) {
  const request = ++state.request;
  setStatus("Running the network…");
  if (!state.image) {
    // Nothing to dim yet: say what is happening where the result will appear.
    showScoresMessage("Running the network…");
    $("overview").replaceChildren(el("p", { class: "empty" }, "Running the network…"));
  }
  setBusy(true);
  try {
    const classes = state.model ? state.model.classes.length : TOP;
    const result = await postImage(`/api/activations?format=array&k=${Math.min(1000, Math.max(TOP, classes))}`, blob);
    if (request !== state.request) return; // a newer image was given meanwhile
    Object.assign(state, { image: result.image, inputPng: result.input_png, layers: prepareLayers(result.layers) });
    showScores(result.top, classes);
    await drawSeen(result.input_png);
    const selected = state.layers.some((layer) => layer.name === state.selected?.layer) ? state.selected : null;
    renderOverview(result, state.layers, state.model.input_shape, selectMap, selected);
    $("cam-class").disabled = false;
    $("cam-class").value = String(result.top[0].index);
    const best = result.top[0];
    setStatus(`Predicted ${best.label} (${(100 * best.probability).toFixed(1)}%).`);
    if (selected) selectMap(selected.layer, selected.channel, false);
    await updateGradcam();
  } catch (error) {
    if (request !== state.request) return;
    // 501: an .onnx model, which answers predictions only; the message says what to serve instead.
    if (error.status === 501) await predictOnly(blob, error.message, request);
    else clearResult(error.message, true);
  } finally {
    if (request === state.request) setBusy(false);
  }
}

async function predictOnly(blob, note, request) {
  try {
    const classes = state.model.classes.length;
    const result = await postImage(`/api/predict?k=${Math.min(1000, Math.max(TOP, classes))}`, blob);
    if (request !== state.request) return;
    clearResult(note, false);
    showScores(result.top, classes);
    $("overview").replaceChildren(el("p", { class: "empty" }, note));
    $("cam-note").textContent = note;
    const best = result.top[0];
    setStatus(`Predicted ${best.label} (${(100 * best.probability).toFixed(1)}%).`);
  } catch (error) {
    if (request === state.request) clearResult(error.message, true);
  }
}

async function drawSeen(base64) {
  const img = await loadImage(pngSrc(base64));
  const canvas = $("seen");
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const scale = Math.min(canvas.width / img.width, canvas.height / img.height);
  const w = img.width * scale;
  const h = img.height * scale;
  ctx.drawImage(img, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  canvas.dataset.empty = "false";
}

// ------------------------------------------------------------------ input

function setupInput() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) analyse(file);
    event.target.value = ""; // the same file chosen again is a new analysis
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const [file] = event.dataTransfer.files;
    if (file) analyse(file);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") $("file").click();
  });
  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData?.items || [])].find((entry) => entry.type.startsWith("image/"));
    if (item) analyse(item.getAsFile());
  });
}

function setupDrawing() {
  $("draw-box").hidden = false;
  const canvas = $("draw");
  const ctx = canvas.getContext("2d");
  const clear = () => {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 20;
  ctx.lineCap = ctx.lineJoin = "round";
  let drawing = false;
  let last = null;
  let pending = false;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [((event.clientX - box.left) * canvas.width) / box.width, ((event.clientY - box.top) * canvas.height) / box.height];
  };
  const blob = () => new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  // Live bars while drawing, at most one request in flight; the full analysis on release.
  const live = async () => {
    if (pending) return;
    pending = true;
    try {
      showScores((await postImage(`/api/predict?k=${TOP}`, await blob())).top, state.model.classes.length);
    } catch (error) {
      setStatus(error.message, true);
    } finally {
      pending = false;
    }
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    last = point(event);
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const next = point(event);
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...next);
    ctx.stroke();
    last = next;
    live();
  });
  const end = async () => {
    if (!drawing) return;
    drawing = false;
    analyse(await blob());
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", clear);
}

// ------------------------------------------------------------------ detail and conv step

function selectMap(layerName, channelIndex, scroll = true) {
  const layer = state.layers.find((entry) => entry.name === layerName);
  const channel = layer?.channels.find((entry) => entry.index === channelIndex);
  if (!channel) return;
  state.selected = { layer: layerName, channel: channelIndex };
  markSelected(state.selected);
  const section = $("detail");
  section.hidden = false;
  $("detail-title").textContent = `${layerName} · channel ${channelIndex} · ${layer.text}`;
  const isConv = layer.kind === "conv";
  const [height, width] = layer.size;
  $("zoom-note").textContent =
    `${layer.shape[0]}×${layer.shape[1]}${layer.downsampled ? ` (shown at ${height}×${width})` : ""} · ` +
    `min ${channel.min.toFixed(3)} · max ${channel.max.toFixed(3)}` +
    (isConv ? " · click a pixel to see its convolution" : "");
  const source = paint(channel.values, height, width, layer.range);
  const canvas = $("zoom");
  drawZoom(canvas, source, null);
  $("zoom-scale").replaceChildren(scaleBar(layer.range, `${layerName}, all channels`));
  canvas.onclick = isConv
    ? (event) => {
        // The map may be shown downsampled: pick the output pixel of the layer's real size.
        const box = canvas.getBoundingClientRect();
        const x = Math.floor(((event.clientX - box.left) / box.width) * layer.shape[1]);
        const y = Math.floor(((event.clientY - box.top) / box.height) * layer.shape[0]);
        const shown = { x: Math.floor((x * width) / layer.shape[1]), y: Math.floor((y * height) / layer.shape[0]) };
        drawZoom(canvas, source, shown);
        pickPixel(layer, channelIndex, y, x);
      }
    : null;
  canvas.classList.toggle("clickable", isConv);
  drawReceptive(null);
  clearConvStep(isConv ? "Click a pixel of the enlarged map." : "Convolution steps are shown for conv layers; pick a conv map.");
  if (scroll) section.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function drawZoom(canvas, source, pick) {
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
  const cw = canvas.width / source.width;
  const ch = canvas.height / source.height;
  if (source.width <= 32) {
    ctx.strokeStyle = "rgba(255,255,255,0.18)";
    ctx.lineWidth = 1;
    for (let i = 1; i < source.width; i++) line(ctx, i * cw, 0, i * cw, canvas.height);
    for (let j = 1; j < source.height; j++) line(ctx, 0, j * ch, canvas.width, j * ch);
  }
  if (pick) {
    ctx.strokeStyle = "#22d3ee";
    ctx.lineWidth = 3;
    ctx.strokeRect(pick.x * cw + 1.5, pick.y * ch + 1.5, cw - 3, ch - 3);
  }
}

function line(ctx, x0, y0, x1, y1) {
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
}

async function drawReceptive(box) {
  const canvas = $("rf");
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#f1f3f7";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!state.inputPng) return;
  const img = await loadImage(pngSrc(state.inputPng));
  const scale = Math.min(canvas.width / img.width, canvas.height / img.height);
  const ox = (canvas.width - img.width * scale) / 2;
  const oy = (canvas.height - img.height * scale) / 2;
  ctx.drawImage(img, ox, oy, img.width * scale, img.height * scale);
  if (!box) {
    $("rf-note").textContent = "receptive field on the input";
    return;
  }
  // Dim everything but the window; the window may run past the image into padding.
  ctx.fillStyle = "rgba(15,23,42,0.55)";
  ctx.fillRect(ox, oy, img.width * scale, img.height * scale);
  ctx.save();
  ctx.beginPath();
  ctx.rect(ox, oy, img.width * scale, img.height * scale);
  ctx.clip();
  ctx.drawImage(img, box.left, box.top, box.width, box.height, ox + box.left * scale, oy + box.top * scale, box.width * scale, box.height * scale);
  ctx.restore();
  ctx.strokeStyle = "#22d3ee";
  ctx.lineWidth = 2;
  ctx.strokeRect(ox + box.left * scale, oy + box.top * scale, box.width * scale, box.height * scale);
  $("rf-note").textContent = `receptive field: ${box.height}×${box.width} px from (${box.top}, ${box.left})`;
}

async function pickPixel(layer, channel, y, x) {
  try {
    const step = await api(`/api/conv-step?image=${encodeURIComponent(state.image)}&layer=${layer.name}&channel=${channel}&y=${y}&x=${x}`);
    await drawReceptive(step.receptive_field);
    showConvStep(step);
  } catch (error) {
    clearConvStep(error.message, true);
  }
}

// ------------------------------------------------------------------ Grad-CAM

async function updateGradcam() {
  if (!state.image) return;
  const image = state.image;
  const target = $("cam-class").value;
  try {
    const cam = await api(`/api/gradcam?image=${encodeURIComponent(image)}&class=${target}`, { method: "POST" });
    if (image !== state.image) return;
    $("cam-input").src = pngSrc(cam.input_png);
    $("cam-heat").src = pngSrc(cam.heatmap_png);
    $("cam-saliency").src = pngSrc(cam.saliency_png);
    // The server draws both over [0, their max] with inferno; the scales say what max was.
    const peak = Math.max(0, ...cam.cam_cells.flat());
    $("cam-scales").replaceChildren(
      scaleBar(inferno(peak || 1), `Grad-CAM of ${cam.layer}: 0 to its max${peak ? "" : " (all 0)"}`),
      scaleBar(inferno(1), "saliency, relative to its max"),
    );
    $("cam-note").textContent = `layer ${cam.layer} · p(${cam.label}) = ${(100 * cam.probability).toFixed(1)}% · max ${formatValue(peak)}`;
  } catch (error) {
    $("cam-note").textContent = error.message;
  }
}

function setupGradcam() {
  $("cam-class").addEventListener("change", updateGradcam);
  const opacity = () => ($("cam-heat").style.opacity = String($("cam-opacity").value / 100));
  $("cam-opacity").addEventListener("input", opacity);
  opacity();
}

// ------------------------------------------------------------------ start

setupInput();
setupGradcam();
setupStrip();
watchScores();
startPlayground();
// The live view asks after the model has: one token dialog at most.
loadModel()
  .catch((error) => clearResult(`The model could not be loaded: ${error.message}`, true))
  .finally(() => startLive());
