// Values to colours: the page's one colour language, the same two maps as the CLI pictures.
//   signed values (any below 0)  RdBu_r over a symmetric range [-m, m]: 0 is the middle white;
//   non-negative values          inferno over [0, max].
// The stops are matplotlib's (colours.js, generated); between stops the colour is linear.

import { INFERNO, RDBU_R } from "./colours.js";

export function colourAt(stops, t) {
  const x = Math.max(0, Math.min(1, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const [a, b] = [stops[i], stops[i + 1]];
  return [0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * f));
}

// The range a set of values is drawn over: signed when any value is below 0.
export function rangeOf(min, max) {
  if (min < 0) {
    const limit = Math.max(Math.abs(min), Math.abs(max), 1e-12);
    return { signed: true, low: -limit, high: limit, stops: RDBU_R };
  }
  return { signed: false, low: 0, high: max > 0 ? max : 1, stops: INFERNO };
}

export const inferno = (high) => rangeOf(0, high);
export const colour = (range, value) => colourAt(range.stops, (value - range.low) / (range.high - range.low));
export const css = ([r, g, b]) => `rgb(${r},${g},${b})`;
// Dark cells get white text: relative luminance below about a half (WCAG's weights).
export const inkOn = ([r, g, b]) => (0.2126 * r + 0.7152 * g + 0.0722 * b < 128 ? "#fff" : "#0f172a");

// base64 float32 little-endian, as /api/activations?format=array sends each map.
export function decodeFloats(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

// A canvas with one pixel per value (row-major height × width); CSS scales it up, pixelated.
export function paint(values, height, width, range, canvas = document.createElement("canvas")) {
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  for (let i = 0; i < values.length && i < width * height; i++) {
    const [r, g, b] = colour(range, values[i]);
    image.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

export function formatValue(value) {
  if (value === 0) return "0";
  const size = Math.abs(value);
  if (size >= 1000 || size < 0.01) return value.toExponential(1).replace("e+", "e");
  const text = value.toPrecision(size >= 100 ? 3 : 2);
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

// A colour scale: the ramp, and its range's numbers beneath (min, 0 for signed maps, max).
export function scaleBar(range, caption = "") {
  // A CSS gradient through every stop: the browser interpolates linearly, as colour() does.
  const ramp = document.createElement("div");
  ramp.className = "ramp";
  const last = range.stops.length - 1;
  const stops = range.stops.map((rgb, i) => `${css(rgb)} ${((100 * i) / last).toFixed(2)}%`);
  ramp.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  const numbers = document.createElement("div");
  numbers.className = "ticks";
  const ticks = range.signed ? [range.low, 0, range.high] : [range.low, range.high];
  for (const value of ticks) {
    const tick = document.createElement("span");
    tick.textContent = formatValue(value);
    numbers.append(tick);
  }
  const scale = document.createElement("div");
  scale.className = `scale ${range.signed ? "signed" : "positive"}`;
  scale.dataset.low = String(range.low);
  scale.dataset.high = String(range.high);
  scale.title = `${range.signed ? "RdBu_r, symmetric" : "inferno"}: ${formatValue(range.low)} to ${formatValue(range.high)}`;
  if (caption) {
    const note = document.createElement("span");
    note.className = "scale-caption";
    note.textContent = caption;
    scale.append(note);
  }
  scale.append(ramp, numbers);
  return scale;
}
