// The review page: one card at a time, answered by keyboard. Every answer is POSTed at once (with the
// session's CSRF token) under an id made here, so a resent request writes one row; `u` retracts the last
// answer of this page with a row of its own. body[data-busy] is 1 from a key until its card is shown.
"use strict";

const state = {cards: [], classes: {}, position: 0, history: []};
const $ = (id) => document.getElementById(id);
const csrf = document.querySelector('meta[name="csrf-token"]').content;

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function percent(p) { return Math.round(100 * p) + "%"; }

async function post(path, body) {
  const response = await fetch(path, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body)});
  if (!response.ok) {
    throw new Error(response.status + " " + (await response.text()));
  }
  return await response.json();
}

function render() {
  const card = state.cards[state.position];
  $("card").hidden = !card;
  $("empty").hidden = !!card;
  if (!card) { return; }
  $("card").dataset.uri = card.image_uri;
  $("picture").src = card.picture;
  $("name").textContent = card.text;
  $("verdict").textContent = card.label === null
    ? "no confident label (" + percent(card.confidence) + ")"
    : card.label + " " + percent(card.confidence);
  const list = $("candidates");
  list.replaceChildren(...card.candidates.map((candidate, index) => {
    const item = document.createElement("li");
    item.innerHTML = "<b></b><span></span>";
    item.className = index === 0 ? "chosen" : "";  // what Enter accepts
    item.firstChild.textContent = String(index + 1);
    item.lastChild.textContent = candidate.label + " " + percent(candidate.probability);
    return item;
  }));
  const classes = $("classes");
  classes.replaceChildren(...(state.classes[card.model_version] || []).map((name) => {
    const option = document.createElement("option");
    option.value = name;
    return option;
  }));
  $("search").value = "";
  $("position").textContent = (state.position + 1) + " of " + state.cards.length + " · " + card.model_version;
}

async function answer(label) {
  const card = state.cards[state.position];
  if (!card) { return; }
  const id = newId();
  await post("/api/answers", {review_id: id, image_uri: card.image_uri, content_hash: card.content_hash,
                              model_version: card.model_version, label: label});
  state.history.push({id: id, card: card});
  state.cards.splice(state.position, 1);
  if (state.position >= state.cards.length) { state.position = 0; }
  document.body.dataset.answered = String(Number(document.body.dataset.answered) + 1);
  $("status").textContent = "recorded: " + (label === null ? "none of these classes" : label);
  render();
}

async function undo() {
  const last = state.history.pop();
  if (!last) { $("status").textContent = "nothing to undo"; return; }
  try {
    await post("/api/retractions", {review_id: newId(), answer_id: last.id});
  } catch (error) {
    state.history.push(last);
    throw error;
  }
  state.cards.splice(state.position, 0, last.card);
  $("status").textContent = "undone: the answer is retracted";
  render();
}

function move(step) {
  if (!state.cards.length) { return; }
  state.position = (state.position + step + state.cards.length) % state.cards.length;
  $("status").textContent = step > 0 ? "skipped" : "back";
  render();
}

function searchAnswer() {
  const card = state.cards[state.position];
  const typed = $("search").value.trim().toLowerCase();
  const names = state.classes[card.model_version] || [];
  const match = names.find((name) => name === typed) || names.find((name) => name.startsWith(typed));
  if (!typed || !match) { $("status").textContent = "no class " + JSON.stringify(typed); return; }
  $("search").blur();
  return answer(match);
}

function onKey(event) {
  if (document.body.dataset.busy === "1" || event.ctrlKey || event.metaKey || event.altKey) { return; }
  if (event.target === $("search")) {
    if (event.key === "Enter") { event.preventDefault(); run(searchAnswer()); }
    if (event.key === "Escape") { $("search").blur(); }
    return;
  }
  if (event.target.closest && event.target.closest("form")) { return; }
  const card = state.cards[state.position];
  if (/^[1-9]$/.test(event.key) && card && card.candidates[Number(event.key) - 1]) {
    run(answer(card.candidates[Number(event.key) - 1].label));
  } else if (event.key === "0") {
    run(answer(null));
  } else if (event.key === "Enter" && card && card.candidates.length) {
    run(answer(card.candidates[0].label));
  } else if (event.key === "u") {
    run(undo());
  } else if (event.key === "ArrowRight" || event.key === "ArrowDown") {
    move(1);
  } else if (event.key === "ArrowLeft" || event.key === "ArrowUp") {
    move(-1);
  } else if (event.key === "/") {
    $("search").focus();
  } else {
    return;
  }
  event.preventDefault();
}

// One action at a time: busy from the key until the card on screen shows its outcome.
function run(promise) {
  document.body.dataset.busy = "1";
  Promise.resolve(promise)
    .catch((error) => { $("status").textContent = "not saved: " + error.message; })
    .finally(() => { document.body.dataset.busy = "0"; });
}

async function load() {
  const response = await fetch("/api/queue" + window.location.search, {credentials: "same-origin"});
  const data = await response.json();
  state.cards = data.cards;
  state.classes = data.classes;
  state.position = 0;
  document.body.dataset.loaded = "1";
  render();
}

document.addEventListener("keydown", onKey);
run(load());
