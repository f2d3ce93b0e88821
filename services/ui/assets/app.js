// The fleet page's script (plain ES module, no build step). It keeps the server-rendered page live: the grid,
// counters and bus line from /api/stream (server-sent events: the whole fleet first, then changes), the event
// list from /api/events with the form's filters, and the device panel from /api/devices/HOST/BDF. Everything
// from the server is put into the page with textContent or attributes, never as HTML: event text is hostile.

const $ = (id) => document.getElementById(id);
const OUTCOMES = ["verified", "refused", "failed", "quarantined", "planned"];
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

function fmtMs(ms) {
  if (typeof ms !== "number") return "-";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// ------------------------------------------------------------------------------------------------------
// Grid

function cellButton(c) {
  const b = el(
    "button",
    { type: "button", class: `cell ${c.cls}`, "data-host": c.host, "data-bdf": c.bdf },
    el("span", { class: "bdf" }, c.bdf),
    el("span", { class: "st" }, c.text),
    el("span", { class: "why" }, c.why),
  );
  b.setAttribute("aria-label", c.label);
  b.title = c.why || c.text;
  return b;
}

function hostBox(host) {
  for (const h of document.querySelectorAll("#grid .host")) if (h.dataset.host === host) return h;
  const box = el(
    "div",
    { class: "host", "data-host": host },
    el("h3", {}, host),
    el("div", { class: "cells" }),
  );
  const grid = $("grid");
  grid.querySelector(".empty")?.remove();
  const after = [...grid.querySelectorAll(".host")].find((h) => h.dataset.host > host);
  grid.insertBefore(box, after ?? null);
  return box;
}

function setCell(c) {
  const cells = hostBox(c.host).querySelector(".cells");
  const fresh = cellButton(c);
  const old = [...cells.children].find((b) => b.dataset.bdf === c.bdf);
  if (old) old.replaceWith(fresh);
  else cells.insertBefore(fresh, [...cells.children].find((b) => b.dataset.bdf > c.bdf) ?? null);
  if (panelOf && panelOf.host === c.host && panelOf.bdf === c.bdf) refreshPanelSoon();
}

function setFleet(view) {
  $("grid").replaceChildren();
  if (view.devices.length === 0) $("grid").append(el("p", { class: "empty" }, "no devices known yet"));
  for (const c of view.devices) setCell(c);
  setCounters(view.counters);
  $("coordinator-id").textContent = view.coordinator ?? "-";
}

// ------------------------------------------------------------------------------------------------------
// Counters

function setCounters(c) {
  const max = Math.max(1, ...OUTCOMES.map((k) => c.outcomes[k] ?? 0));
  for (const k of OUTCOMES) {
    const n = c.outcomes[k] ?? 0;
    const w = Math.round((n / max) * 200);
    for (const node of document.querySelectorAll(`[data-outcome="${k}"]`)) {
      if (node.tagName === "rect") node.setAttribute("width", String(w));
      else if (node.tagName === "text") {
        node.textContent = String(n);
        node.setAttribute("x", String(96 + w));
      } else node.textContent = String(n);
    }
  }
  const rows = Object.entries(c.mttrMs).map(([m, v]) =>
    el("tr", {}, el("th", { scope: "row" }, m), el("td", {}, fmtMs(v.meanMs)), el("td", {}, v.resets)),
  );
  $("mttr")
    .querySelector("tbody")
    .replaceChildren(
      ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "3" }, "no reset ended yet"))]),
    );
  const b = $("breaker");
  b.className = `breaker ${c.breaker.status}`;
  b.replaceChildren(
    `${c.breaker.status}${c.breaker.reason ? `: ${c.breaker.reason}` : ""}`,
    ...(c.breaker.from ? [" ", el("small", {}, `(from ${c.breaker.from})`)] : []),
  );
}

function setBus(s) {
  const line = $("bus");
  line.textContent = s.message;
  line.className = `bus ${s.connected && s.coordinator ? "up" : "down"}`;
}

// ------------------------------------------------------------------------------------------------------
// The fleet stream (EventSource reconnects by itself; the server sends the whole fleet first each time)

function followFleet() {
  const es = new EventSource("/api/stream");
  es.addEventListener("fleet", (m) => setFleet(JSON.parse(m.data)));
  es.addEventListener("cell", (m) => setCell(JSON.parse(m.data)));
  es.addEventListener("counters", (m) => setCounters(JSON.parse(m.data)));
  es.addEventListener("bus", (m) => setBus(JSON.parse(m.data)));
  es.addEventListener("coordinator", (m) => {
    $("coordinator-id").textContent = JSON.parse(m.data) ?? "-";
  });
  es.addEventListener("error", () => {
    if (es.readyState !== EventSource.OPEN)
      setBus({ connected: false, coordinator: false, message: "page server unreachable: reconnecting" });
  });
}

// ------------------------------------------------------------------------------------------------------
// Events (fetch, so that a rejected filter's 400 and its message reach the page)

const EVENTS_SHOWN = 300;
let eventsAbort = null;

function eventRow(e) {
  const what = el("td", {}, e.summary);
  if (e.mismatch)
    what.append(" ", el("strong", { class: "mismatch" }, `[envelope disagrees: ${e.mismatch}]`));
  return el(
    "tr",
    { class: e.source },
    el("td", {}, e.time),
    el("td", {}, e.host),
    el("td", {}, e.device),
    el("td", {}, e.source),
    el("td", {}, e.kind),
    what,
  );
}

function addEvent(e) {
  const body = $("events").querySelector("tbody");
  body.prepend(eventRow(e));
  while (body.children.length > EVENTS_SHOWN) body.lastElementChild.remove();
}

async function followEvents(query) {
  eventsAbort?.abort();
  const ac = new AbortController();
  eventsAbort = ac;
  $("filter-error").textContent = "";
  let res;
  try {
    res = await fetch(`/api/events${query ? `?${query}` : ""}`, { signal: ac.signal });
  } catch {
    if (!ac.signal.aborted) setTimeout(() => eventsAbort === ac && followEvents(query), 2000);
    return;
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    $("filter-error").textContent =
      `${res.status}: ${body.error ?? res.statusText}${body.field ? ` (field ${body.field})` : ""}`;
    return;
  }
  $("events").querySelector("tbody").replaceChildren();
  $("events-note").textContent = query
    ? `filtered: ${decodeURIComponent(query.replaceAll("&", ", "))}`
    : "recent events, then live";
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut = buf.indexOf("\n\n");
      while (cut >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        cut = buf.indexOf("\n\n");
        const name = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (data === undefined) continue;
        if (name === "evt") addEvent(JSON.parse(data));
        else if (name === "failed") $("filter-error").textContent = JSON.parse(data).error;
      }
    }
  } catch {
    // aborted (new filters) or the server went away
  }
  if (!ac.signal.aborted) setTimeout(() => eventsAbort === ac && followEvents(query), 2000);
}

function filtersQuery() {
  const q = new URLSearchParams();
  for (const name of ["host", "bdf", "kind", "since"]) {
    const v = $(`f-${name}`).value.trim();
    if (v) q.set(name, v);
  }
  return q.toString();
}

// ------------------------------------------------------------------------------------------------------
// Device panel

let panelOf = null;
let panelTimer = null;

function section(title, ...children) {
  return el("section", { class: "panel-part" }, el("h3", {}, title), ...children);
}

function table(head, rows) {
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))),
  );
}

/** One reset's phases as a strip of SVG bars, widths by duration. */
function phaseStrip(phases) {
  const total = phases.reduce((n, p) => n + (p.ms ?? 0), 0) || 1;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 300 12");
  svg.setAttribute("width", "300");
  svg.setAttribute("height", "12");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "phase durations");
  let x = 0;
  phases.forEach((p, i) => {
    const w = Math.max(1, ((p.ms ?? 0) / total) * 300);
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", String(x));
    r.setAttribute("y", "0");
    r.setAttribute("width", String(w));
    r.setAttribute("height", "12");
    r.setAttribute("class", `phase p${i % 6}`);
    const t = document.createElementNS(SVG, "title");
    t.textContent = `${p.phase}: ${fmtMs(p.ms)}`;
    r.append(t);
    svg.append(r);
    x += w;
  });
  return svg;
}

function renderPanel(d, image) {
  const parts = [];
  const c = d.cell;
  parts.push(el("p", { class: `panel-state ${c.cls}` }, `${c.host} ${c.bdf}: ${c.text}`));
  if (d.quarantineReason)
    parts.push(el("p", { class: "quarantine-reason" }, `quarantined because: ${d.quarantineReason}`));
  parts.push(
    section(
      "Reset history",
      d.resets.length === 0
        ? el("p", {}, "no reset seen")
        : el(
            "div",
            {},
            ...d.resets.map((r) =>
              el(
                "div",
                { class: "reset" },
                el(
                  "p",
                  {},
                  `${r.requestId}: ${r.outcome ?? "running"}${r.reason ? ` (${r.reason})` : ""}, ${r.scope ?? "?"} by ${r.method ?? "?"}, ${fmtMs(r.durationMs)}${r.startedAt ? ` from ${r.startedAt}` : ""}`,
                ),
                phaseStrip(r.phases),
                table(
                  ["phase", "duration"],
                  r.phases.map((p) => [p.phase, fmtMs(p.ms)]),
                ),
              ),
            ),
          ),
    ),
  );
  const p = d.lastPlan;
  parts.push(
    section(
      "Last plan",
      p
        ? el(
            "div",
            {},
            el(
              "p",
              {},
              `${p.requestId}: scope ${p.scope} by ${p.method}${p.escalated ? " (escalated)" : ""}${p.dryRun ? " (dry run)" : ""}, targets ${p.targets.join(", ")}`,
            ),
            el("p", {}, `steps: ${p.steps.join(" → ")}`),
            table(
              ["gate", "passed", "why"],
              p.gates.map((g) => [g.gate, g.passed ? "yes" : "no", g.message]),
            ),
          )
        : el("p", {}, "no plan seen"),
    ),
  );
  const r = d.lastRefusal;
  parts.push(
    section(
      "Last refusal",
      r
        ? el(
            "div",
            { class: "refusal" },
            el(
              "p",
              {},
              `${r.requestId}: ${r.reason}: ${r.message}${r.retryAfterMs !== null ? ` (retry after ${fmtMs(r.retryAfterMs)})` : ""}`,
            ),
            table(
              ["gate", "reason", "why"],
              r.gates.map((g) => [g.gate, g.reason ?? "", g.message]),
            ),
          )
        : el("p", {}, "no refusal seen"),
    ),
  );
  if (image.ok) {
    const i = image.body;
    parts.push(
      section(
        "Last saved image",
        el(
          "p",
          {},
          `revision ${i.revision ?? "?"} saved ${i.savedAt ?? "?"}${i.verified ? ", the last known good one" : ", not verified"}`,
        ),
        el(
          "ul",
          { class: "decoders", "aria-label": "HDM decoders" },
          ...i.decoders.map((x) =>
            el("li", {}, `decoder${x.index}: ${x.committed ? "committed" : "not committed"}`),
          ),
        ),
        el("pre", { class: "image" }, i.text),
      ),
    );
  } else {
    parts.push(section("Last saved image", el("p", {}, image.message)));
  }
  $("panel-body").replaceChildren(...parts);
}

async function getJson(url) {
  const res = await fetch(url);
  const body = await res.json().catch(() => ({}));
  return { ok: res.ok, status: res.status, body, message: `${body.error ?? res.statusText}` };
}

async function openPanel(host, bdf) {
  panelOf = { host, bdf };
  const panel = $("panel");
  panel.hidden = false;
  $("panel-h").textContent = `Device ${host} ${bdf}`;
  const base = `/api/devices/${encodeURIComponent(host)}/${encodeURIComponent(bdf)}`;
  const [d, image] = await Promise.all([getJson(base), getJson(`${base}/image`)]);
  if (!panelOf || panelOf.host !== host || panelOf.bdf !== bdf) return;
  if (!d.ok) {
    $("panel-body").replaceChildren(el("p", {}, d.message));
    return;
  }
  renderPanel(d.body, image);
}

function refreshPanelSoon() {
  clearTimeout(panelTimer);
  panelTimer = setTimeout(() => panelOf && openPanel(panelOf.host, panelOf.bdf), 300);
}

// ------------------------------------------------------------------------------------------------------

$("grid").addEventListener("click", (ev) => {
  const b = ev.target.closest("button.cell");
  if (b) openPanel(b.dataset.host, b.dataset.bdf);
});
$("panel-close").addEventListener("click", () => {
  panelOf = null;
  $("panel").hidden = true;
});
$("filters").addEventListener("submit", (ev) => {
  ev.preventDefault();
  followEvents(filtersQuery());
});
followFleet();
followEvents("");
