// The CLI's side of the bus: which server and which credentials (flags, then the environment, then a NATS CLI
// context), a connection that fails fast with one line naming the URL (exit 3), and control requests to the
// coordinator.
import type { NatsConnection } from "@nats-io/transport-node";
import { ClientError, type ClientErrorKind } from "../../client/errors.ts";
import { type ConnectBusOptions, connectBus, requestJson } from "../../shared/bus/client.ts";
import { type BusCredentials, credentialsFromEnv, type TlsFiles } from "../../shared/bus/credentials.ts";
import { describeError, isCxlrcError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { EXIT, UsageError } from "./exit.ts";
import { checkReadable } from "./files.ts";
import { formatMs } from "./format/duration.ts";
import { loadNatsContext, type NatsContext } from "./nats-context.ts";

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

/** The bus flags of a command (BUS_OPTIONS). */
export interface BusFlags {
  server?: string | undefined;
  creds?: string | undefined;
  context?: string | undefined;
}

/** Where to connect and as whom. */
export interface BusTarget {
  /** The server URL(s) as given (comma-separated for several). */
  url: string;
  auth: Pick<ConnectBusOptions, "credentials" | "credsFile" | "user" | "pass" | "token">;
}

/** A server URL list ("nats://a:4222,b:4222"), each checked; the text as given. */
function checkServers(url: string): string {
  for (const one of url.split(",").map((s) => s.trim())) {
    const withScheme = /^[a-z]+:\/\//.test(one) ? one : `nats://${one}`;
    let parsed: URL | null = null;
    try {
      parsed = new URL(withScheme);
    } catch {
      parsed = null;
    }
    if (!parsed || !["nats:", "tls:", "ws:", "wss:"].includes(parsed.protocol) || !parsed.hostname) {
      throw new UsageError(`bad server URL ${JSON.stringify(url)}: expected nats://HOST:PORT`);
    }
  }
  return url;
}

/** --server, then $CXLRC_NATS_URL, then $NATS_URL, then the context's url, then the default. */
export function resolveServer(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  context: NatsContext | null = null,
): string {
  return checkServers(flag ?? (env.CXLRC_NATS_URL || env.NATS_URL || context?.url || DEFAULT_SERVER));
}

/** CXLRC_NATS_* variables that name a file: checked up front, so a missing one reads like any other. */
const ENV_FILES = [
  "CXLRC_NATS_CREDENTIALS_FILE",
  "CXLRC_NATS_CREDS_FILE",
  "CXLRC_NATS_NKEY_SEED_FILE",
  "CXLRC_NATS_PASSWORD_FILE",
  "CXLRC_NATS_TLS_CA_FILE",
  "CXLRC_NATS_TLS_CERT_FILE",
  "CXLRC_NATS_TLS_KEY_FILE",
];

/**
 * The server and credentials of a bus command. Flags beat the environment, which beats the context:
 * authentication from --creds, else the CXLRC_NATS_* variables, else $NATS_CREDS, else the context's creds,
 * user and password, or token; TLS files and the inbox prefix from CXLRC_NATS_*, else the context. Every file
 * named is checked here: a missing one is bad input (exit 2), not a connection failure.
 */
export function busTarget(flags: BusFlags, env: NodeJS.ProcessEnv = process.env): BusTarget {
  const ctx = loadNatsContext(flags.context, env);
  const url = resolveServer(flags.server, env, ctx);
  for (const v of ENV_FILES) if (env[v]) checkReadable(env[v]!);
  const fromEnv = credentialsFromEnv(env);
  const auth: BusTarget["auth"] = {};
  const creds = (file: string) => {
    checkReadable(file);
    auth.credsFile = file;
  };
  if (flags.creds !== undefined) creds(flags.creds);
  else if (fromEnv?.auth) {
    // carried by `credentials` below
  } else if (env.NATS_CREDS) creds(env.NATS_CREDS);
  else if (ctx?.creds) creds(ctx.creds);
  else if (ctx?.user) {
    auth.user = ctx.user;
    auth.pass = ctx.password ?? "";
  } else if (ctx?.token) auth.token = ctx.token;

  const tls: TlsFiles = {};
  const caFile = fromEnv?.tls?.caFile ?? ctx?.ca;
  if (caFile) tls.caFile = caFile;
  const pair = fromEnv?.tls?.certFile
    ? { certFile: fromEnv.tls.certFile, keyFile: fromEnv.tls.keyFile }
    : { certFile: ctx?.cert, keyFile: ctx?.key };
  if ((pair.certFile === undefined) !== (pair.keyFile === undefined)) {
    throw new UsageError(`${ctx?.file ?? "context"}: a TLS client certificate needs both "cert" and "key"`);
  }
  if (pair.certFile && pair.keyFile) Object.assign(tls, pair);
  for (const f of Object.values(tls)) checkReadable(f as string);
  const inboxPrefix = fromEnv?.inboxPrefix ?? ctx?.inboxPrefix;
  const credentials: BusCredentials = {
    ...(fromEnv?.auth ? { auth: fromEnv.auth } : {}),
    ...(Object.keys(tls).length > 0 ? { tls } : {}),
    ...(inboxPrefix ? { inboxPrefix } : {}),
    source: fromEnv?.source ?? (ctx ? `context ${ctx.name}` : "flags"),
  };
  auth.credentials = credentials.auth || credentials.tls || credentials.inboxPrefix ? credentials : null;
  return { url, auth };
}

/** Connect once; a refused, unresolvable or silent server is Unavailable naming the URL. */
export async function connectCli(
  target: BusTarget | string,
  name: string,
  timeoutMs = 5000,
): Promise<NatsConnection> {
  const t: BusTarget = typeof target === "string" ? { url: target, auth: { credentials: null } } : target;
  const servers = t.url.split(",").map((s) => s.trim());
  try {
    return await connectBus({ servers, name, log: silentLogger, waitForServer: false, timeoutMs, ...t.auth });
  } catch (e) {
    const why = (e as Error)?.message ?? String(e);
    throw new Unavailable(`cannot reach the NATS server at ${t.url}: ${why}`);
  }
}

/**
 * Run `fn` with a connection to the bus and close it afterwards. Unavailable (no server, nobody answers a
 * control request) prints one line and returns exit 3; everything else propagates to main.
 */
export async function withBus(
  command: string,
  target: BusTarget | string,
  fn: (nc: NatsConnection) => Promise<number>,
): Promise<number> {
  let nc: NatsConnection | undefined;
  try {
    nc = await connectCli(target, `cxlrc ${command}`);
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
      throw new Unavailable(`the coordinator did not answer on ${subject} within ${formatMs(timeoutMs)}`);
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
