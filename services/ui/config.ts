// The fleet page's configuration: where it listens (127.0.0.1 by default: the page is for the SRE at this
// machine, not the network), how it reaches the bus (the client's connection options; credentials default to
// the CXLRC_NATS_* environment, as the client's connect() does), and how much history it keeps. Strict: a
// misspelt key is an error that names it.
import { z } from "zod";
import { formatZodIssues } from "../../shared/bus/codec.ts";
import { CxlrcError } from "../../shared/errors.ts";

export const DEFAULT_UI_HOST = "127.0.0.1";
export const DEFAULT_UI_PORT = 9480;

export const UiListen = z.strictObject({
  host: z.string().min(1).default(DEFAULT_UI_HOST),
  /** 0 = any free port (tests). */
  port: z.number().int().min(0).max(65535).default(DEFAULT_UI_PORT),
});

export const UiConfig = z.strictObject({
  listen: UiListen.default({ host: DEFAULT_UI_HOST, port: DEFAULT_UI_PORT }),
  /** NATS server(s). Default $CXLRC_NATS_URL, else nats://127.0.0.1:4222 (the client's default). */
  servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  /** Connection name the server shows. */
  name: z.string().min(1).max(128).default("cxlrc ui"),
  /** Explicit credentials (else the CXLRC_NATS_* environment): never shown on the page. */
  user: z.string().optional(),
  pass: z.string().optional(),
  token: z.string().optional(),
  credsFile: z.string().min(1).optional(),
  /** A control request's answer time (status, image, replay). */
  timeoutMs: z.number().int().positive().max(120_000).default(10_000),
  /** At start and after an outage, events are replayed from this far back (history, counters). */
  historyWindowMs: z
    .number()
    .int()
    .min(0)
    .max(30 * 24 * 3600_000)
    .default(24 * 3600_000),
  /** Events kept for a browser that (re)connects. */
  recentEventsMax: z.number().int().min(1).max(100_000).default(500),
  /** Resets kept per device (its panel's history). */
  historyPerDeviceMax: z.number().int().min(1).max(1000).default(20),
  /** Wait between attempts to reach the bus or the coordinator while they are away. */
  busRetryMs: z.number().int().min(10).max(60_000).default(1000),
  /** The coordinator's status is read again this often (breaker, quarantine reasons, a coordinator gone). */
  statusRefreshMs: z.number().int().min(100).max(600_000).default(10_000),
  /** Event lists replayed from a time at once (each holds its own subscriptions on the bus). */
  maxReplayStreams: z.number().int().min(1).max(1000).default(16),
  /** A comment line on every event stream this often, so that proxies keep idle streams open. */
  keepAliveMs: z.number().int().min(100).max(600_000).default(15_000),
});
export type UiConfig = z.output<typeof UiConfig>;
export type UiConfigInput = z.input<typeof UiConfig>;

/** A config object as the page reads it; CxlrcError "bad-input" naming every bad or unknown key. */
export function parseUiConfig(raw: unknown, where = "ui config"): UiConfig {
  const r = UiConfig.safeParse(raw);
  if (!r.success) {
    const fields = r.error.issues.map((i) => i.path.map(String).join(".")).filter((p) => p.length > 0);
    throw new CxlrcError("bad-input", `${where}: ${formatZodIssues(r.error)}`, { fields });
  }
  return r.data;
}

/** `--listen HOST:PORT` (or `:PORT`, or `PORT`: host 127.0.0.1); an IPv6 host in brackets ("[::1]:9480"). */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):)?(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new CxlrcError(
      "bad-input",
      `bad --listen ${JSON.stringify(text)}: HOST:PORT, such as 127.0.0.1:${DEFAULT_UI_PORT}`,
      { field: "listen" },
    );
  }
  const host = (m[1] ?? "").replace(/^\[|\]$/g, "") || DEFAULT_UI_HOST;
  return { host, port };
}
