// The live view of a run that is training: curves, first-layer filters, the probe's feature maps
// and Grad-CAM at each evaluation, and a slider over the evaluations seen so far.
// The server streams a 'change' event when the run's files change (GET /api/live/stream); the
// page then reads the index and the new metrics. When training ends the page says so and
// reloads, so the explorer below shows the final model.

import { TOKEN_KEY, api } from "./api.js";
import { $, el, pngSrc } from "./dom.js";

const RECONNECT_MS = 1000; // after a stream ends (its lifetime) or fails
const POLL_MS = 2000; // when the stream is refused (too many open), plain polling
const PIXELATED = { imageRendering: "pixelated" };

const live = {
  index: null,
  records: [],
  snapshots: new Map(), // step -> snapshot document
  shown: null, // the step on screen
  following: true, // the slider sits on the newest snapshot and follows it
  finished: false,
};

// ------------------------------------------------------------------ curves

const CURVES = [
  { title: "loss", lines: [["train_loss", "train"], ["val_loss", "validation"]], value: (r, key) => r[key] },
  {
    title: "error %",
    lines: [["train_acc", "train"], ["val_acc", "validation"]],
    value: (r, key) => (r[key] == null ? null : 100 * (1 - r[key])),
  },
  { title: "learning rate", lines: [["lr", "lr"]], value: (r, key) => r[key] },
];
const COLOURS = ["#2563eb", "#dc2626"];
const SVG = "http://www.w3.org/2000/svg";
const W = 260;
const H = 130;
const PAD = { left: 44, right: 8, top: 18, bottom: 22 };

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

const short = (v) => (Math.abs(v) >= 100 || v === 0 ? v.toFixed(0) : v.toPrecision(2));

function chart(curve, records) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": curve.title });
  root.append(svg("text", { x: PAD.left, y: 12, "font-size": 11, fill: "#0f172a" }, curve.title));
  const points = curve.lines.map(([key]) =>
    records.map((r) => [r.step, curve.value(r, key)]).filter(([, v]) => v != null && Number.isFinite(v)),
  );
  const all = points.flat();
  if (!all.length) return root;
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const [x0, x1] = [Math.min(0, ...xs), Math.max(...xs, 1)];
  const [y0, y1] = [Math.min(0, ...ys), Math.max(...ys) || 1];
  const px = (x) => PAD.left + ((x - x0) / (x1 - x0 || 1)) * (W - PAD.left - PAD.right);
  const py = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - PAD.top - PAD.bottom);
  const axis = { stroke: "#94a3b8", "stroke-width": 1 };
  root.append(svg("line", { x1: PAD.left, y1: py(y0), x2: W - PAD.right, y2: py(y0), ...axis }));
  root.append(svg("line", { x1: PAD.left, y1: py(y0), x2: PAD.left, y2: py(y1), ...axis }));
  const label = { "font-size": 10, fill: "#64748b" };
  root.append(svg("text", { x: PAD.left - 4, y: py(y1) + 4, "text-anchor": "end", ...label }, short(y1)));
  root.append(svg("text", { x: PAD.left - 4, y: py(y0), "text-anchor": "end", ...label }, short(y0)));
  root.append(svg("text", { x: W - PAD.right, y: H - 6, "text-anchor": "end", ...label }, `step ${x1}`));
  if (live.shown != null) {
    const x = px(live.shown);
    root.append(svg("line", { x1: x, y1: py(y0), x2: x, y2: py(y1), stroke: "#cbd5e1", "stroke-dasharray": "3 3" }));
  }
  points.forEach((line, i) => {
    const path = line.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points: path, fill: "none", stroke: COLOURS[i], "stroke-width": 1.6 }));
    if (curve.lines.length > 1) {
      const lx = PAD.left + 8 + i * 80;
      root.append(svg("text", { x: lx, y: PAD.top + 8, "font-size": 10, fill: COLOURS[i] }, curve.lines[i][1]));
    }
  });
  return root;
}

function drawCurves() {
  const box = $("live-curves");
  box.dataset.points = String(live.records.length);
  box.replaceChildren(...CURVES.map((curve) => chart(curve, live.records)));
}

// ------------------------------------------------------------------ snapshots

function scaled(src, alt, height) {
  return el("img", { src, alt, style: { ...PIXELATED, height: `${height}px`, width: "auto" } });
}

async function showSnapshot(step) {
  if (!live.snapshots.has(step)) live.snapshots.set(step, await api(`/api/live/snapshot?step=${step}`));
  const snap = live.snapshots.get(step);
  live.shown = step;
  const filters = snap.filters; // null for a network without a conv layer
  const img = $("live-filters");
  img.dataset.step = String(step);
  if (filters) {
    const [k, c, fh, fw] = filters.shape;
    img.src = pngSrc(filters.png);
    $("live-filters-note").textContent =
      `${filters.layer}: ${k} filters of ${fh}×${fw}×${c}, blue − 0 white + red, ±${filters.limit.toPrecision(2)}`;
  } else {
    img.removeAttribute("src");
    $("live-filters-note").textContent = "no conv layer, so no filters";
  }
  const cam = snap.gradcam; // null without a layer of spatial extent
  $("live-cam").dataset.step = String(step);
  if (cam) $("live-cam").src = pngSrc(cam.overlay_png);
  else $("live-cam").removeAttribute("src");
  $("live-cam-note").textContent = cam
    ? `Grad-CAM of ${cam.layer}: predicted ${cam.predicted} (${(100 * cam.probability).toFixed(1)}%)`
    : "no layer with spatial extent, so no Grad-CAM";
  $("live-maps").replaceChildren(
    ...snap.maps.map((layer) =>
      el(
        "figure",
        { class: "live-map", style: { margin: "0 0 6px 0" } },
        scaled(pngSrc(layer.png), `${layer.name} feature maps`, 40),
        el("figcaption", { class: "hint" }, `${layer.label}: ${layer.shown.length} of ${layer.channels} maps`),
      ),
    ),
  );
  const acc = snap.val_acc == null ? "" : ` · val acc ${(100 * snap.val_acc).toFixed(1)}%`;
  $("live-step").textContent = `step ${step}${snap.epoch == null ? "" : ` (epoch ${snap.epoch})`}${acc}`;
  drawCurves();
}

function updateSlider() {
  const steps = live.index.snapshots.map((s) => s.step);
  const slider = $("live-slider");
  slider.max = String(Math.max(steps.length - 1, 0));
  slider.disabled = steps.length < 2;
  if (live.following) slider.value = slider.max;
  $("live-count").textContent = `${steps.length} evaluation${steps.length === 1 ? "" : "s"}`;
  return steps;
}

function setLiveStatus() {
  const last = live.records[live.records.length - 1];
  const where = last ? `step ${last.step}, val acc ${(100 * last.val_acc).toFixed(1)}%` : "waiting for the first evaluation";
  $("live-status").textContent = live.finished
    ? `Training finished (${where}); the explorer below shows the final model.`
    : `Training… ${where}`;
  $("live-card").dataset.finished = String(live.finished);
}

async function refresh() {
  const index = await api("/api/live");
  const since = live.records.length ? live.records[live.records.length - 1].step : -1;
  const fresh = await api(`/api/live/metrics?since=${since}`);
  live.records.push(...fresh.records);
  const wasFinished = live.finished;
  live.index = index;
  live.finished = index.finished;
  if (index.probe_png) $("live-probe").src = pngSrc(index.probe_png);
  const steps = updateSlider();
  setLiveStatus();
  const target = live.following ? steps[steps.length - 1] : live.shown;
  if (target != null && target !== live.shown) await showSnapshot(target);
  else drawCurves();
  return !wasFinished && index.finished;
}

// ------------------------------------------------------------------ following

// Server-Sent Events read with fetch, not EventSource: EventSource cannot send the token.
async function stream(onChange) {
  const headers = new Headers();
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const response = await fetch("/api/live/stream", { headers });
  if (!response.ok || !response.body) return false;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return true;
    text += value;
    const blocks = text.split("\n\n");
    text = blocks.pop();
    for (const block of blocks) {
      if (block.includes("event: change") && (await onChange())) return true;
    }
  }
}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow(onFinished) {
  const onChange = async () => {
    const ended = await refresh();
    if (ended) onFinished();
    return live.finished;
  };
  while (!live.finished) {
    let streamed = false;
    try {
      streamed = await stream(onChange);
    } catch {
      streamed = false;
    }
    if (live.finished) break;
    await wait(streamed ? RECONNECT_MS : POLL_MS);
    if (!streamed) await onChange().catch(() => false);
  }
}

// ------------------------------------------------------------------ start

// Shows the live card when the run has snapshots or is still training; `onFinished` is called
// when training ends while the page watches.
export async function startLive(onFinished = () => location.reload()) {
  let index;
  try {
    index = await api("/api/live");
  } catch {
    return; // a served Classifier, or an old server: no live view
  }
  if (index.finished && !index.snapshots.length) return;
  $("live-card").hidden = false;
  for (const id of ["live-probe", "live-cam"]) Object.assign($(id).style, PIXELATED, { width: "112px", height: "112px" });
  Object.assign($("live-filters").style, PIXELATED, { width: "100%", height: "auto" });
  // Captions wrap under their image instead of pushing the next figure to another line.
  for (const figure of $("live-card").querySelectorAll(".row figure")) figure.style.maxWidth = "260px";
  $("live-filters").parentElement.style.width = "260px";
  $("live-slider").addEventListener("input", () => {
    const steps = live.index.snapshots.map((s) => s.step);
    const position = Number($("live-slider").value);
    live.following = position === steps.length - 1;
    showSnapshot(steps[position]).catch((error) => ($("live-step").textContent = error.message));
  });
  try {
    await refresh();
  } catch (error) {
    $("live-status").textContent = `The run could not be read: ${error.message}`;
  }
  if (!live.finished) follow(onFinished);
}
