// RAG Engine playground: plain browser APIs against the public API of this same origin.
// Every call carries the pasted API key; nothing is fetched from anywhere else (the page's
// Content-Security-Policy would refuse it). All text from the API goes in with textContent.

const KEY_STORAGE = "rag-playground-api-key";
const COLLECTION_STORAGE = "rag-playground-collection";
const FINAL_STATES = new Set(["succeeded", "failed", "dead"]);
const JOBS_SHOWN = 25;

const $ = (id) => document.getElementById(id);

/** An RFC 9457 problem (or a network failure), as the page shows it. */
class ApiProblem extends Error {
  constructor(status, title, detail = "", errors = []) {
    super(detail || title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.errors = errors;
  }
}

function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function problemOf(response) {
  let title = `${response.status} ${response.statusText}`.trim();
  let detail = "";
  let errors = [];
  const type = response.headers.get("content-type") || "";
  try {
    if (type.includes("json")) {
      const body = await response.json();
      title = body.title || title;
      detail = body.detail || "";
      errors = Array.isArray(body.errors) ? body.errors : [];
    } else {
      detail = (await response.text()).slice(0, 300);
    }
  } catch {
    // An unreadable body: the status line is all there is to say.
  }
  const retryAfter = response.headers.get("retry-after");
  if (retryAfter) detail = `${detail} (try again in ${retryAfter} s)`.trim();
  return new ApiProblem(response.status, title, detail, errors);
}

/** fetch() with the key; resolves to the response when it is 2xx, else throws ApiProblem. */
async function api(path, { method = "GET", json, body, accept = "application/json", signal } = {}) {
  const key = storedKey();
  if (!key) throw new ApiProblem(0, "No API key", "Paste an API key in step 1 first.");
  const headers = { Accept: accept, Authorization: `Bearer ${key}` };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiProblem(0, "Network error", `The gateway could not be reached: ${error.message}`);
  }
  if (!response.ok) throw await problemOf(response);
  return response;
}

/** Server-sent events of a streaming response: {event, data, id}, as the stream delivers. */
async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = /\r?\n\r?\n/.exec(buffer)) !== null) {
        const block = buffer.slice(0, end.index);
        buffer = buffer.slice(end.index + end[0].length);
        const event = parseEvent(block);
        if (event) yield event;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function parseEvent(block) {
  let event = "message";
  let id = null;
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue; // a comment: the keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  return data.length ? { event, data: data.join("\n"), id } : null;
}

function element(tag, { className, text, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// --- problems ---------------------------------------------------------------------------

function describe(error) {
  if (error instanceof ApiProblem) {
    const fields = error.errors
      .filter((e) => e && (e.field || e.message))
      .map((e) => [e.field, e.message].filter(Boolean).join(": "));
    const detail = [error.detail, ...fields].filter(Boolean).join(" — ");
    const title = error.status ? `${error.title} (${error.status})` : error.title;
    return { title, detail };
  }
  return { title: "Unexpected error", detail: String(error && error.message ? error.message : error) };
}

function showProblem(error) {
  if (error && error.name === "AbortError") return;
  const { title, detail } = describe(error);
  $("problem-title").textContent = title;
  $("problem-detail").textContent = detail;
  $("problem").hidden = false;
}

function clearProblem() {
  $("problem").hidden = true;
}

// --- API key ----------------------------------------------------------------------------

async function useKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) {
    showProblem(new ApiProblem(0, "No API key", "Paste an API key first."));
    $("api-key").focus();
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  clearProblem();
  $("key-status").textContent = "Checking the key…";
  try {
    await loadCollections();
    $("key-status").textContent = "Key in use for this tab.";
    await loadJobs();
  } catch (error) {
    if (error.status === 401) sessionStorage.removeItem(KEY_STORAGE);
    $("key-status").textContent = "The key could not be used.";
    showProblem(error);
  }
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  $("api-key").value = "";
  $("key-status").textContent = "Key forgotten.";
  $("collection-status").textContent = "";
  const select = $("collection");
  select.replaceChildren(element("option", { text: "(enter an API key first)", attrs: { value: "" } }));
  $("jobs").replaceChildren();
  $("jobs-status").textContent = "";
  $("api-key").focus();
}

// --- collections ------------------------------------------------------------------------

function selectedCollection() {
  return $("collection").value;
}

async function loadCollections(choose) {
  const { collections } = await (await api("/v1/collections")).json();
  const select = $("collection");
  const wanted = choose || select.value || sessionStorage.getItem(COLLECTION_STORAGE) || "";
  select.replaceChildren();
  if (!collections.length) {
    select.append(element("option", { text: "(no collections yet: create one)", attrs: { value: "" } }));
  }
  for (const collection of collections) {
    const documents = collection.document_count === 1 ? "1 document" : `${collection.document_count} documents`;
    select.append(element("option", { text: `${collection.name} (${documents})`, attrs: { value: collection.name } }));
  }
  if (collections.some((c) => c.name === wanted)) select.value = wanted;
  sessionStorage.setItem(COLLECTION_STORAGE, select.value);
}

async function createCollection(event) {
  event.preventDefault();
  const input = $("new-collection");
  const name = input.value.trim();
  if (!name) {
    showProblem(new ApiProblem(0, "No name", "Type a name for the new collection."));
    input.focus();
    return;
  }
  try {
    await api("/v1/collections", { method: "POST", json: { name } });
    clearProblem();
    input.value = "";
    await loadCollections(name);
    $("collection-status").textContent = `Collection ${name} created and selected.`;
  } catch (error) {
    showProblem(error);
  }
}

// --- uploads and jobs -------------------------------------------------------------------

function collectionPath(name) {
  return `/v1/collections/${encodeURIComponent(name)}`;
}

/** A job's state in words: stage and progress while it runs, the reason when it failed. */
function jobSummary(job) {
  const percent = Math.round((Number(job.progress) || 0) * 100);
  if (job.state === "succeeded") {
    const result = job.result || {};
    const chunks = result.chunks_created;
    if (chunks === undefined) return "succeeded";
    return `succeeded: ${chunks} ${chunks === 1 ? "chunk" : "chunks"}`;
  }
  if (job.state === "failed" || job.state === "dead") return job.state;
  if (job.state === "running") return `running: ${job.stage || "working"} (${percent}%)`;
  return job.state || "queued";
}

function failureReason(job) {
  if (!job.error) return "";
  return job.error_stage ? `Failed at ${job.error_stage}: ${job.error}` : job.error;
}

/** Follows a job until it ends, calling update with what is known; returns the final record.
 * The job's event stream is read while it can be; the record itself has the final word. */
async function followJob(jobId, update) {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  try {
    const response = await api(`${path}/events`, { accept: "text/event-stream" });
    for await (const { data } of serverSentEvents(response)) {
      const fields = JSON.parse(data);
      update({ ...fields, progress: Number(fields.progress) });
    }
  } catch {
    // No stream (503 when the ingest service has too many open): polling does the same.
  }
  for (;;) {
    const job = await (await api(path)).json();
    update(job);
    if (FINAL_STATES.has(job.state)) return job;
    await sleep(1000);
  }
}

function uploadRow(file) {
  const name = element("span", { className: "upload-name", text: file.name });
  const progress = element("progress", { attrs: { max: "1", value: "0", "aria-label": `Progress of ${file.name}` } });
  const state = element("span", { className: "badge", text: "uploading" });
  const reason = element("p", { className: "error", attrs: { hidden: "" } });
  const row = element("li", { className: "upload" }, [
    element("div", { className: "upload-head" }, [name, state]),
    progress,
    reason,
  ]);
  let said = "";
  return {
    row,
    update(job) {
      const summary = jobSummary(job);
      if (summary !== said) state.textContent = said = summary; // announced on change only
      state.dataset.state = job.state || "";
      row.dataset.state = job.state || "";
      progress.value = job.state === "succeeded" ? 1 : Number(job.progress) || 0;
      const why = failureReason(job);
      reason.textContent = why;
      reason.hidden = !why;
    },
    fail(error) {
      const { title, detail } = describe(error);
      state.textContent = "refused";
      state.dataset.state = row.dataset.state = "failed";
      reason.textContent = detail ? `${title}: ${detail}` : title;
      reason.hidden = false;
    },
  };
}

async function uploadOne(collection, file) {
  const view = uploadRow(file);
  $("uploads").prepend(view.row);
  try {
    // One request per file, so one refused file (say, a format no parser reads) fails alone.
    const form = new FormData();
    form.append("file", file, file.name);
    const response = await api(`${collectionPath(collection)}/documents/upload`, { method: "POST", body: form });
    const { jobs } = await response.json();
    view.update(jobs[0]);
    const final = await followJob(jobs[0].job_id, (job) => view.update(job));
    return final.state === "succeeded";
  } catch (error) {
    view.fail(error);
    return false;
  }
}

async function uploadFiles(files) {
  const list = Array.from(files || []);
  const collection = selectedCollection();
  if (!list.length) {
    showProblem(new ApiProblem(0, "No files", "Choose or drop at least one file."));
    return;
  }
  if (!collection) {
    showProblem(new ApiProblem(0, "No collection", "Pick or create a collection in step 2 first."));
    return;
  }
  clearProblem();
  await Promise.all(list.map((file) => uploadOne(collection, file)));
  await Promise.allSettled([loadCollections(collection), loadJobs()]);
}

function setUpDropZone() {
  const zone = $("drop-zone");
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  zone.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    uploadFiles(event.dataTransfer.files);
  });
  // A file dropped beside the zone must not navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

/** GET /v1/jobs lists the key's jobs (its tenant's, or only its collections'), newest first. */
async function loadJobs() {
  const params = new URLSearchParams({ limit: String(JOBS_SHOWN) });
  const collection = selectedCollection();
  if ($("jobs-scope").value === "collection" && collection) params.set("collection", collection);
  const { jobs } = await (await api(`/v1/jobs?${params}`)).json();
  $("jobs").replaceChildren(...jobs.map(jobItem));
  const where = params.has("collection") ? ` of ${collection}` : "";
  $("jobs-status").textContent = jobs.length
    ? `${jobs.length} most recent jobs${where}.`
    : `No jobs${where} yet.`;
}

function jobItem(job) {
  const title = job.filename || job.source || job.document_id || job.id;
  const created = job.created_at ? new Date(job.created_at * 1000).toLocaleString() : "";
  const state = element("span", { className: "badge", text: jobSummary(job), attrs: { "data-state": job.state } });
  const item = element("li", { className: "job", attrs: { "data-state": job.state } }, [
    element("div", { className: "upload-head" }, [element("span", { className: "upload-name", text: title }), state]),
    element("p", { className: "hint", text: [job.kind, job.collection, created, `job ${job.id}`].filter(Boolean).join(" · ") }),
  ]);
  const why = failureReason(job);
  if (why) item.append(element("p", { className: "error", text: why }));
  if (job.state === "failed" || job.state === "dead") {
    const retry = element("button", { className: "secondary", text: "Retry", attrs: { type: "button", "aria-label": `Retry job ${title}` } });
    retry.addEventListener("click", () => retryJob(job.id, retry, state));
    item.append(retry);
  }
  return item;
}

async function retryJob(jobId, button, badge) {
  button.disabled = true;
  try {
    await api(`/v1/jobs/${encodeURIComponent(jobId)}/retry`, { method: "POST" });
    await followJob(jobId, (job) => {
      badge.textContent = jobSummary(job);
    });
    await loadJobs();
  } catch (error) {
    button.disabled = false;
    showProblem(error);
  }
}

// --- questions and answers --------------------------------------------------------------

let sources = new Map();
let pending = ""; // streamed text that may still turn into a citation, like "[1"
let running = null;

function sourceLabel(source) {
  const parts = [source.title, source.source, source.heading];
  if (source.page !== undefined) parts.push(`page ${source.page}`);
  return [...new Set(parts.filter(Boolean))].join(" · ") || source.document_id;
}

function citationButton(number) {
  const button = element("button", {
    className: "cite",
    text: `[${number}]`,
    attrs: { type: "button", "aria-controls": "passage", "aria-expanded": "false", "aria-label": `Citation ${number}`, "data-number": String(number) },
  });
  button.addEventListener("click", () => showPassage(number));
  return button;
}

/** Appends streamed answer text, turning each complete "[n]" that names a source into a button. */
function appendAnswer(text) {
  const answer = $("answer");
  pending += text;
  while (pending) {
    const open = pending.indexOf("[");
    if (open === -1) {
      answer.append(pending);
      pending = "";
      break;
    }
    if (open > 0) {
      answer.append(pending.slice(0, open));
      pending = pending.slice(open);
    }
    const citation = /^\[(\d{1,3})\]/.exec(pending);
    if (citation && sources.has(Number(citation[1]))) {
      answer.append(citationButton(Number(citation[1])));
      pending = pending.slice(citation[0].length);
    } else if (!citation && /^\[\d{0,3}$/.test(pending)) {
      break; // wait for the rest of it
    } else {
      answer.append("[");
      pending = pending.slice(1);
    }
  }
}

function flushAnswer() {
  if (pending) $("answer").append(pending);
  pending = "";
}

function showSources(list) {
  sources = new Map(list.map((source) => [source.number, source]));
  $("sources").replaceChildren(
    ...list.map((source) => {
      const button = element("button", {
        className: "source",
        text: `[${source.number}] ${sourceLabel(source)}`,
        attrs: { type: "button", "aria-controls": "passage", "aria-expanded": "false", "data-number": String(source.number) },
      });
      button.addEventListener("click", () => showPassage(source.number));
      return element("li", {}, [button]);
    }),
  );
}

function showPassage(number) {
  const source = sources.get(number);
  if (!source) return;
  $("passage-heading").textContent = `Source [${number}]: ${sourceLabel(source)}`;
  $("passage-meta").textContent = [`document ${source.document_id}`, `chunk ${source.chunk_id}`].join(" · ");
  $("passage-quote").textContent = source.quote || "(no text)";
  for (const button of document.querySelectorAll("button[aria-controls=passage]")) {
    button.setAttribute("aria-expanded", String(Number(button.dataset.number) === number));
  }
  const passage = $("passage");
  passage.hidden = false;
  passage.focus();
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  const collection = selectedCollection();
  if (!question) {
    showProblem(new ApiProblem(0, "No question", "Type a question first."));
    $("question").focus();
    return;
  }
  if (!collection) {
    showProblem(new ApiProblem(0, "No collection", "Pick or create a collection in step 2 first."));
    return;
  }
  clearProblem();
  running = new AbortController();
  $("ask-button").disabled = true;
  $("stop-button").disabled = false;
  $("answer").replaceChildren();
  $("sources").replaceChildren();
  $("passage").hidden = true;
  $("answer-status").textContent = "Searching…";
  sources = new Map();
  pending = "";
  let finished = false;
  try {
    const response = await api(`${collectionPath(collection)}/query`, {
      method: "POST",
      json: { query: question, stream: true },
      accept: "text/event-stream",
      signal: running.signal,
    });
    for await (const { event: name, data } of serverSentEvents(response)) {
      const payload = JSON.parse(data);
      if (name === "sources") {
        showSources(payload.sources);
        $("answer-status").textContent = "Answering…";
      } else if (name === "token") {
        appendAnswer(payload.text);
      } else if (name === "done") {
        flushAnswer();
        finished = true;
        const cited = (payload.cited || []).length;
        const notes = [`${payload.generator} generator`, `${cited} cited ${cited === 1 ? "source" : "sources"}`];
        if (payload.cached) notes.push("from the cache");
        if (payload.warnings) notes.push(...payload.warnings);
        $("answer-status").textContent = `Done: ${notes.join("; ")}.`;
      } else if (name === "error") {
        flushAnswer();
        finished = true;
        $("answer-status").textContent = "The answer failed.";
        showProblem(new ApiProblem(0, "The answer failed", payload.message));
      }
    }
    if (!finished) {
      flushAnswer();
      $("answer-status").textContent = "The answer stream ended early.";
    }
  } catch (error) {
    flushAnswer();
    $("answer-status").textContent = error.name === "AbortError" ? "Stopped." : "The question could not be answered.";
    showProblem(error);
  } finally {
    running = null;
    $("ask-button").disabled = false;
    $("stop-button").disabled = true;
  }
}

// --- start ------------------------------------------------------------------------------

function guarded(task) {
  return (...args) => task(...args).catch(showProblem);
}

function start() {
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("problem-dismiss").addEventListener("click", clearProblem);
  $("refresh-collections").addEventListener("click", guarded(() => loadCollections()));
  $("collection").addEventListener("change", () => {
    sessionStorage.setItem(COLLECTION_STORAGE, selectedCollection());
    loadJobs().catch(showProblem);
  });
  $("create-form").addEventListener("submit", createCollection);
  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("files");
    const chosen = Array.from(input.files);
    input.value = "";
    uploadFiles(chosen);
  });
  setUpDropZone();
  $("ask-form").addEventListener("submit", ask);
  $("stop-button").addEventListener("click", () => running && running.abort());
  $("refresh-jobs").addEventListener("click", guarded(loadJobs));
  $("jobs-scope").addEventListener("change", guarded(loadJobs));
  document.body.dataset.ready = "true";
  if (storedKey()) {
    $("api-key").value = storedKey();
    $("key-status").textContent = "Using the key kept in this tab.";
    loadCollections().then(loadJobs).catch(showProblem);
  }
}

start();
