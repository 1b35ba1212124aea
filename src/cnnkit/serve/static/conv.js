// One convolution, with the server's real numbers: patch ⊙ filter, summed, plus the bias.

const $ = (id) => document.getElementById(id);
let current = null;
let channel = 0;

export function diverging(t) {
  // -1 blue, 0 white, +1 red (ColorBrewer RdBu ends, as cnnkit.inspect.draw).
  const clamp = Math.max(-1, Math.min(1, t));
  const [r, g, b] = clamp >= 0 ? [178, 24, 43] : [33, 102, 172];
  const a = Math.abs(clamp);
  return `rgb(${Math.round(255 + (r - 255) * a)},${Math.round(255 + (g - 255) * a)},${Math.round(255 + (b - 255) * a)})`;
}

export function clearConvStep(message) {
  current = null;
  $("conv").replaceChildren(Object.assign(document.createElement("p"), { className: "hint", textContent: message }));
}

function matrix(title, values, padded, className) {
  const limit = Math.max(1e-9, ...values.flat().map(Math.abs));
  const table = document.createElement("table");
  table.className = `matrix ${className}`;
  values.forEach((row, i) => {
    const tr = table.insertRow();
    row.forEach((value, j) => {
      const td = tr.insertCell();
      td.textContent = value.toFixed(2);
      td.title = String(value);
      td.dataset.value = String(value);
      td.style.background = diverging(value / limit);
      if (padded?.[i]?.[j]) td.classList.add("pad");
    });
  });
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  figure.append(caption, table);
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
  channel = Math.min(channel, step.patch.length - 1);
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

  const tabs = document.createElement("div");
  tabs.className = "tabs";
  if (step.patch.length > 1) {
    const label = document.createElement("span");
    label.className = "hint";
    label.textContent = "input channel";
    tabs.append(label);
    step.patch.forEach((_, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = index === channel ? "tab active" : "tab";
      button.textContent = String(index);
      button.title = `channel ${index}: partial sum ${step.channel_sums[index].toFixed(4)}`;
      button.addEventListener("click", () => {
        channel = index;
        render();
      });
      tabs.append(button);
    });
  }

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
