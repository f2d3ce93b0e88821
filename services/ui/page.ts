// The page as the server first renders it: the grid of hosts and devices, the counters (with a small inline
// SVG bar chart), the event list and its filters, an empty device panel. app.js takes over from there (server-
// sent events, the panel). Every string that came from the bus goes through esc(): device-supplied text is
// hostile. No inline script or style (the Content-Security-Policy forbids both): classes only.
import type { BusState } from "./bus.ts";
import type { Cell, Counters, FleetView, UiEvent } from "./fleet.ts";

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
  "`": "&#96;",
};

/** Text made safe for HTML content and (quoted) attribute values. */
export function esc(v: unknown): string {
  return String(v ?? "").replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
}

export const OUTCOME_ORDER = ["verified", "refused", "failed", "quarantined", "planned"] as const;

export function cellHtml(c: Cell): string {
  return (
    `<button type="button" class="cell ${esc(c.cls)}" data-host="${esc(c.host)}" data-bdf="${esc(c.bdf)}" ` +
    `aria-label="${esc(c.label)}" title="${esc(c.why || c.text)}">` +
    `<span class="bdf">${esc(c.bdf)}</span><span class="st">${esc(c.text)}</span>` +
    `<span class="why">${esc(c.why)}</span></button>`
  );
}

function gridHtml(cells: Cell[]): string {
  if (cells.length === 0) return `<p class="empty">no devices known yet</p>`;
  const hosts = [...new Set(cells.map((c) => c.host))];
  return hosts
    .map(
      (h) =>
        `<div class="host" data-host="${esc(h)}"><h3>${esc(h)}</h3><div class="cells">` +
        cells
          .filter((c) => c.host === h)
          .map(cellHtml)
          .join("") +
        `</div></div>`,
    )
    .join("");
}

function fmtMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Bar chart of resets per outcome: one rect each, widths relative to the largest count. */
function outcomeChart(c: Counters): string {
  const max = Math.max(1, ...OUTCOME_ORDER.map((k) => c.outcomes[k] ?? 0));
  const rows = OUTCOME_ORDER.map((k, i) => {
    const n = c.outcomes[k] ?? 0;
    const w = Math.round((n / max) * 200);
    return (
      `<text x="0" y="${i * 22 + 15}">${esc(k)}</text>` +
      `<rect class="bar ${esc(k)}" data-outcome="${esc(k)}" x="90" y="${i * 22 + 3}" width="${w}" height="16"></rect>` +
      `<text class="n" data-outcome="${esc(k)}" x="${96 + w}" y="${i * 22 + 15}">${n}</text>`
    );
  }).join("");
  return `<svg id="outcome-chart" role="img" aria-label="resets per outcome" viewBox="0 0 340 ${OUTCOME_ORDER.length * 22}" width="340" height="${OUTCOME_ORDER.length * 22}">${rows}</svg>`;
}

export function countersHtml(c: Counters): string {
  const outcomes = OUTCOME_ORDER.map(
    (k) => `<tr><th scope="row">${esc(k)}</th><td data-outcome="${esc(k)}">${c.outcomes[k] ?? 0}</td></tr>`,
  ).join("");
  const methods = Object.entries(c.mttrMs);
  const mttr =
    methods.length === 0
      ? `<tr><td colspan="3">no reset ended yet</td></tr>`
      : methods
          .map(
            ([m, v]) =>
              `<tr><th scope="row">${esc(m)}</th><td>${esc(fmtMs(v.meanMs))}</td><td>${v.resets}</td></tr>`,
          )
          .join("");
  const b = c.breaker;
  return (
    `<div class="counter-block"><h3>Resets per outcome</h3>${outcomeChart(c)}` +
    // The chart's numbers as a table for screen readers (the chart shows them already).
    `<p class="since">since ${esc(c.since)}</p>` +
    `<table id="outcomes" class="sr-only"><caption>resets per outcome</caption><tbody>${outcomes}</tbody></table></div>` +
    `<div class="counter-block"><h3>MTTR per method</h3><table id="mttr"><thead><tr><th scope="col">method</th>` +
    `<th scope="col">mean</th><th scope="col">resets</th></tr></thead><tbody>${mttr}</tbody></table></div>` +
    `<div class="counter-block"><h3>Breaker</h3><p id="breaker" class="breaker ${esc(b.status)}">` +
    `${esc(b.status)}${b.reason ? `: ${esc(b.reason)}` : ""}${b.from ? ` <small>(from ${esc(b.from)})</small>` : ""}</p></div>`
  );
}

export function eventRowHtml(e: UiEvent): string {
  return (
    `<tr class="${esc(e.source)}"><td>${esc(e.time)}</td><td>${esc(e.host)}</td><td>${esc(e.device)}</td>` +
    `<td>${esc(e.source)}</td><td>${esc(e.kind)}</td><td>${esc(e.summary)}${e.mismatch ? ` <strong class="mismatch">[envelope disagrees: ${esc(e.mismatch)}]</strong>` : ""}</td></tr>`
  );
}

export function busText(s: BusState): string {
  return s.message;
}

export function renderPage(
  view: FleetView,
  events: UiEvent[],
  bus: BusState,
  kinds: readonly string[],
): string {
  const busClass = bus.connected && bus.coordinator ? "up" : "down";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cxlrc fleet</title>
<link rel="stylesheet" href="/assets/app.css">
<script type="module" src="/assets/app.js"></script>
</head>
<body>
<header>
<h1>cxlrc fleet</h1>
<p id="bus" role="status" aria-live="polite" class="bus ${busClass}">${esc(busText(bus))}</p>
<p id="coordinator">coordinator <span id="coordinator-id">${esc(view.coordinator ?? "-")}</span></p>
</header>
<main>
<div class="left">
<section id="fleet" aria-labelledby="grid-h">
<h2 id="grid-h">Devices</h2>
<p class="legend"><span class="cell ready">ready</span> <span class="cell resetting">resetting</span> <span class="cell refused">refused</span> <span class="cell failed">failed</span> <span class="cell quarantined">quarantined</span></p>
<div id="grid">${gridHtml(view.devices)}</div>
</section>
<section id="counters" aria-labelledby="counters-h">
<h2 id="counters-h">Counters</h2>
<div id="counters-body">${countersHtml(view.counters)}</div>
</section>
<section id="events-section" aria-labelledby="events-h">
<h2 id="events-h">Events</h2>
<form id="filters" novalidate>
<label for="f-host">Filter host</label> <input id="f-host" name="host" autocomplete="off">
<label for="f-bdf">Filter device</label> <input id="f-bdf" name="bdf" placeholder="0000:01:00.0" autocomplete="off">
<label for="f-kind">Filter kind</label> <input id="f-kind" name="kind" list="kinds" autocomplete="off">
<datalist id="kinds">${kinds.map((k) => `<option value="${esc(k)}"></option>`).join("")}</datalist>
<label for="f-since">Replay since</label> <input id="f-since" name="since" placeholder="30m, 1h or an ISO time" autocomplete="off">
<button type="submit">Apply filters</button>
</form>
<p id="filter-error" role="alert"></p>
<p id="events-note" aria-live="polite">recent events, then live</p>
<table id="events">
<thead><tr><th scope="col">time</th><th scope="col">host</th><th scope="col">device</th><th scope="col">publisher</th><th scope="col">kind</th><th scope="col">what</th></tr></thead>
<tbody>${events.slice(-100).reverse().map(eventRowHtml).join("")}</tbody>
</table>
</section>
</div>
<section id="panel" aria-labelledby="panel-h" hidden>
<h2 id="panel-h">Device</h2>
<button type="button" id="panel-close" aria-label="close the device panel">close</button>
<div id="panel-body"></div>
</section>
</main>
</body>
</html>
`;
}
