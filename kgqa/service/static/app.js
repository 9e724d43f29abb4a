// kgqa's page: asks /v1/answer (with the path trace), shows the answer, the candidates, why, and the subject's triples.
// Only this origin is ever called; every KB string is put in the page as text, never as HTML.
"use strict";

const EXAMPLES = [  // questions of KgCLUE's dev split
  "刘晓华主要讲什么课啊？",
  "我很好奇龙编站的坐标是什么啊？",
  "你知道Metasploit的开发时间是什么时候吗？",
  "石光荣的儿女叫什么？",
];
const TOP_K = 5;
const ENTITY_LIMIT = 50;
const KEY_STORE = "kgqa-api-key";

const $ = (id) => document.getElementById(id);
let pendingQuestion = null;  // asked again once an API key is given

class Unauthorized extends Error {}

async function api(path, body) {
  const headers = { "Accept": "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers["Authorization"] = `Bearer ${key}`;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) throw new Unauthorized();
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `${response.status} ${response.statusText}`);
  return data;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function percent(p) {
  return p >= 0.001 ? `${(100 * p).toFixed(1)}%` : p.toExponential(1);
}

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// why there is no answer, in words
function noAnswerText(data) {
  if (data.reason === "below_threshold") {
    return `The KB does not hold this. The best candidate's confidence, ${percent(data.confidence)}, is below ` +
      `the service's threshold of ${percent(data.threshold)}; the nearest candidates are listed below.`;
  }
  return "No KB path fits this question.";
}

function showAnswer(data) {
  $("result").hidden = false;
  const best = data.answer;
  $("no-answer").hidden = best !== null;
  $("no-answer").textContent = best === null ? noAnswerText(data) : "";
  $("answer").hidden = best === null;
  $("why").hidden = best === null;
  $("entity-section").hidden = best === null;  // no subject: nothing of an earlier answer stays on the page
  if (best !== null) {
    $("answer-object").textContent = best.object || "(no object)";
    $("answer-name").textContent = best.name;
    $("answer-meaning").textContent = best.meaning || "—";
    $("answer-relation").textContent = best.predicate;
    $("answer-confidence").textContent = best.confidence === null ? "—" : percent(best.confidence);
  }
  showTrace(data.trace);
  showCandidates(data.candidates);
}

function showTrace(trace) {
  const list = $("trace");
  list.replaceChildren();
  if (!trace) {
    $("trace-summary").textContent = "";
    return;
  }
  for (const step of trace.steps) {
    const item = document.createElement("li");
    item.classList.add(`part-${step.part}`);
    if (step.forced) item.classList.add("forced");
    if (!step.decoded) item.classList.add("completed");
    const ch = document.createElement("span");
    ch.className = "ch";
    ch.textContent = step.part === "separator" ? "｜" : step.part === "end" ? "■" : step.text;
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = step.allowed;
    item.append(ch, n);
    const what = step.part === "separator" ? "separator" : step.part === "end" ? "end" : `${step.part} “${step.text}”`;
    const how = step.decoded ? (step.forced ? "forced by the KB" : "decoded") : "completed by the KB";
    item.setAttribute("aria-label", `${what}: ${step.allowed} allowed, ${how}`);
    item.title = item.getAttribute("aria-label");
    list.append(item);
  }
  const lp = trace.log_probability;
  const fixed = (v) => (Math.abs(v) < 0.0005 ? 0 : v).toFixed(3);  // no "-0.000"
  const parts = Object.keys(lp).map((k) => `${k} ${fixed(lp[k])}`).join(", ");
  $("trace-summary").textContent =
    `${trace.steps.length} steps: ${trace.chosen_steps} chosen by the model, ${trace.forced_steps} forced by the KB` +
    (trace.completed_steps ? ` (${trace.completed_steps} of them spelled by the KB after decoding stopped)` : "") +
    (trace.source === "beam" ? "" : " (a path of a KB name found in the question, scored by the model)") +
    (parts ? `. Log-probability by part: ${parts}.` : ".");
}

function showCandidates(candidates) {
  const body = $("candidates").tBodies[0];
  body.replaceChildren();
  candidates.forEach((c, i) => {
    const row = body.insertRow();
    if (i === 0) row.className = "best";
    cell(row, String(i + 1), "num");
    cell(row, c.subject);
    cell(row, c.predicate);
    cell(row, c.object);
    cell(row, percent(c.path_probability), "num");
    cell(row, c.score.toFixed(3), "num");
    const moved = Object.entries(c.contributions || {})
      .filter(([, v]) => Math.abs(v) >= 0.005)
      .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]))
      .map(([k, v]) => `${k} ${v > 0 ? "+" : ""}${v.toFixed(2)}`)
      .join(", ");
    cell(row, moved || "—", "contrib");
  });
}

async function showEntity(subject) {
  $("entity-name").textContent = subject;
  const body = $("entity").tBodies[0];
  body.replaceChildren();
  $("entity-count").textContent = "";
  try {
    const found = await api(`/v1/entities/${encodeURIComponent(subject)}?limit=${ENTITY_LIMIT}`);
    for (const t of found.triples) {
      const row = body.insertRow();
      cell(row, t.predicate);
      cell(row, t.object);
    }
    $("entity-count").textContent =
      `${found.count} triple(s)` + (found.truncated ? `, the first ${found.triples.length} shown` : "");
  } catch (error) {
    if (error instanceof Unauthorized) return askForKey(null);
    $("entity-count").textContent = `could not read the entity: ${error.message}`;
  }
}

function askForKey(question) {
  pendingQuestion = question;
  $("key-form").hidden = false;
  setStatus("An API key is needed.", true);
  $("api-key").focus();
}

async function ask(question) {
  question = question.trim();
  if (!question) return;
  $("question").value = question;
  const url = new URL(window.location.href);
  url.searchParams.set("q", question);
  history.replaceState(null, "", url);  // the address is a link to this answer
  setStatus("Asking…");
  let data;
  try {
    data = await api("/v1/answer", { question, top_k: TOP_K, explain: true });
  } catch (error) {
    if (error instanceof Unauthorized) return askForKey(question);
    setStatus(`The service answered with an error: ${error.message}`, true);
    return;
  }
  setStatus(
    data.answer ? `Answered in ${Math.round(data.took_ms)} ms.` :
      data.reason === "below_threshold" ? "The KB does not hold this." : "No KB path fits this question.",
  );
  showAnswer(data);
  if (data.answer) await showEntity(data.answer.subject);
}

async function showServed() {
  try {
    const info = await api("/v1/info");
    const m = info.model;
    $("served").textContent =
      `kgqa ${info.version} · model ${m.name} (${(m.parameters / 1e6).toFixed(1)}M parameters` +
      `${m.ranker ? ", learned ranker" : ""}) · index ${info.index.name}: ` +
      `${info.index.triples.toLocaleString("en")} triples, ${info.index.names.toLocaleString("en")} names · ` +
      `${info.decoding.search === "beam" ? "beam" : "exact top"} ${info.decoding.num_beams}`;
  } catch (error) {
    $("served").textContent = error instanceof Unauthorized ? "" : `service info unavailable: ${error.message}`;
  }
}

function init() {
  const list = $("examples");
  for (const example of EXAMPLES) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "example";
    button.textContent = example;
    button.addEventListener("click", () => ask(example));
    item.append(button);
    list.append(item);
  }
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    ask($("question").value);
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("api-key").value);
    $("key-form").hidden = true;
    setStatus("");
    showServed();
    if (pendingQuestion) ask(pendingQuestion);
  });
  const q = new URLSearchParams(window.location.search).get("q");
  showServed();
  if (q) ask(q);
  else $("question").focus();
}

document.addEventListener("DOMContentLoaded", init);
