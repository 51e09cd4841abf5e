// The playground: plain DOM, no dependencies. Every text from the service is inserted with
// textContent / createTextNode, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ALL_MODES = ["hybrid", "dense", "colbert"];
  let collections = [];

  async function api(path, body) {
    // new URL(..., origin): a page opened as http://user:key@host/ cannot fetch relative URLs.
    const url = new URL(path, window.location.origin);
    const init = { credentials: "same-origin", method: body === undefined ? "GET" : "POST" };
    if (body !== undefined) {
      init.headers = { "Content-Type": "application/json" };
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new Error(`cannot reach the service: ${err.message}`);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error && data.error.message;
      throw new Error(message || `the service answered HTTP ${response.status}`);
    }
    return data;
  }

  function parseFilter(text) {
    const raw = text.trim();
    if (!raw) return null;
    if (raw.startsWith("{")) {
      try {
        return JSON.parse(raw);
      } catch (err) {
        throw new Error(`the filter is not valid JSON: ${err.message}`);
      }
    }
    const eq = raw.indexOf("=");
    if (eq <= 0) {
      throw new Error(
        `the filter must be field=value (e.g. lang=de) or a Qdrant filter as JSON; got ${JSON.stringify(raw)}`
      );
    }
    const key = raw.slice(0, eq).trim();
    const valueText = raw.slice(eq + 1).trim();
    let value = valueText;
    if (/^-?\d+$/.test(valueText)) value = Number(valueText);
    else if (valueText === "true" || valueText === "false") value = valueText === "true";
    return { must: [{ key, match: { value } }] };
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function setOptions(select, values, keep, extra) {
    select.replaceChildren();
    for (const [value, label] of extra || []) select.append(new Option(label, value));
    for (const value of values) select.append(new Option(value, value));
    if (keep !== null && keep !== undefined && [...select.options].some((o) => o.value === keep)) {
      select.value = keep;
    }
  }

  function modesOf(name) {
    const found = collections.find((c) => c.name === name);
    return found ? found.modes : ALL_MODES;
  }

  function refreshModes(mode, compare) {
    const modes = modesOf($("collection").value);
    setOptions($("mode"), modes, mode ?? $("mode").value);
    setOptions($("compare"), modes, compare ?? $("compare").value, [["", "none"]]);
  }

  // Contribution of each matched document span: the sum of the similarities of the query
  // tokens that picked it, and their names.
  function spansOf(explain) {
    const bySpan = new Map();
    for (const m of explain.matches || []) {
      if (!m.document_span) continue;
      const [start, end] = m.document_span;
      const key = `${start}:${end}`;
      if (!bySpan.has(key)) bySpan.set(key, { start, end, weight: 0, tokens: [] });
      const entry = bySpan.get(key);
      entry.weight += m.similarity;
      entry.tokens.push(`${m.query_token} (${m.similarity.toFixed(3)})`);
    }
    return [...bySpan.values()].sort((a, b) => a.start - b.start || b.end - a.end);
  }

  function renderText(container, text, explain) {
    if (!explain || explain.pooled) {
      container.textContent = text;
      return;
    }
    const spans = spansOf(explain);
    const top = Math.max(1e-9, ...spans.map((s) => s.weight));
    let pos = 0;
    for (const span of spans) {
      if (span.start < pos || span.end > text.length) continue;
      if (span.start > pos) container.append(document.createTextNode(text.slice(pos, span.start)));
      const mark = document.createElement("mark");
      mark.textContent = text.slice(span.start, span.end);
      mark.title = `matched query tokens: ${span.tokens.join(", ")}`;
      mark.dataset.span = `${span.start}:${span.end}`;
      mark.dataset.weight = span.weight.toFixed(4);
      mark.style.setProperty("--weight", (0.12 + (0.78 * Math.max(0, span.weight)) / top).toFixed(3));
      container.append(mark);
      pos = span.end;
    }
    if (pos < text.length) container.append(document.createTextNode(text.slice(pos)));
  }

  // Which search legs found a hit: the service's per-leg report when it sends one, else
  // what the mode implies.
  function legsOf(hit, mode) {
    const legs = hit.legs || (hit.explain && hit.explain.legs);
    if (Array.isArray(legs)) return legs.map(String);
    if (legs && typeof legs === "object") {
      return Object.entries(legs).map(([leg, info]) => {
        const rank = info && typeof info === "object" ? info.rank : info;
        return rank === undefined || rank === null ? leg : `${leg} #${rank}`;
      });
    }
    if (mode === "hybrid") return ["dense prefetch", "colbert rerank"];
    return [mode];
  }

  function chip(cls, text) {
    const el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }

  function renderHits(pane, answer) {
    const list = pane.querySelector("ol.hits");
    list.replaceChildren();
    answer.results.forEach((hit, i) => {
      const item = document.createElement("li");
      item.className = "hit";
      item.dataset.id = String(hit.id);
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.append(chip("rank", `#${i + 1}`), chip("score", `score ${Number(hit.score).toFixed(4)}`));
      for (const leg of legsOf(hit, answer.mode)) meta.append(chip("leg", leg));
      const payload = hit.payload || {};
      for (const [key, value] of Object.entries(payload)) {
        if (key === "text") continue;
        meta.append(chip("field", `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`));
      }
      const text = document.createElement("p");
      text.className = "text";
      renderText(text, typeof payload.text === "string" ? payload.text : "", hit.explain);
      item.append(meta, text);
      if (hit.explain && hit.explain.note) {
        const note = document.createElement("p");
        note.className = "note";
        note.textContent = hit.explain.note;
        item.append(note);
      }
      list.append(item);
    });
  }

  function markOverlap(main, other, otherMode) {
    const rank = new Map();
    other.querySelectorAll("li.hit").forEach((li, i) => rank.set(li.dataset.id, i + 1));
    main.querySelectorAll("li.hit").forEach((li) => {
      const at = rank.get(li.dataset.id);
      li.classList.toggle("both", at !== undefined);
      li.querySelectorAll(".overlap").forEach((el) => el.remove());
      if (at !== undefined) li.querySelector(".meta").append(chip("overlap", `in both: #${at} in ${otherMode}`));
    });
  }

  async function runPane(pane, request) {
    pane.hidden = false;
    pane.querySelector("h2").textContent = `${request.mode} · ${request.collection}`;
    const status = pane.querySelector(".status");
    status.className = "status";
    status.textContent = "searching…";
    pane.querySelector("ol.hits").replaceChildren();
    const started = performance.now();
    try {
      const answer = await api("/v1/search", request);
      renderHits(pane, answer);
      const ms = Math.round(performance.now() - started);
      status.textContent = `${answer.results.length} hits in ${ms} ms`;
      return answer;
    } catch (err) {
      status.className = "status failed";
      status.textContent = err.message;
      throw err;
    }
  }

  // Counts finished searches (in data-searches) whatever their outcome: tests and scripts
  // wait on it.
  async function search() {
    try {
      await runSearch();
    } finally {
      document.body.dataset.searches = String(Number(document.body.dataset.searches || 0) + 1);
    }
  }

  async function runSearch() {
    showError("");
    const collection = $("collection").value;
    const query = $("query").value;
    const mode = $("mode").value;
    const compare = $("compare").value;
    const params = new URLSearchParams({ collection, q: query, mode });
    if (compare) params.set("compare", compare);
    if ($("filter").value.trim()) params.set("filter", $("filter").value.trim());
    params.set("limit", $("limit").value);
    params.set("prefetch", $("prefetch").value);
    history.replaceState(null, "", `${window.location.pathname}?${params}`);
    let filter;
    try {
      filter = parseFilter($("filter").value);
    } catch (err) {
      showError(err.message);
      return;
    }
    if (!collection) {
      showError("pick a collection first");
      return;
    }
    if (!query.trim()) {
      showError("type a query first");
      return;
    }
    const limit = Number.parseInt($("limit").value, 10) || 10;
    const prefetch = Number.parseInt($("prefetch").value, 10) || 100;
    const base = { collection, query, limit, prefetch_limit: Math.max(prefetch, limit), explain: true };
    if (filter !== null) base.filter = filter;
    const main = $("pane-main");
    const other = $("pane-compare");
    const runs = [runPane(main, { ...base, mode })];
    if (compare) runs.push(runPane(other, { ...base, mode: compare }));
    else other.hidden = true;
    const done = await Promise.allSettled(runs);
    const failed = done.find((d) => d.status === "rejected");
    if (failed) showError(failed.reason.message);
    if (compare && done.every((d) => d.status === "fulfilled")) {
      markOverlap(main, other, compare);
      markOverlap(other, main, mode);
    }
  }

  async function start() {
    const params = new URLSearchParams(window.location.search);
    $("query").value = params.get("q") || "";
    $("filter").value = params.get("filter") || "";
    if (params.get("limit")) $("limit").value = params.get("limit");
    if (params.get("prefetch")) $("prefetch").value = params.get("prefetch");
    const wanted = params.get("collection");
    try {
      collections = (await api("/v1/collections")).data;
    } catch (err) {
      showError(`cannot list the collections: ${err.message}`);
    }
    const names = collections.map((c) => c.name);
    // A linked collection that is not there stays selectable: the search then says why.
    if (wanted && !names.includes(wanted)) names.push(wanted);
    setOptions($("collection"), names, wanted);
    refreshModes(params.get("mode"), params.get("compare") || "");
    $("collection").addEventListener("change", () => refreshModes());
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      search();
    });
    document.body.dataset.ready = "true";
    if (params.get("q")) await search();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
