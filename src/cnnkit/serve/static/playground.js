// Padding and stride: a filter slides over a padded n×n input; out = ⌊(n + 2p − f)/s⌋ + 1.
// The same arithmetic as cnnkit.shapes.output_size and fits_exactly, for symmetric padding.

const $ = (id) => document.getElementById(id);
const names = ["n", "f", "p", "s"];
let timer = null;
let step = 0;

const read = () => Object.fromEntries(names.map((name) => [name, Number($(`pg-${name}`).value)]));

function set(values) {
  for (const [name, value] of Object.entries(values)) $(`pg-${name}`).value = String(value);
  update();
}

export function outputSize({ n, f, p, s }) {
  return Math.floor((n + 2 * p - f) / s) + 1;
}

function suggestion({ n, f, p, s }) {
  const tips = [];
  for (let q = p + 1; q <= p + s && q <= 4; q++) {
    if ((n + 2 * q - f) % s === 0) {
      tips.push(`p = ${q}`);
      break;
    }
  }
  for (let t = 1; t <= 4; t++) if (t !== s && (n + 2 * p - f) % t === 0 && n + 2 * p >= f) tips.push(`s = ${t}`);
  return tips.length ? ` Try ${tips.slice(0, 3).join(" or ")}.` : "";
}

function update() {
  const v = read();
  const { n, f, p, s } = v;
  for (const name of names) $(`pg-${name}-out`).textContent = String(v[name]);
  const padded = n + 2 * p;
  const out = outputSize(v);
  const span = padded - f;
  const result = span < 0 ? "no output" : String(out);
  $("pg-formula").innerHTML =
    `out = ⌊(n + 2p − f) / s⌋ + 1 = ⌊(${n} + 2·${p} − ${f}) / ${s}⌋ + 1 = <b id="pg-out">${result}</b>`;
  const warning = $("pg-warning");
  if (span < 0) {
    const input = p === 0 ? `${n}×${n} input (with padding 0)` : `${n}×${n} input padded to ${padded}×${padded} (padding ${p})`;
    warning.textContent = `No output: the ${f}×${f} filter is larger than the ${input}; use a smaller filter or add padding.`;
  } else if (span % s !== 0) {
    const left = span % s;
    warning.textContent =
      `Does not fit: (n + 2p − f)/s = ${span}/${s} = ${(span / s).toFixed(2)} is not a whole number. ` +
      `The filter's last step would hang ${s - left} px past the padded edge, so the floor drops it and the last ${left} ` +
      `row${left > 1 ? "s" : ""} and column${left > 1 ? "s" : ""} are never seen.` +
      suggestion(v);
  }
  warning.hidden = span >= 0 && span % s === 0;
  const same = s === 1 && 2 * p === f - 1;
  $("pg-note").textContent = span < 0
    ? ""
    : same
    ? `same: with s = 1 and p = (f − 1)/2 the output keeps the input's size, ${n}×${n}.`
    : p === 0
      ? `valid (p = 0): the filter stays inside the input, so the output is smaller than ${n}×${n}.`
      : `input padded to ${padded}×${padded}; ${out > 0 && span >= 0 ? `${out * out} filter positions` : "no filter positions"}.`;
  step = 0;
  draw();
}

function draw() {
  const canvas = $("pg-canvas");
  const ctx = canvas.getContext("2d");
  const { n, f, p, s } = read();
  const padded = n + 2 * p;
  const span = padded - f;
  const out = span < 0 ? 0 : outputSize({ n, f, p, s });
  // Drawn at the canvas's CSS width, so text stays 12 px on a phone instead of shrinking.
  const width = Math.min(560, canvas.clientWidth || 560);
  const cell = Math.min(26, Math.floor((width * 0.52) / padded));
  const oc = out > 0 ? Math.min(26, Math.floor((width * 0.3) / out)) : 0;
  const height = 24 + Math.max(padded * cell, out * oc) + 30;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ox = 16;
  const oy = 24;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#475569";
  ctx.fillText(`input ${n}×${n}, padded to ${padded}×${padded}`, ox, 14);
  const covered = span < 0 ? 0 : (out - 1) * s + f; // pixels the filter ever reaches
  for (let i = 0; i < padded; i++) {
    for (let j = 0; j < padded; j++) {
      const pad = i < p || j < p || i >= p + n || j >= p + n;
      const missed = i >= covered || j >= covered;
      ctx.fillStyle = missed ? "#fde68a" : pad ? "#e2e8f0" : "#c7d2fe";
      ctx.fillRect(ox + j * cell + 1, oy + i * cell + 1, cell - 2, cell - 2);
      if (pad) {
        ctx.fillStyle = "#94a3b8";
        ctx.fillText("0", ox + j * cell + cell / 2 - 3, oy + i * cell + cell / 2 + 4);
      }
    }
  }
  if (out > 0) {
    const k = step % (out * out);
    const row = Math.floor(k / out);
    const col = k % out;
    ctx.strokeStyle = "#4f46e5";
    ctx.lineWidth = 3;
    ctx.strokeRect(ox + col * s * cell + 1.5, oy + row * s * cell + 1.5, f * cell - 3, f * cell - 3);
    ctx.fillStyle = "rgba(79,70,229,0.15)";
    ctx.fillRect(ox + col * s * cell, oy + row * s * cell, f * cell, f * cell);
    // The output grid beside it.
    const gx = ox + padded * cell + Math.max(24, width * 0.08);
    ctx.fillStyle = "#475569";
    ctx.fillText(`output ${out}×${out}`, gx, 14);
    for (let i = 0; i < out; i++) {
      for (let j = 0; j < out; j++) {
        ctx.fillStyle = i === row && j === col ? "#4f46e5" : i * out + j < k ? "#a5b4fc" : "#e0e7ff";
        ctx.fillRect(gx + j * oc + 1, oy + i * oc + 1, oc - 2, oc - 2);
      }
    }
    ctx.strokeStyle = "#a5b4fc";
    ctx.lineWidth = 1;
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(ox + (col * s + f) * cell, oy + row * s * cell + (f * cell) / 2);
    ctx.lineTo(gx + col * oc + oc / 2, oy + row * oc + oc / 2);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  const legendY = Math.min(canvas.height - 8, oy + padded * cell + 18);
  legend(ctx, ox, legendY, [["#c7d2fe", "input"], ["#e2e8f0", "padding"], ["#fde68a", "never covered"]]);
}

function legend(ctx, x, y, items) {
  for (const [colour, label] of items) {
    ctx.fillStyle = colour;
    ctx.fillRect(x, y - 10, 12, 12);
    ctx.fillStyle = "#475569";
    ctx.fillText(label, x + 16, y);
    x += ctx.measureText(label).width + 34;
  }
}

export function startPlayground() {
  for (const name of names) $(`pg-${name}`).addEventListener("input", update);
  $("pg-valid").addEventListener("click", () => set({ p: 0 }));
  $("pg-same").addEventListener("click", () => {
    let { f } = read();
    if (f % 2 === 0) f = f < 7 ? f + 1 : f - 1; // symmetric 'same' needs an odd filter
    set({ f, s: 1, p: (f - 1) / 2 });
  });
  update();
  if (!window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
    timer = setInterval(() => {
      step += 1;
      draw();
    }, 650);
  }
  return () => clearInterval(timer);
}
