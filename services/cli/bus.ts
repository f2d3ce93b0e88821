// The CLI's side of the bus: which server (--server, $CXLRC_NATS_URL, default), a connection that fails fast
// with one line naming the URL (exit 3), and control requests to the coordinator.
import type { NatsConnection } from "@nats-io/transport-node";
import { ClientError, type ClientErrorKind } from "../../client/errors.ts";
import { connectBus, requestJson } from "../../shared/bus/client.ts";
import { describeError, isCxlrcError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { EXIT, UsageError } from "./exit.ts";

/** Client failures that mean the bus or the coordinator is out of reach for this principal: exit 3. */
const UNAVAILABLE_KINDS: ReadonlySet<ClientErrorKind> = new Set([
  "unreachable",
  "timeout",
  "permission-denied",
]);

export const DEFAULT_SERVER = "nats://127.0.0.1:4222";

/** The bus or the coordinator cannot be reached: one line, exit 3. */
export class Unavailable extends Error {
  override name = "Unavailable";
}

/** --server wins over $CXLRC_NATS_URL, which wins over the default. */
export function resolveServer(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const url = flag ?? (env.CXLRC_NATS_URL || DEFAULT_SERVER);
  const withScheme = /^[a-z]+:\/\//.test(url) ? url : `nats://${url}`;
  let parsed: URL;
  try {
    parsed = new URL(withScheme);
  } catch {
    throw new UsageError(`bad server URL ${JSON.stringify(url)}: expected nats://HOST:PORT`);
  }
  if (!["nats:", "tls:", "ws:", "wss:"].includes(parsed.protocol) || !parsed.hostname) {
    throw new UsageError(`bad server URL ${JSON.stringify(url)}: expected nats://HOST:PORT`);
  }
  return url;
}

/** Connect once; a refused, unresolvable or silent server is Unavailable naming the URL. */
export async function connectCli(url: string, name: string, timeoutMs = 5000): Promise<NatsConnection> {
  try {
    return await connectBus({ servers: url, name, log: silentLogger, waitForServer: false, timeoutMs });
  } catch (e) {
    const why = (e as Error)?.message ?? String(e);
    throw new Unavailable(`cannot reach the NATS server at ${url}: ${why}`);
  }
}

/**
 * Run `fn` with a connection to the bus and close it afterwards. Unavailable (no server, nobody answers a
 * control request) prints one line and returns exit 3; everything else propagates to main.
 */
export async function withBus(
  command: string,
  url: string,
  fn: (nc: NatsConnection) => Promise<number>,
): Promise<number> {
  let nc: NatsConnection | undefined;
  try {
    nc = await connectCli(url, `cxlrc ${command}`);
    return await fn(nc);
  } catch (e) {
    if (e instanceof Unavailable || (e instanceof ClientError && UNAVAILABLE_KINDS.has(e.kind))) {
      process.stderr.write(`cxlrc ${command}: ${e.message}\n`);
      return EXIT.unavailable;
    }
    if (e instanceof ClientError && e.kind === "bad-request") throw new UsageError(e.message);
    throw e;
  } finally {
    await nc?.close().catch(() => undefined);
  }
}

/**
 * A control request to the coordinator (cxlrc.ctl.*): the `result` of an ok reply. No coordinator listening,
 * or none answering in time, is Unavailable; an error reply throws the coordinator's CxlrcError.
 */
export async function control(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  timeoutMs = 10_000,
): Promise<unknown> {
  let reply: unknown;
  try {
    reply = await requestJson(nc, subject, body, { timeoutMs });
  } catch (e) {
    if (isCxlrcError(e) && e.details.reason === "no-responders") {
      throw new Unavailable(`no coordinator answers on ${subject} (is \`cxlrc serve coordinator\` running?)`);
    }
    if (isCxlrcError(e) && e.kind === "timeout" && e.details.remote !== true) {
      throw new Unavailable(`the coordinator did not answer on ${subject} within ${timeoutMs} ms`);
    }
    throw e;
  }
  if (reply && typeof reply === "object" && (reply as { ok?: unknown }).ok === true && "result" in reply) {
    return (reply as { result: unknown }).result;
  }
  return reply;
}

/** A remote error as one line (its kind when the message does not already say it). */
export function remoteErrorLine(e: unknown): string {
  if (isCxlrcError(e) && !e.message.includes(e.kind)) return `${e.kind}: ${describeError(e)}`;
  return describeError(e);
}
