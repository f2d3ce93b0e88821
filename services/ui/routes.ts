// The page's HTTP surface, GET only:
//   /                              the page (server-rendered grid, counters, events)
//   /assets/app.js, /assets/app.css
//   /api/fleet                     the fleet model and the bus state (JSON)
//   /api/stream                    server-sent events: bus state and the whole fleet first, then changes
//   /api/events?host&bdf&kind&since  server-sent events: the events that pass the filters (replayed from
//                                  `since` through the client's watch, else the recent ones), then live
//   /api/devices/HOST/BDF          a device's history, last plan and refusal (404 when unknown)
//   /api/devices/HOST/BDF/image    its last saved image, decoded as `cxlrc image show` prints it
// Bad input is a 400 naming the field, an unknown path 404, another method 405; what needs the bus answers
// 503 while it is away. Every answer carries the security headers; no answer carries a credential or a URL.
import type { IncomingMessage, ServerResponse } from "node:http";
import { feedEvent } from "../../client/feed-event.ts";
import { ClientError } from "../../client/index.ts";
import { bdfToken, HOST_RE } from "../../shared/bus/subjects.ts";
import { ImageSchema } from "../../shared/image/schema.ts";
import type { Logger } from "../../shared/log.ts";
import { colours } from "../cli/format/colour.ts";
import { formatImage } from "../cli/format/image.ts";
import type { Asset } from "./assets.ts";
import type { BusLink } from "./bus.ts";
import type { UiConfig } from "./config.ts";
import { FilterError, KNOWN_KINDS, matches, parseFilters } from "./filters.ts";
import { type Fleet, uiEventOf } from "./fleet.ts";
import { renderPage } from "./page.ts";
import { openStream, type SseHub } from "./sse.ts";

export interface UiContext {
  config: UiConfig;
  fleet: Fleet;
  /** Fleet changes and bus state (the page's /api/stream). */
  fleetHub: SseHub;
  /** Listed events (the unfiltered-by-time /api/events streams). */
  eventHub: SseHub;
  link: BusLink;
  assets: Map<string, Asset>;
  log: Logger;
  /** The port actually bound (for the Host header check). */
  port(): number;
  /** Replays from a time running now. */
  replays: { active: number };
}

/** Sent with every answer: scripts and styles only from this server, no sniffing, no framing, no referrer. */
export const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy":
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Cross-Origin-Resource-Policy": "same-origin",
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Cache-Control": "no-store",
    "Content-Length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/**
 * Bound to a loopback address, the page answers only requests addressed to it by that name: a web page the SRE
 * visits cannot rebind its own name to 127.0.0.1 and read the fleet (DNS rebinding).
 */
function hostAllowed(ctx: UiContext, req: IncomingMessage): boolean {
  if (!LOOPBACK.has(ctx.config.listen.host)) return true;
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(req.headers.host ?? "");
  if (!m) return false;
  return LOOPBACK.has(m[1]!.toLowerCase()) && (m[2] === undefined || Number(m[2]) === ctx.port());
}

function segments(pathname: string): string[] {
  try {
    return pathname
      .split("/")
      .filter((s) => s.length > 0)
      .map(decodeURIComponent);
  } catch {
    throw new HttpError(400, "the path is not valid percent-encoding", { field: "path" });
  }
}

function checkDevice(host: string, bdf: string): void {
  if (!HOST_RE.test(host)) {
    throw new HttpError(
      400,
      `bad host ${JSON.stringify(host.slice(0, 80))}: 1-64 letters, digits, '-' or '_'`,
      {
        field: "host",
      },
    );
  }
  try {
    bdfToken(bdf);
  } catch {
    throw new HttpError(
      400,
      `bad bdf ${JSON.stringify(bdf.slice(0, 80))}: a PCI address such as 0000:01:00.0`,
      {
        field: "bdf",
      },
    );
  }
}

function needBus(ctx: UiContext) {
  const s = ctx.link.state();
  const client = ctx.link.client();
  if (!s.connected || !s.coordinator || !client) throw new HttpError(503, s.message, { bus: s });
  return client;
}

export function createHandler(ctx: UiContext) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    route(ctx, req, res).catch((e: unknown) => {
      if (e instanceof HttpError) {
        if (!res.headersSent) sendJson(res, e.status, { error: e.message, status: e.status, ...e.extra });
        else res.end();
        return;
      }
      ctx.log.error({ err: String(e), path: req.url }, "request failed");
      if (!res.headersSent)
        sendJson(res, 500, { error: "internal error (see the server's log)", status: 500 });
      else res.end();
    });
  };
}

async function route(ctx: UiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!hostAllowed(ctx, req)) throw new HttpError(421, "this page answers to 127.0.0.1 or localhost only");
  if (req.method !== "GET") {
    res.setHeader("Allow", "GET");
    throw new HttpError(405, `method ${String(req.method).slice(0, 16)} not allowed: GET only`);
  }
  const url = new URL(req.url ?? "/", "http://ui.invalid");
  const parts = segments(url.pathname);
  const path = `/${parts.join("/")}`;
  if (path !== "/api/events" && [...url.searchParams.keys()].length > 0 && path.startsWith("/api/devices")) {
    throw new HttpError(400, "this endpoint takes no query", { field: [...url.searchParams.keys()][0] });
  }

  const asset = ctx.assets.get(path);
  if (asset) {
    res.writeHead(200, {
      "Content-Type": asset.type,
      "Content-Length": asset.body.length,
      "Cache-Control": "no-cache",
    });
    res.end(asset.body);
    return;
  }
  if (path === "/") {
    const html = renderPage(ctx.fleet.view(), ctx.fleet.recent(), ctx.link.state(), KNOWN_KINDS);
    res.writeHead(200, {
      "Content-Type": "text/html; charset=utf-8",
      "Cache-Control": "no-store",
      "Content-Length": Buffer.byteLength(html),
    });
    res.end(html);
    return;
  }
  if (path === "/api/fleet") return sendJson(res, 200, { bus: ctx.link.state(), ...ctx.fleet.view() });
  if (path === "/api/stream") return fleetStream(ctx, req, res);
  if (path === "/api/events") return eventStream(ctx, req, res, url.searchParams);
  if (parts[0] === "api" && parts[1] === "devices" && (parts.length === 4 || parts.length === 5)) {
    const host = parts[2]!;
    const bdf = parts[3]!;
    checkDevice(host, bdf);
    const detail = ctx.fleet.device(host, bdf);
    if (!detail) {
      throw new HttpError(404, `no device ${host} ${bdf} in the fleet`, { host, bdf });
    }
    if (parts.length === 4) return sendJson(res, 200, detail);
    if (parts[4] === "image") return sendJson(res, 200, await imageOf(ctx, host, bdf));
  }
  throw new HttpError(404, `no such page: ${path.slice(0, 120)}`);
}

function fleetStream(ctx: UiContext, req: IncomingMessage, res: ServerResponse): void {
  let remove = () => {};
  const stream = openStream(res, () => remove());
  // The current model first, then the changes: a browser that reconnects catches up in one message.
  stream.send({ event: "bus", data: ctx.link.state() });
  stream.send({ event: "fleet", data: ctx.fleet.view() });
  remove = ctx.fleetHub.add(stream);
  req.on("close", () => stream.close());
}

function eventStream(ctx: UiContext, req: IncomingMessage, res: ServerResponse, q: URLSearchParams): void {
  let f: ReturnType<typeof parseFilters>;
  try {
    f = parseFilters(q);
  } catch (e) {
    if (e instanceof FilterError) throw new HttpError(400, e.message, { field: e.field });
    throw e;
  }
  if (f.since === undefined) {
    let remove = () => {};
    const stream = openStream(res, () => remove());
    for (const e of ctx.fleet.recent()) if (matches(f, e)) stream.send({ event: "evt", data: e });
    remove = ctx.eventHub.add(stream, (m) => m.event !== "evt" || matches(f, m.data as never));
    req.on("close", () => stream.close());
    return;
  }
  // From a time: the client's watch replays the stored events, then goes on live (one subscription each).
  const client = needBus(ctx);
  if (ctx.replays.active >= ctx.config.maxReplayStreams) {
    throw new HttpError(503, `too many replays at once (${ctx.config.maxReplayStreams}): try again shortly`);
  }
  ctx.replays.active++;
  const ac = new AbortController();
  const stream = openStream(res, () => ac.abort());
  req.on("close", () => stream.close());
  stream.send({ event: "replay", data: { since: f.since.toISOString() } });
  void (async () => {
    try {
      for await (const e of client.watch({
        ...(f.host !== undefined ? { host: f.host } : {}),
        ...(f.bdf !== undefined ? { bdf: f.bdf } : {}),
        ...(f.kinds !== undefined ? { kinds: f.kinds } : {}),
        since: f.since!,
        signal: ac.signal,
      })) {
        const item = feedEvent(e.subject, e.envelope);
        if (!item) continue;
        const ev = uiEventOf(item);
        if (matches(f, ev)) stream.send({ event: "evt", data: ev });
      }
    } catch (e) {
      if (!ac.signal.aborted) stream.send({ event: "failed", data: { error: (e as Error).message } });
    } finally {
      ctx.replays.active--;
      stream.close();
    }
  })();
}

async function imageOf(ctx: UiContext, host: string, bdf: string): Promise<Record<string, unknown>> {
  const client = needBus(ctx);
  let reply: Record<string, unknown> | null;
  try {
    reply = await client.image(host, bdf);
  } catch (e) {
    if (e instanceof ClientError && (e.kind === "unreachable" || e.kind === "timeout")) {
      throw new HttpError(503, `the coordinator did not answer: ${e.message}`);
    }
    throw new HttpError(502, `the coordinator refused: ${(e as Error).message}`);
  }
  if (!reply)
    throw new HttpError(404, `no image saved for ${host} ${bdf} (never reset by cxlrc)`, { host, bdf });
  const parsed = ImageSchema.safeParse(reply.image);
  if (!parsed.success) {
    throw new HttpError(502, `the stored image of ${host} ${bdf} does not match this version's schema`);
  }
  const img = parsed.data;
  const meta = {
    ...(typeof reply.savedAt === "string" ? { savedAt: reply.savedAt } : {}),
    ...(typeof reply.requestId === "string" ? { requestId: reply.requestId } : {}),
    ...(typeof reply.revision === "number" ? { revision: reply.revision } : {}),
  };
  return {
    host,
    bdf,
    revision: reply.revision ?? null,
    savedAt: reply.savedAt ?? null,
    requestId: reply.requestId ?? null,
    verified: reply.verified === true,
    text: formatImage(img, colours(false), meta),
    decoders: (img.cxl?.hdm?.decoders ?? []).map((d) => ({
      index: d.index,
      committed: d.registers.control?.committed === true,
    })),
  };
}
