// The layer strip: the input, then every layer, scrolling sideways with its position shown.
// Each layer's maps share one colour scale (shown with its range), so they compare; a wide
// layer shows its most active maps first (mean |value|), with "show all" for the rest.

import { $, el, pngSrc } from "./dom.js";
import { colour, css, decodeFloats, paint, rangeOf, scaleBar } from "./maps.js";

export const SUBSET = 8;
const expanded = new Set();
let context = { layers: [], onSelect: () => {}, selected: null };

function mapsOf(layer) {
  const channels = layer.channels.map((channel) => {
    const values = decodeFloats(channel.data);
    let total = 0;
    for (const value of values) total += Math.abs(value);
    return { index: channel.index, min: channel.min, max: channel.max, values, activity: total / values.length };
  });
  const min = Math.min(...channels.map((channel) => channel.min));
  const max = Math.max(...channels.map((channel) => channel.max));
  const ranked = [...channels].sort((a, b) => b.activity - a.activity || a.index - b.index);
  return { ...layer, channels, ranked, range: rangeOf(min, max) };
}

// /api/activations?format=array's layers, decoded, each with the range it is drawn over.
export function prepareLayers(layers) {
  return layers.map((layer) =>
    layer.flat ? { ...layer, range: rangeOf(Math.min(...layer.values), Math.max(...layer.values)) } : mapsOf(layer),
  );
}

function header(position, title, detail, meta) {
  return el(
    "header",
    {},
    el("span", { class: "pos" }, position),
    el("strong", {}, title),
    detail ? el("span", { class: "text" }, detail) : null,
    el("span", { class: "meta" }, meta),
  );
}

function tiles(layer) {
  const all = expanded.has(layer.name);
  const shown = all ? layer.channels : layer.ranked.slice(0, SUBSET);
  const perRow = all ? Math.min(8, Math.ceil(Math.sqrt(shown.length))) : shown.length > 4 ? 2 : 1;
  const size = all ? (perRow > 4 ? 26 : 34) : shown.length > 4 ? 44 : 56;
  const [height, width] = layer.size;
  const maps = el("div", { class: "maps", style: { gridTemplateColumns: `repeat(${perRow}, ${size}px)` } });
  for (const channel of shown) {
    const canvas = paint(channel.values, height, width, layer.range);
    const selected = context.selected?.layer === layer.name && context.selected?.channel === channel.index;
    Object.assign(canvas, { className: selected ? "map selected" : "map", tabIndex: 0 });
    Object.assign(canvas.style, { width: `${size}px`, height: `${(size * height) / width}px` });
    Object.assign(canvas.dataset, { layer: layer.name, channel: String(channel.index) });
    canvas.title = `${layer.name} channel ${channel.index}: min ${channel.min.toFixed(3)}, max ${channel.max.toFixed(3)}`;
    canvas.setAttribute("aria-label", canvas.title);
    canvas.addEventListener("click", () => context.onSelect(layer.name, channel.index));
    canvas.addEventListener("keydown", (event) => event.key === "Enter" && context.onSelect(layer.name, channel.index));
    maps.append(canvas);
  }
  return maps;
}

function subsetNote(layer) {
  const total = layer.channels_total;
  const sent = layer.channels.length;
  if (sent <= SUBSET) return null;
  const all = expanded.has(layer.name);
  const text = all ? `all ${sent}` : `the ${SUBSET} most active of ${sent}`;
  const toggle = el(
    "button",
    { type: "button", class: "ghost small show-all", dataset: { layer: layer.name } },
    all ? `most active ${SUBSET}` : `show all ${sent}`,
  );
  toggle.addEventListener("click", () => {
    if (all) expanded.delete(layer.name);
    else expanded.add(layer.name);
    const column = document.querySelector(`.layer-col[data-layer="${layer.name}"]`);
    column?.replaceWith(layerColumn(layer, Number(column.dataset.position)));
    updatePosition();
  });
  const more = total > sent ? ` (of ${total}: the server sends the first ${sent})` : "";
  return el("div", { class: "subset" }, el("span", { class: "hint" }, text + more), toggle);
}

function flatStrip(layer) {
  // A flat layer as columns of cells, top to bottom then left to right.
  const values = layer.values;
  const rows = Math.min(values.length, 48);
  const cols = Math.ceil(values.length / rows);
  const cell = values.length > 200 ? 3 : 6;
  const canvas = el("canvas", { class: "strip", width: cols * cell, height: rows * cell });
  const ctx = canvas.getContext("2d");
  values.forEach((value, index) => {
    ctx.fillStyle = css(colour(layer.range, value));
    ctx.fillRect(Math.floor(index / rows) * cell, (index % rows) * cell, cell, cell);
  });
  return el("div", { class: "maps flat" }, canvas);
}

function layerColumn(layer, position) {
  const count = context.layers.length;
  const shape = layer.flat ? `${layer.shape[2]} values` : layer.shape.join("×");
  const meta = `${shape}${layer.params ? ` · ${layer.params.toLocaleString("en")} params` : ""}`;
  const column = el(
    "div",
    {
      class: `layer-col kind-${layer.kind}${layer.flat ? " flat-col" : ""}`,
      title: layer.text,
      dataset: { layer: layer.name, position: String(position) },
    },
    header(`${position}/${count}`, layer.name, layer.text, meta),
    scaleBar(layer.range),
  );
  column.append(layer.flat ? flatStrip(layer) : tiles(layer));
  const note = layer.flat ? null : subsetNote(layer);
  if (note) column.append(note);
  if (layer.flat && layer.shape[2] > layer.values.length)
    column.append(el("p", { class: "hint" }, `first ${layer.values.length} of ${layer.shape[2]}`));
  return column;
}

export function renderOverview(result, layers, inputShape, onSelect, selected) {
  context = { layers, onSelect, selected };
  expanded.clear();
  const [h, w, c] = inputShape;
  const input = el(
    "div",
    { class: "layer-col input-col", dataset: { position: "0" } },
    header(`0/${layers.length}`, "input", "image", `${h}×${w}×${c}`),
    el("div", { class: "maps" }, el("img", { class: "map", src: pngSrc(result.input_png), alt: "input", style: { width: "64px" } })),
  );
  $("overview").replaceChildren(input, ...layers.map((layer, index) => layerColumn(layer, index + 1)));
  $("strip-nav").hidden = false;
  $("overview").scrollLeft = 0;
  updatePosition();
}

export function markSelected(selected) {
  context.selected = selected;
  document.querySelectorAll(".map.selected").forEach((node) => node.classList.remove("selected"));
  document.querySelector(`.map[data-layer="${selected.layer}"][data-channel="${selected.channel}"]`)?.classList.add("selected");
}

// "layers 3–7 of 14": the columns wholly in view (or, for one wider than the strip, the one in view).
export function updatePosition() {
  const strip = $("overview");
  const box = strip.getBoundingClientRect();
  const columns = [...strip.querySelectorAll(".layer-col")];
  if (!columns.length) return;
  const inside = (rect) => rect.left >= box.left - 1 && rect.right <= box.right + 1;
  const touching = (rect) => rect.right > box.left && rect.left < box.right;
  let seen = columns.filter((column) => inside(column.getBoundingClientRect()));
  if (!seen.length) seen = columns.filter((column) => touching(column.getBoundingClientRect()));
  if (!seen.length) return; // the strip is not laid out (hidden, or being replaced)
  const first = Number(seen[0].dataset.position);
  const last = Number(seen.at(-1).dataset.position);
  const count = columns.length - 1;
  const name = (n) => (n === 0 ? "input" : String(n));
  const position = $("strip-position");
  position.textContent =
    first === 0 && last === count ? `all ${count} layers in view` : `layers ${name(first)}–${name(last)} of ${count}`;
  position.dataset.first = String(first);
  position.dataset.last = String(last);
  $("strip-prev").disabled = strip.scrollLeft <= 1;
  $("strip-next").disabled = strip.scrollLeft + strip.clientWidth >= strip.scrollWidth - 1;
}

export function setupStrip() {
  const strip = $("overview");
  const step = (direction) => strip.scrollBy({ left: direction * strip.clientWidth * 0.8, behavior: "smooth" });
  $("strip-prev").addEventListener("click", () => step(-1));
  $("strip-next").addEventListener("click", () => step(1));
  strip.addEventListener("scroll", () => requestAnimationFrame(updatePosition), { passive: true });
  window.addEventListener("resize", updatePosition);
}
