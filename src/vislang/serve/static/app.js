// vislang's web page: plain JS over the JSON API (/api/openapi.json), no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 30;

// What is on screen: the last query, its results so far, and whether more exist.
const state = { mode: null, q: "", file: null, path: null, items: [], more: false,
                loading: false, generation: 0, current: -1 };
let busy = 0;  // requests in flight, for the progress bar

// -- talking to the server ------------------------------------------------------------------
class ApiError extends Error {}

async function api(url, options = {}) {
  busy += 1;
  $("progress").hidden = false;
  $("main").setAttribute("aria-busy", "true");
  try {
    let response;
    try {
      response = await fetch(url, options);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError("Cannot reach the vislang server. Is it still running?");
    }
    const body = (response.headers.get("content-type") || "").includes("json")
      ? await response.json().catch(() => null) : null;
    if (!response.ok) throw new ApiError(explain(response, body));
    return body;
  } finally {
    busy -= 1;
    if (busy === 0) {
      $("progress").hidden = true;
      $("main").removeAttribute("aria-busy");
    }
  }
}

// A failed request, in words a person can act on.
function explain(response, body) {
  const said = body && body.error ? body.error : `${response.status} ${response.statusText}`;
  if (response.status === 503 && response.headers.get("retry-after")) {
    return `The server is busy; try again in ${response.headers.get("retry-after")} s. (${said})`;
  }
  if (response.status === 401) {
    return "This server needs a token: open the address it printed when it started " +
           "(it ends in ?token=…).";
  }
  return said.charAt(0).toUpperCase() + said.slice(1);
}

function form(fields) {
  const data = new FormData();
  for (const [key, value] of Object.entries(fields)) data.append(key, value);
  return data;
}

function imageFields(item) {
  return { path: item.path };
}

// -- searching --------------------------------------------------------------------------------
function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function pageRequest(offset) {
  const paging = `k=${PAGE}&offset=${offset}`;
  if (state.mode === "text") {
    const text = state.text ? `&text=${encodeURIComponent(state.text)}` : "";
    const q = state.q ? `q=${encodeURIComponent(state.q)}&` : "";
    const filters = state.filters ? `&${state.filters}` : "";
    return [`/api/search?${q}${paging}${text}${filters}`, {}];
  }
  if (state.mode === "image") {
    return [`/api/search/image?${paging}`, { method: "POST", body: form({ file: state.file }) }];
  }
  return [`/api/similar?path=${encodeURIComponent(state.path)}&${paging}`, {}];
}

async function startSearch(mode, fields, label) {
  Object.assign(state, { mode, q: "", text: "", filters: "", file: null, path: null, items: [],
                         more: false, current: -1 }, fields);
  $("dups-view").hidden = true;
  state.generation += 1;
  $("results").replaceChildren();
  $("status").textContent = `Searching for ${label}…`;
  showError("");
  if (mode === "text") history.replaceState(null, "", `#q=${encodeURIComponent(state.q)}`);
  await loadMore();
}

async function loadMore() {
  if (state.loading || !state.mode) return;
  state.loading = true;
  const generation = state.generation;
  $("more").disabled = true;
  try {
    const [url, options] = pageRequest(state.items.length);
    const page = await api(url, options);
    if (generation !== state.generation) return;  // a newer search replaced this one
    state.more = page.more;
    const start = state.items.length;
    // Each page is one recorded search: its results name it when they are chosen.
    page.results.forEach((item) => { item.search_id = page.search_id; });
    state.items.push(...page.results);
    page.results.forEach((item, i) => $("results").append(tile(item, start + i)));
    $("status").textContent = state.items.length
      ? `${state.items.length} result${state.items.length === 1 ? "" : "s"}` +
        (state.more ? "; scroll for more" : "") : "Nothing found.";
  } catch (error) {
    if (generation === state.generation) {
      showError(error.message);
      $("status").textContent = "";
    }
  } finally {
    if (generation === state.generation) {
      state.loading = false;
      $("more").disabled = false;
      $("more").hidden = !state.more;
    }
  }
}

function tile(item, index) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile";
  button.dataset.index = index;
  button.dataset.path = item.path;
  const name = item.path.split("/").pop();
  const img = document.createElement("img");
  img.src = item.thumbnail;
  img.alt = item.caption || name;
  img.loading = "lazy";
  const meta = document.createElement("span");
  meta.className = "meta";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = `${item.score.toFixed(3)} · ${name}`;
  meta.append(score);
  if (item.caption) {
    const caption = document.createElement("span");
    caption.className = "caption";
    caption.textContent = item.caption;
    meta.append(document.createElement("br"), caption);
  }
  button.append(img, meta);
  button.addEventListener("click", () => {
    sendFeedback(item, "opened");
    openDetail(index);
  });
  li.append(button);
  if (item.search_id && item.id) li.append(markButton(item));
  return li;
}

// "This one": the result the user was looking for, said outright (stronger than opening it).
function markButton(item) {
  const mark = document.createElement("button");
  mark.type = "button";
  mark.className = "mark";
  mark.textContent = "this one";
  mark.setAttribute("aria-pressed", "false");
  mark.setAttribute("aria-label", `this one: ${item.path.split("/").pop()} is what I looked for`);
  mark.addEventListener("click", async () => {
    if (await sendFeedback(item, "this one")) {
      mark.setAttribute("aria-pressed", "true");
      mark.textContent = "✓ this one";
    }
  });
  return mark;
}

// Feedback is a side channel: a failure is said in the status line, never blocks the page.
async function sendFeedback(item, kind) {
  if (!item.search_id || !item.id) return false;  // not recorded (--no-feedback, image query)
  try {
    const out = await api("/api/feedback", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ search_id: item.search_id, id: item.id, kind }) });
    return out.recorded;
  } catch (error) {
    $("status").textContent = `Feedback not recorded: ${error.message}`;
    return false;
  }
}

// The page says whether it records, as vislang serve does when it starts.
async function showRecording() {
  try {
    const status = await api("/api/status");
    $("recording").textContent = status.feedback
      ? "Searches and clicks are recorded locally in the index; vislang feedback clear erases them."
      : "Searches and clicks are not recorded.";
  } catch (error) {
    $("recording").textContent = "";
  }
}

// -- the detail view -----------------------------------------------------------------------------
let detailAbort = null;

function openDetail(index) {
  const item = state.items[index];
  if (!item) return;
  state.current = index;
  if (detailAbort) detailAbort.abort();  // answers for the previous image are not wanted
  detailAbort = new AbortController();
  $("detail-title").textContent = item.path.split("/").pop();
  $("detail-path").textContent = item.path;
  $("detail-score").textContent = `score ${item.score.toFixed(3)}` +
    (state.mode === "text" ? ` for “${state.q}”` : "");
  drawTextBoxes(item);
  $("full").src = item.image;
  $("full").alt = item.caption || item.path.split("/").pop();
  $("overlay").hidden = true;
  $("overlay").removeAttribute("src");
  $("saliency-info").textContent = "";
  $("answer").textContent = "";
  $("stored-caption").hidden = !item.caption;
  $("stored-caption").textContent = item.caption ? `In the index: ${item.caption}` : "";
  $("prev").disabled = index === 0;
  $("next").disabled = index >= state.items.length - 1 && !state.more;
  detailError("");
  if (state.mode === "text") $("explain-q").value = state.q;
  if (!$("detail").open) $("detail").showModal();
  caption(item);
  if ($("explain-q").value.trim()) explainImage(item);
}

function detailError(message) {
  $("detail-error").textContent = message || "";
  $("detail-error").hidden = !message;
}

async function detailCall(url, fields, button, working) {
  const signal = detailAbort.signal;
  const label = button ? button.textContent : "";
  if (button) { button.disabled = true; button.textContent = working; }
  try {
    return await api(url, { method: "POST", body: form(fields), signal });
  } catch (error) {
    if (error.name !== "AbortError") detailError(error.message);
    return null;
  } finally {
    if (button) { button.disabled = false; button.textContent = label; }
  }
}

// The matched words' boxes (4 corners in the image's pixels), drawn once the image's size is
// known: the SVG's viewBox is the image itself, so the boxes scale with it.
function drawTextBoxes(item) {
  const svg = $("text-boxes");
  svg.replaceChildren();
  // An <svg> has no `hidden` property (HTML elements do): the attribute itself is what hides it.
  svg.setAttribute("hidden", "");
  const words = (item.ocr || []).flatMap((line) => line.words.length ? line.words : [line]);
  if (!words.length) return;
  const draw = () => {
    const full = $("full");
    svg.setAttribute("viewBox", `0 0 ${full.naturalWidth} ${full.naturalHeight}`);
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    for (const word of words) {
      const shape = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
      shape.setAttribute("points", word.box.map(([x, y]) => `${x},${y}`).join(" "));
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = word.text;
      shape.append(title);
      svg.append(shape);
    }
    svg.removeAttribute("hidden");
  };
  $("full").addEventListener("load", draw, { once: true });
}

async function caption(item) {
  $("caption").textContent = "Writing a caption…";
  const out = await detailCall("/api/caption", imageFields(item), null, "");
  if (state.items[state.current] !== item) return;
  $("caption").textContent = out ? `${out.caption} (${out.model})` : "";
}

async function explainImage(item) {
  const q = $("explain-q").value.trim();
  if (!q) { detailError("Type a phrase to find in the image."); return; }
  const method = $("method").value;
  $("saliency-info").textContent = `Explaining “${q}” with ${method}…`;
  const out = await detailCall("/api/saliency", { ...imageFields(item), q, method },
                               $("explain"), "Explaining…");
  if (state.items[state.current] !== item) return;
  if (!out) { $("saliency-info").textContent = ""; return; }
  $("overlay").src = out.overlay;
  $("overlay").hidden = !$("show-overlay").checked;
  $("saliency-info").textContent =
    `${out.method}: “${out.query}” matches best at (${out.argmax.x}, ${out.argmax.y}); ` +
    `map ${out.min.toFixed(3)} … ${out.max.toFixed(3)}, ${out.seconds.toFixed(2)} s. ` +
    (out.min < 0 && out.max > 0 ? "Red: better than the whole image; blue: worse."
                                : "Red: matches best; blue: least.");
}

async function askQuestion(item) {
  const question = $("question").value.trim();
  if (!question) { detailError("Type a question about the image."); return; }
  $("answer").textContent = "Thinking…";
  const out = await detailCall("/api/ask", { ...imageFields(item), question },
                               $("ask"), "Asking…");
  if (state.items[state.current] !== item) return;
  const note = out && out.note ? ` (${out.note})` : "";  // a long question was cut: say so
  $("answer").textContent = out ? `${out.question} → ${out.answer}${note}` : "";
}

async function step(delta) {
  const next = state.current + delta;
  if (next >= state.items.length && state.more) await loadMore();
  if (next >= 0 && next < state.items.length) openDetail(next);
}

function closeDetail() {
  if (detailAbort) detailAbort.abort();
  const tileButton = document.querySelector(`.tile[data-index="${state.current}"]`);
  if (tileButton) tileButton.focus();  // back where the keyboard was
}

// -- wiring ----------------------------------------------------------------------------------
function searchByFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    showError(`${file.name} is not an image.`);
    return;
  }
  $("q").value = "";
  startSearch("image", { file }, `images like ${file.name}`);
}

// -- filters and terms ------------------------------------------------------------------------
function filterParams() {
  const params = new URLSearchParams();
  const value = (id) => $(id).value.trim();
  for (const [id, name] of [["f-under", "under"], ["f-ext", "ext"], ["f-since", "since"],
                            ["f-until", "until"], ["f-threshold", "threshold"]]) {
    if (value(id)) params.set(name, value(id));
  }
  for (const [id, name] of [["f-add", "add"], ["f-sub", "sub"]]) {
    for (const term of value(id).split(";").map((t) => t.trim()).filter(Boolean)) {
      params.append(name, term);
    }
  }
  return params.toString();
}

// -- near-duplicates: pick what to keep, list the rest (vislang deletes nothing) ---------------
function formatSize(bytes) {
  if (bytes == null) return "gone";
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.round(bytes / 1e3)} kB`;
}

async function findDups() {
  state.generation += 1;
  $("results").replaceChildren();
  $("more").hidden = true;
  $("dups-groups").replaceChildren();
  $("dups-out").value = "";
  showError("");
  const threshold = $("dups-threshold").value || "0.95";
  $("status").textContent = `Looking for near-duplicates at ${threshold}…`;
  let out;
  try {
    out = await api(`/api/dups?threshold=${encodeURIComponent(threshold)}`);
  } catch (error) {
    $("status").textContent = "";
    showError(error.message);
    return;
  }
  $("status").textContent = out.groups.length
    ? `${out.groups.length} group(s) of near-duplicates` : "No near-duplicates at this threshold.";
  out.groups.forEach((group, number) => {
    const li = document.createElement("li");
    li.className = "dup-group";
    const list = document.createElement("ul");
    list.className = "grid";
    group.files.forEach((file, i) => {
      const item = document.createElement("li");
      const label = document.createElement("label");
      const keep = document.createElement("input");
      keep.type = "checkbox";
      keep.className = "keep";
      keep.checked = i === 0;  // the first of each group kept unless you choose otherwise
      keep.dataset.path = file.path;
      keep.setAttribute("aria-label", `keep ${file.path}`);
      const img = document.createElement("img");
      img.src = file.thumbnail;
      img.alt = file.path.split("/").pop();
      img.loading = "lazy";
      const info = document.createElement("span");
      info.className = "muted path";
      const taken = file.taken ? new Date(file.taken * 1000).toISOString().slice(0, 10) : "";
      info.textContent = `${file.path} · ${formatSize(file.size)} · ${taken}`;
      label.append(keep, " keep", img, info);
      item.append(label);
      list.append(item);
    });
    li.append(list);
    li.setAttribute("aria-label", `group ${number + 1}`);
    $("dups-groups").append(li);
  });
}

function listUnkept() {
  const others = [...document.querySelectorAll("#dups-groups input.keep")]
    .filter((box) => !box.checked).map((box) => box.dataset.path);
  $("dups-out").value = $("dups-json").checked ? JSON.stringify(others, null, 1)
    : others.join("\n");
}

function wire() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = $("q").value.trim();
    if (!q && !$("f-add").value.trim()) { showError("Type what you are looking for."); return; }
    const text = $("text-filter").value.trim();
    const filters = filterParams();
    const label = (q ? `“${q}”` : "the added terms") + (text ? ` with the text “${text}”` : "")
      + (filters ? " (filtered)" : "");
    startSearch("text", { q, text, filters }, label);
  });
  $("dups-open").addEventListener("click", () => { $("dups-view").hidden = false; findDups(); });
  $("dups-form").addEventListener("submit", (event) => { event.preventDefault(); findDups(); });
  $("dups-list").addEventListener("click", listUnkept);
  $("dups-json").addEventListener("change", listUnkept);
  $("pick").addEventListener("change", () => {
    searchByFile($("pick").files[0]);
    $("pick").value = "";
  });
  $("pick-label").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("pick").click(); }
  });
  $("more").addEventListener("click", loadMore);
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.more) loadMore();
  }, { rootMargin: "400px" }).observe($("sentinel"));

  $("close").addEventListener("click", () => $("detail").close());
  $("detail").addEventListener("close", closeDetail);
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("similar").addEventListener("click", () => {
    const item = state.items[state.current];
    $("detail").close();
    $("q").value = "";
    startSearch("similar", { path: item.path }, `images like ${item.path.split("/").pop()}`);
  });
  $("explain-form").addEventListener("submit", (event) => {
    event.preventDefault();
    explainImage(state.items[state.current]);
  });
  $("full").addEventListener("load", () => {
    $("full").parentElement.classList.toggle("small", $("full").naturalWidth < 300);
  });
  $("show-overlay").addEventListener("change", () => {
    $("overlay").hidden = !$("show-overlay").checked || !$("overlay").getAttribute("src");
  });
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    askQuestion(state.items[state.current]);
  });

  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName);
    if ($("detail").open) {
      if (!typing && event.key === "ArrowLeft") step(-1);
      if (!typing && event.key === "ArrowRight") step(1);
      return;
    }
    if (event.key === "/" && !typing) { event.preventDefault(); $("q").focus(); }
  });

  // Drag and drop, or paste, an image anywhere to search by it.
  let depth = 0;
  document.addEventListener("dragenter", (event) => {
    if (![...event.dataTransfer.types].includes("Files")) return;
    depth += 1;
    $("drop").hidden = false;
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) $("drop").hidden = true;
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    $("drop").hidden = true;
    searchByFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
    if (file) searchByFile(file);
  });

  showRecording();
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("q");
  if (fromHash) {
    $("q").value = fromHash;
    startSearch("text", { q: fromHash }, `“${fromHash}”`);
  }
}

wire();
