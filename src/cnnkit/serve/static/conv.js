// One convolution, with the server's real numbers: patch ⊙ filter, summed, plus the bias.
// It opens on the input channel whose products add up to most (largest |Σ|): with many input
// channels, channel 0 is often nearly all zeros and explains nothing.

import { colour, css, inkOn, rangeOf, scaleBar } from "./maps.js";

const $ = (id) => document.getElementById(id);
const MAX_TABS = 16; // more input channels than this get a list, sorted by contribution
let current = null;
let channel = 0;

// The input channel with the largest |Σ products| (the first such, on a tie).
export function largestContribution(sums) {
  return sums.reduce((best, value, index) => (Math.abs(value) > Math.abs(sums[best]) ? index : best), 0);
}

export function clearConvStep(message, isError = false) {
  current = null;
  $("conv").replaceChildren(Object.assign(document.createElement("p"), { className: isError ? "hint error" : "hint", textContent: message }));
}

function matrix(title, values, padded, className) {
  const flat = values.flat();
  // The page's two maps: RdBu_r when any value is negative (weights, products), else inferno.
  const range = rangeOf(Math.min(...flat), Math.max(...flat));
  const table = document.createElement("table");
  table.className = `matrix ${className}`;
  values.forEach((row, i) => {
    const tr = table.insertRow();
    row.forEach((value, j) => {
      const td = tr.insertCell();
      td.textContent = value.toFixed(2);
      td.title = String(value);
      td.dataset.value = String(value);
      const rgb = colour(range, value);
      td.style.background = css(rgb);
      td.style.color = inkOn(rgb);
      if (padded?.[i]?.[j]) td.classList.add("pad");
    });
  });
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  figure.append(caption, table, scaleBar(range));
  return figure;
}

function term(label, value, id, extra = "") {
  const span = document.createElement("span");
  span.className = `term ${extra}`;
  span.innerHTML = `<small></small><b></b>`;
  span.querySelector("small").textContent = label;
  const b = span.querySelector("b");
  b.id = id;
  b.dataset.value = String(value);
  b.textContent = value.toFixed(4);
  return span;
}

export function showConvStep(step) {
  current = step;
  channel = largestContribution(step.channel_sums);
  render();
}

function render() {
  const step = current;
  const root = $("conv");
  const [fh, fw] = step.kernel_size;
  const [top, bottom, left, right] = step.padding;
  const intro = document.createElement("p");
  intro.className = "conv-intro";
  intro.textContent =
    `${step.layer}, filter ${step.channel}, output (y=${step.y}, x=${step.x}): a ${fh}×${fw}×${step.patch.length} window of ` +
    `${step.input_layer} at stride ${step.stride}, padding ${top}/${bottom}/${left}/${right} (top/bottom/left/right), from (${step.origin[0]}, ${step.origin[1]}).`;

  const tabs = channelPicker(step);

  const grids = document.createElement("div");
  grids.className = "grids";
  const times = Object.assign(document.createElement("span"), { className: "op", textContent: "⊙" });
  const equals = Object.assign(document.createElement("span"), { className: "op", textContent: "=" });
  grids.append(
    matrix(`input patch (channel ${channel})`, step.patch[channel], step.padded, "patch"),
    times,
    matrix(`filter weights (channel ${channel})`, step.weights[channel], null, "weights"),
    equals,
    matrix(`products · Σ ${step.channel_sums[channel].toFixed(4)}`, step.products[channel], step.padded, "products"),
  );

  const sum = document.createElement("div");
  sum.className = "equation";
  const plus = Object.assign(document.createElement("span"), { className: "op", textContent: "+" });
  const eq = Object.assign(document.createElement("span"), { className: "op", textContent: "=" });
  const matches = Math.abs(step.result - step.activation) <= 1e-4;
  sum.append(
    term(`Σ of all ${step.patch.length * fh * fw} products`, step.sum, "conv-sum"),
    plus,
    term("bias", step.bias, "conv-bias"),
    eq,
    term("result", step.result, "conv-result", "result"),
    term(matches ? "module output ✓" : "module output ✗", step.activation, "conv-activation", matches ? "ok" : "bad"),
  );
  root.replaceChildren(intro, tabs, grids, sum);
}

function pick(index) {
  channel = index;
  render();
}

// Tabs for a few input channels; a list sorted by |Σ| for many. The largest is starred.
function channelPicker(step) {
  const sums = step.channel_sums;
  const best = largestContribution(sums);
  const root = document.createElement("div");
  root.className = "tabs";
  if (sums.length < 2) return root;
  const label = Object.assign(document.createElement("span"), { className: "hint", textContent: "input channel" });
  const note = Object.assign(document.createElement("span"), {
    className: "hint",
    id: "conv-best",
    textContent: `★ ${best} contributes most: Σ ${sums[best].toFixed(4)} of ${sums.length} channels`,
  });
  note.dataset.channel = String(best);
  const name = (index) => `${index === best ? "★ " : ""}${index}`;
  if (sums.length <= MAX_TABS) {
    const buttons = sums.map((sum, index) => {
      const button = Object.assign(document.createElement("button"), {
        type: "button",
        className: index === channel ? "tab active" : "tab",
        textContent: name(index),
        title: `channel ${index}: partial sum ${sum.toFixed(4)}`,
      });
      button.dataset.channel = String(index);
      button.addEventListener("click", () => pick(index));
      return button;
    });
    root.append(label, ...buttons, note);
    return root;
  }
  const select = Object.assign(document.createElement("select"), { id: "conv-channel" });
  const order = sums.map((_, index) => index).sort((a, b) => Math.abs(sums[b]) - Math.abs(sums[a]) || a - b);
  for (const index of order) {
    const option = Object.assign(document.createElement("option"), { value: String(index), textContent: `${name(index)} · Σ ${sums[index].toFixed(4)}` });
    select.append(option);
  }
  select.value = String(channel);
  select.addEventListener("change", () => pick(Number(select.value)));
  root.append(label, select, note);
  return root;
}
