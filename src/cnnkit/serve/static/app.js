// The explorer page: input, prediction bars, the layer overview, map detail and Grad-CAM.
// Plain ES modules, no build step: the server sends these files as they are.

import { api, postImage } from "./api.js";
import { clearConvStep, diverging, showConvStep } from "./conv.js";
import { startPlayground } from "./playground.js";

const $ = (id) => document.getElementById(id);
const state = { model: null, image: null, layers: [], inputPng: null, predicted: 0, selected: null };

const fmt = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
const shapeText = (shape) => shape.join("×");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    // CSSOM, not a style attribute: the page's CSP forbids inline style attributes.
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

const pngSrc = (base64) => `data:image/png;base64,${base64}`;

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = reject;
    img.src = src;
  });
}

// ------------------------------------------------------------------ the model

async function loadModel() {
  const model = await api("/api/model");
  state.model = model;
  $("model-notation").textContent = model.notation;
  const totals = model.plan.totals;
  $("model-totals").textContent =
    `${fmt.format(totals.params)} params · ${fmt.format(totals.macs)} MACs · ${model.classes.length} classes`;
  const [h, w, c] = model.input_shape;
  $("seen-caption").textContent = `what the model sees: ${h}×${w}×${c}`;
  if (c === 1) setupDrawing();
  const select = $("cam-class");
  select.replaceChildren(...model.classes.map((name, index) => el("option", { value: index }, name === String(index) ? name : `${index}: ${name}`)));
}

// ------------------------------------------------------------------ input

async function analyse(blob) {
  setStatus("Running the network…");
  try {
    const [prediction, activations] = await Promise.all([
      postImage("/api/predict?k=5", blob),
      postImage("/api/activations?format=png&k=5", blob),
    ]);
    showBars(prediction.top);
    state.image = activations.image;
    state.layers = activations.layers;
    state.inputPng = activations.input_png;
    state.predicted = prediction.top[0].index;
    await drawSeen(activations.input_png);
    renderOverview(activations);
    $("cam-class").disabled = false;
    $("cam-class").value = String(state.predicted);
    await updateGradcam();
    if (state.selected) selectMap(state.selected.layer, state.selected.channel);
    setStatus(`Predicted ${prediction.top[0].label} (${(100 * prediction.top[0].probability).toFixed(1)}%).`);
  } catch (error) {
    setStatus(error.message, true);
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
}

function setupInput() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) analyse(file);
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
      showBars((await postImage("/api/predict?k=5", await blob())).top);
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

// ------------------------------------------------------------------ prediction bars

function showBars(top) {
  $("bars").replaceChildren(
    ...top.map((entry, rank) =>
      el(
        "li",
        { class: rank === 0 ? "best" : "", dataset: { label: entry.label } },
        el("span", { class: "label" }, entry.label),
        el("span", { class: "track" }, el("span", { class: "fill", style: { width: `${(100 * entry.probability).toFixed(1)}%` } })),
        el("span", { class: "prob" }, `${(100 * entry.probability).toFixed(1)}%`),
      ),
    ),
  );
}

// ------------------------------------------------------------------ overview

function tileSize(count) {
  if (count <= 8) return 48;
  if (count <= 16) return 32;
  return 24;
}

function layerHeader(title, detail, extra) {
  return el("header", {}, el("strong", {}, title), el("span", { class: "text" }, detail), el("span", { class: "meta" }, extra));
}

function renderOverview(result) {
  const columns = [];
  const [h, w, c] = state.model.input_shape;
  columns.push(
    el(
      "div",
      { class: "layer-col input-col" },
      layerHeader("input", "image", `${h}×${w}×${c}`),
      el("div", { class: "maps" }, el("img", { class: "map", src: pngSrc(result.input_png), alt: "input", style: { width: "64px", height: "64px" } })),
    ),
  );
  for (const layer of result.layers) {
    // Flat layers get a narrow column: their maps are one strip, the text goes in the tooltip.
    const shape = layer.flat ? `${layer.shape[2]}` : shapeText(layer.shape);
    const meta = `${shape}${layer.params ? ` · ${fmt.format(layer.params)} p` : ""}`;
    const column = el(
      "div",
      { class: `layer-col kind-${layer.kind}${layer.flat ? " flat-col" : ""}`, title: layer.flat ? layer.text : "", dataset: { layer: layer.name } },
      layerHeader(layer.name, layer.flat ? "" : layer.text, meta),
    );
    if (layer.flat) {
      column.append(flatStrip(layer));
    } else {
      const size = tileSize(layer.channels.length);
      const perColumn = layer.channels.length > 8 ? 2 : 1;
      const maps = el("div", { class: "maps", style: { gridTemplateColumns: `repeat(${perColumn}, ${size}px)` } });
      for (const channel of layer.channels) {
        maps.append(
          el("img", {
            class: "map",
            src: pngSrc(channel.png),
            alt: `${layer.name} channel ${channel.index}`,
            title: `${layer.name} channel ${channel.index}: min ${channel.min.toFixed(3)}, max ${channel.max.toFixed(3)}`,
            style: { width: `${size}px`, height: `${size}px` },
            tabindex: "0",
            dataset: { layer: layer.name, channel: channel.index },
            onclick: () => selectMap(layer.name, channel.index),
            onkeydown: (event) => event.key === "Enter" && selectMap(layer.name, channel.index),
          }),
        );
      }
      column.append(maps);
      if (layer.channels_total > layer.channels.length)
        column.append(el("p", { class: "hint" }, `first ${layer.channels.length} of ${layer.channels_total}`));
    }
    columns.push(column);
  }
  columns.push(scoresColumn(result.layers.at(-1)));
  $("overview").replaceChildren(...columns);
}

function flatStrip(layer) {
  // A flat layer as a column of cells, blue (negative) to red (positive).
  const values = layer.values;
  const rows = Math.min(values.length, 48);
  const cols = Math.ceil(values.length / rows);
  const cell = values.length > 200 ? 3 : 6;
  const canvas = el("canvas", { class: "strip", width: cols * cell, height: rows * cell });
  const ctx = canvas.getContext("2d");
  const limit = Math.max(1e-9, ...values.map(Math.abs));
  values.forEach((value, index) => {
    ctx.fillStyle = diverging(value / limit);
    ctx.fillRect(Math.floor(index / rows) * cell, (index % rows) * cell, cell, cell);
  });
  return el("div", { class: "maps flat" }, canvas);
}

function scoresColumn(last) {
  const logits = last.values;
  const peak = Math.max(...logits);
  const exps = logits.map((v) => Math.exp(v - peak));
  const total = exps.reduce((a, b) => a + b, 0);
  const probs = last.kind === "softmax" ? logits : exps.map((v) => v / total);
  const best = probs.indexOf(Math.max(...probs));
  const list = el("ol", { class: "scores" });
  probs.forEach((p, index) => {
    list.append(
      el(
        "li",
        { class: index === best ? "best" : "" },
        el("span", { class: "label" }, state.model.classes[index]),
        el("span", { class: "track" }, el("span", { class: "fill", style: { width: `${(100 * p).toFixed(1)}%` } })),
      ),
    );
  });
  return el("div", { class: "layer-col scores-col" }, layerHeader("scores", "softmax", `${probs.length} classes`), list);
}

// ------------------------------------------------------------------ detail and conv step

async function selectMap(layerName, channelIndex) {
  const layer = state.layers.find((entry) => entry.name === layerName);
  if (!layer) return;
  const channel = layer.channels[channelIndex];
  state.selected = { layer: layerName, channel: channelIndex };
  document.querySelectorAll(".map.selected").forEach((node) => node.classList.remove("selected"));
  document.querySelector(`.map[data-layer="${layerName}"][data-channel="${channelIndex}"]`)?.classList.add("selected");
  const section = $("detail");
  section.hidden = false;
  $("detail-title").textContent = `${layerName} · channel ${channelIndex} · ${layer.text}`;
  const isConv = layer.kind === "conv";
  $("zoom-note").textContent =
    `${layer.size.join("×")}${layer.downsampled ? " (downsampled)" : ""} · min ${channel.min.toFixed(3)} · max ${channel.max.toFixed(3)}` +
    (isConv ? " · click a pixel to see its convolution" : "");
  const img = await loadImage(pngSrc(channel.png));
  const canvas = $("zoom");
  drawZoom(canvas, img, null);
  canvas.onclick = isConv
    ? (event) => {
        const box = canvas.getBoundingClientRect();
        const x = Math.floor(((event.clientX - box.left) / box.width) * img.width);
        const y = Math.floor(((event.clientY - box.top) / box.height) * img.height);
        pickPixel(layer, channelIndex, img, y, x);
      }
    : null;
  canvas.classList.toggle("clickable", isConv);
  await drawReceptive(null);
  clearConvStep(isConv ? "Click a pixel of the enlarged map." : "Convolution steps are shown for conv layers; pick a conv map.");
  section.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function drawZoom(canvas, img, pick) {
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const cw = canvas.width / img.width;
  const ch = canvas.height / img.height;
  if (img.width <= 32) {
    ctx.strokeStyle = "rgba(255,255,255,0.18)";
    ctx.lineWidth = 1;
    for (let i = 1; i < img.width; i++) line(ctx, i * cw, 0, i * cw, canvas.height);
    for (let j = 1; j < img.height; j++) line(ctx, 0, j * ch, canvas.width, j * ch);
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

async function pickPixel(layer, channel, img, y, x) {
  drawZoom($("zoom"), img, { y, x });
  try {
    const step = await api(`/api/conv-step?image=${encodeURIComponent(state.image)}&layer=${layer.name}&channel=${channel}&y=${y}&x=${x}`);
    await drawReceptive(step.receptive_field);
    showConvStep(step);
  } catch (error) {
    clearConvStep(error.message);
  }
}

// ------------------------------------------------------------------ Grad-CAM

async function updateGradcam() {
  if (!state.image) return;
  const target = $("cam-class").value;
  try {
    const cam = await api(`/api/gradcam?image=${encodeURIComponent(state.image)}&class=${target}`, { method: "POST" });
    $("cam-input").src = pngSrc(cam.input_png);
    $("cam-heat").src = pngSrc(cam.heatmap_png);
    $("cam-saliency").src = pngSrc(cam.saliency_png);
    $("cam-note").textContent = `layer ${cam.layer} · p(${cam.label}) = ${(100 * cam.probability).toFixed(1)}%`;
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
startPlayground();
loadModel().catch((error) => setStatus(error.message, true));
