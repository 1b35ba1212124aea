// The class scores: the top few as bars with full class names, every class on demand.
// Names wrap instead of being cut: "astronaut_helmet" and 43 traffic-sign names must stay whole.

import { $, el } from "./dom.js";

export const TOP = 5;
const percent = (p) => `${(100 * p).toFixed(1)}%`;

function bar(entry, best) {
  return el(
    "li",
    { class: best ? "best" : "", dataset: { label: entry.label, index: entry.index } },
    el("span", { class: "label", title: entry.label }, entry.label),
    el("span", { class: "prob" }, percent(entry.probability)),
    el("span", { class: "track" }, el("span", { class: "fill", style: { width: percent(entry.probability) } })),
  );
}

// `scores`: every class when known (sorted by probability), else the top few (live drawing).
export function showScores(scores, classes) {
  const pill = $("score-pill");
  pill.querySelector(".pill-label").textContent = scores[0].label;
  pill.querySelector(".pill-prob").textContent = percent(scores[0].probability);
  pill.hidden = false;
  $("bars").replaceChildren(...scores.slice(0, TOP).map((entry, rank) => bar(entry, rank === 0)));
  const all = $("all-scores");
  const list = $("all-scores-list");
  if (scores.length <= TOP || classes <= TOP) {
    // Live drawing sends the top few only: an older full list would not match the bars.
    list.replaceChildren();
    all.hidden = true;
    return;
  }
  $("all-scores-summary").textContent = `all ${scores.length} classes`;
  list.replaceChildren(...scores.map((entry, rank) => bar(entry, rank === 0)));
  all.hidden = false;
}

export function showScoresMessage(text, isError = false) {
  $("score-pill").hidden = true;
  $("bars").replaceChildren(el("li", { class: isError ? "empty error" : "empty" }, text));
  $("all-scores-list").replaceChildren();
  $("all-scores").hidden = true;
}

// The pill shows only while the scores card is out of view (CSS hides it on wide windows).
export function watchScores() {
  const observer = new IntersectionObserver(([entry]) => $("score-pill").classList.toggle("away", !entry.isIntersecting));
  observer.observe($("predict-card"));
}
