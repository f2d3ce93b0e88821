// Typed helpers every cxlrc service uses on NATS: connect (reconnect forever, logged), JSON
// request/publish, agent calls, and the JetStream streams of shared/bus/subjects.ts.

import { readFileSync } from "node:fs";
import { type JetStreamManager, jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import {
  connect,
  credsAuthenticator,
  type MsgHdrs,
  type NatsConnection,
  nanos,
  errors as natsErrors,
} from "@nats-io/transport-node";
import { CxlrcError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { retry } from "../retry.ts";
import { type AgentResult, parseAgentResult } from "./agent-contract.ts";
import { type AGENT_PARAMS, AgentReply, ErrorBody } from "./agent-messages.ts";
import { coalesceWrites } from "./coalesce.ts";
import { decodeJson, encodeJson, errorFromBody } from "./codec.ts";
import {
  type BusCredentials,
  connectionOptions,
  credentialsFromEnv,
  describeCredentials,
} from "./credentials.ts";
import type { ReplyMux } from "./reply-mux.ts";
import { type AgentOp, STREAMS, subjects } from "./subjects.ts";

export interface ConnectBusOptions {
  servers: string | string[];
  /** Connection name shown by the server (e.g. "cxlrc-agent host-a"). */
  name: string;
  /** NATS .creds file (JWT + nkey seed). */
  credsFile?: string;
  user?: string;
  pass?: string;
  token?: string;
  /**
   * nkey seed / creds / user, TLS CA + client certificate, and the principal's inbox prefix
   * (shared/bus/credentials.ts). Default: the CXLRC_NATS_* environment variables, if any; null: none.
   * An explicit credsFile/user/token above replaces only the authentication part.
   */
  credentials?: BusCredentials | null;
  log: Logger;
  /** Shortest reconnect delay; it grows to about half the outage so far, up to reconnectMaxWaitMs. Default 250 ms. */
  reconnectWaitMs?: number;
  /** Default 5000 ms. */
  reconnectMaxWaitMs?: number;
  /** Handshake / default request timeout. Default 5000 ms. */
  timeoutMs?: number;
  /** Client ping interval (stale-connection detection). Default 10 s. */
  pingIntervalMs?: number;
  /**
   * Keep trying when no server answers at start (default true): connectBus resolves on the first
   * successful connect. false: throw at once.
   */
  waitForServer?: boolean;
  /**
   * Socket writes of one event-loop turn go out together (shared/bus/coalesce.ts): for a process that publishes
   * from many continuations at once, a coordinator. Default false (a reply waits for nothing).
   */
  coalesceWrites?: boolean;
  /**
   * Dial only `servers`, never the addresses the cluster announces (a connection through relays or a NAT whose
   * announced addresses are not reachable, or must not be used: chaos's freezable agents). Default false.
   */
  ignoreClusterUpdates?: boolean;
}

/**
 * Connect and stay connected: unlimited reconnects with exponential backoff (plus jitter), no async
 * traces (faster request/reply), every status change logged.
 *
 * Caution (nats.js 3.4): the client does NOT keep what is published while it is disconnected; each dial
 * attempt resets its outbound buffer. Core publishes, replies and requests made during an outage are lost
 * (requests time out). Anything that must arrive needs a retry: JetStream publish with a msgID (the agent's
 * event outbox does that), or a request retried with the same opId.
 */
export async function connectBus(opts: ConnectBusOptions): Promise<NatsConnection> {
  const base = opts.reconnectWaitMs ?? 250;
  const cap = opts.reconnectMaxWaitMs ?? 5000;
  // The client asks for the delay on every pass of its dial loop, so the backoff is derived from how long
  // the connection has been down (about half of it, between base and cap), not from a call counter.
  let downSince = Date.now();
  const nextDelay = () => {
    const down = Date.now() - downSince;
    const d = Math.max(base, Math.min(cap, down / 2));
    return Math.round(d + Math.random() * Math.min(100, d / 4));
  };
  const log = opts.log;
  const servers = Array.isArray(opts.servers) ? opts.servers : [opts.servers];
  const auth = opts.credsFile
    ? { authenticator: credsAuthenticator(new Uint8Array(readFileSync(opts.credsFile))) }
    : {};
  const creds = opts.credentials === undefined ? credentialsFromEnv() : (opts.credentials ?? undefined);
  const explicitAuth = opts.credsFile !== undefined || opts.user !== undefined || opts.token !== undefined;
  const fromCreds = connectionOptions(creds && explicitAuth ? { ...creds, auth: undefined } : creds);
  const nc = await connect({
    servers,
    name: opts.name,
    ...fromCreds,
    ...auth,
    ...(opts.user !== undefined ? { user: opts.user, pass: opts.pass ?? "" } : {}),
    ...(opts.token !== undefined ? { token: opts.token } : {}),
    maxReconnectAttempts: -1,
    reconnectDelayHandler: nextDelay,
    waitOnFirstConnect: opts.waitForServer ?? true,
    timeout: opts.timeoutMs ?? 5000,
    pingInterval: opts.pingIntervalMs ?? 10_000,
    maxPingOut: 3,
    noAsyncTraces: true,
    ...(opts.ignoreClusterUpdates ? { ignoreClusterUpdates: true } : {}),
  });
  const coalesce = opts.coalesceWrites === true;
  if (coalesce && !coalesceWrites(nc))
    log.debug("socket writes not coalesced: the client's transport is not known");
  log.info(
    {
      server: nc.getServer(),
      name: opts.name,
      ...(creds
        ? { credentials: describeCredentials(explicitAuth ? { ...creds, auth: undefined } : creds) }
        : {}),
    },
    "connected to NATS",
  );
  void (async () => {
    for await (const s of nc.status()) {
      switch (s.type) {
        case "disconnect":
          downSince = Date.now();
          log.warn({ server: s.server }, "disconnected from NATS");
          break;
        case "reconnecting":
          log.debug("reconnecting to NATS");
          break;
        case "reconnect":
          if (coalesce) coalesceWrites(nc);
          log.info({ server: s.server }, "reconnected to NATS");
          break;
        case "staleConnection":
          log.warn("NATS connection is stale (pings unanswered)");
          break;
        case "error":
          log.error({ err: s.error.message }, "NATS server error");
          break;
        case "ldm":
          log.warn({ server: s.server }, "NATS server entering lame duck mode");
          break;
        case "slowConsumer":
          log.warn({ subject: s.sub.getSubject(), pending: s.pending }, "slow consumer");
          break;
        case "close":
          log.info("NATS connection closed");
          break;
        default:
          break;
      }
    }
  })().catch((e: unknown) => log.error({ err: String(e) }, "NATS status loop failed"));
  return nc;
}

/**
 * Resolves once a PING round trip succeeds (the connection is up), retrying through reconnects; throws
 * CxlrcError "timeout" after timeoutMs.
 */
export async function waitForConnection(nc: NatsConnection, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) throw new CxlrcError("timeout", `NATS connection not up within ${timeoutMs} ms`);
    const ok = await Promise.race([
      nc.flush().then(
        () => true,
        () => false,
      ),
      new Promise<false>((r) => setTimeout(() => r(false), Math.min(left, 1000)).unref()),
    ]);
    if (ok) return;
    if (nc.isClosed()) throw new CxlrcError("backend", "NATS connection is closed");
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface RequestJsonOptions {
  timeoutMs: number;
  headers?: MsgHdrs;
  /** Send through this reply mux (one reply subscription; reply-mux.ts) instead of a request of its own. */
  mux?: ReplyMux;
  /** Checked when the reply arrives: true, and the reply is not decoded (resolves undefined): nobody reads it. */
  unread?: () => boolean;
}

/**
 * Request with a JSON body and decode the JSON reply. Error envelopes (`{ ok: false, error }`) and
 * service error headers become a CxlrcError carrying the remote kind, message and details; a timeout is
 * kind "timeout", nobody listening is kind "backend" with details.reason "no-responders".
 */
export async function requestJson(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  opts: RequestJsonOptions,
): Promise<unknown> {
  let msg: Awaited<ReturnType<NatsConnection["request"]>>;
  if (opts.mux) {
    // The mux's errors are already ours (timeout, no-responders, closed).
    msg = await opts.mux.request(subject, encodeJson(body), {
      timeoutMs: opts.timeoutMs,
      ...(opts.headers ? { headers: opts.headers } : {}),
    });
  } else {
    try {
      msg = await nc.request(subject, encodeJson(body), {
        timeout: opts.timeoutMs,
        ...(opts.headers ? { headers: opts.headers } : {}),
      });
    } catch (e) {
      throw requestFailure(e, subject, opts.timeoutMs);
    }
  }
  const svcErr = msg.headers?.get("Nats-Service-Error");
  if (svcErr) {
    throw new CxlrcError("internal", `${subject}: ${svcErr}`, {
      subject,
      code: msg.headers?.get("Nats-Service-Error-Code") ?? "",
    });
  }
  if (opts.unread?.()) return undefined;
  const value = decodeJson(msg);
  if (value && typeof value === "object" && (value as { ok?: unknown }).ok === false) {
    const err = ErrorBody.safeParse((value as { error?: unknown }).error);
    if (err.success) throw errorFromBody(err.data, { subject });
    throw new CxlrcError("decode", `${subject}: error reply without a valid error body`, { subject });
  }
  return value;
}

/** The server said nobody subscribes to a request's subject (nats.js reports it in two shapes). */
export function isNoResponders(e: unknown): boolean {
  return (
    (e instanceof natsErrors.RequestError && e.isNoResponders()) || e instanceof natsErrors.NoRespondersError
  );
}

function requestFailure(e: unknown, subject: string, timeoutMs: number): CxlrcError {
  if (isNoResponders(e)) {
    return new CxlrcError(
      "backend",
      `nobody answers on ${subject}`,
      { subject, reason: "no-responders" },
      { cause: e },
    );
  }
  if (e instanceof natsErrors.TimeoutError) {
    return new CxlrcError("timeout", `no reply on ${subject} within ${timeoutMs} ms`, { subject, timeoutMs });
  }
  return new CxlrcError(
    "backend",
    `request on ${subject} failed: ${(e as Error)?.message ?? String(e)}`,
    { subject },
    { cause: e },
  );
}

/** Core publish of a JSON body (buffered by the client while reconnecting). */
export function publishJson(nc: NatsConnection, subject: string, body: unknown, headers?: MsgHdrs): void {
  nc.publish(subject, encodeJson(body), headers ? { headers } : undefined);
}

/** Parameters of an agent op without the opId (which callAgent takes separately). */
export type AgentCallParams<Op extends AgentOp> = Omit<
  import("zod").input<(typeof AGENT_PARAMS)[Op]>,
  "opId"
>;

/**
 * Call one agent operation and return its result, checked against the contract (agent-contract.ts): a
 * result that does not match is CxlrcError "decode" naming the op and the first bad field. Error replies
 * throw CxlrcError with the agent's kind. The params are sent as given (not validated here, so tests can
 * send bad ones through `requestJson`).
 */
export async function callAgent<Op extends AgentOp>(
  nc: NatsConnection,
  host: string,
  op: Op,
  opId: string,
  params: AgentCallParams<Op>,
  opts: { timeoutMs: number },
): Promise<AgentResult<Op>> {
  const subject = subjects.agent(host, op);
  const reply = AgentReply.safeParse(await requestJson(nc, subject, { opId, ...params }, opts));
  if (!reply.success) {
    throw new CxlrcError("decode", `${subject}: reply is not an agent reply envelope`, { subject, op });
  }
  if (!reply.data.ok) throw errorFromBody(reply.data.error, { subject });
  return parseAgentResult(op, subject, reply.data.result);
}

// ---------------------------------------------------------------------------------------------------
// JetStream

export interface EnsureStreamsOptions {
  /** Event retention. Default 7 days. */
  eventsMaxAgeMs?: number;
  /** Cap on stored event bytes (oldest dropped). Default 1 GiB. */
  eventsMaxBytes?: number;
  /** Per-subject cap (bounds heartbeat history: 10,000 ≈ 14 h at one per 5 s). Default 10,000. */
  eventsMaxMsgsPerSubject?: number;
  /** Request retention. Default 1 day. */
  requestsMaxAgeMs?: number;
  /** Stream replicas (1 on a single server, 3 on a cluster). Default 1. */
  replicas?: number;
  /** Give up retrying JetStream API timeouts (fresh cluster electing a leader) after this. Default 15 s. */
  readyTimeoutMs?: number;
}

/** The stream configurations ensureStreams creates (exported for deploy files and tests). */
export function streamConfigs(
  opts: EnsureStreamsOptions = {},
): Array<Partial<StreamConfig> & { name: string }> {
  const replicas = opts.replicas ?? 1;
  return [
    {
      name: STREAMS.events.name,
      subjects: [...STREAMS.events.subjects],
      retention: "limits",
      storage: "file",
      discard: "old",
      max_age: nanos(opts.eventsMaxAgeMs ?? 7 * 24 * 3600_000),
      max_bytes: opts.eventsMaxBytes ?? 1024 ** 3,
      max_msgs_per_subject: opts.eventsMaxMsgsPerSubject ?? 10_000,
      duplicate_window: nanos(2 * 60_000),
      num_replicas: replicas,
    },
    {
      name: STREAMS.requests.name,
      subjects: [...STREAMS.requests.subjects],
      retention: "limits",
      storage: "file",
      discard: "old",
      max_age: nanos(opts.requestsMaxAgeMs ?? 24 * 3600_000),
      // Fleet controllers may re-send a request for a while: dedup on requestId over 10 minutes.
      duplicate_window: nanos(10 * 60_000),
      num_replicas: replicas,
    },
  ];
}

/** jetstreamManager without the account check (which times out until a fresh cluster has a leader). */
export function getJsm(nc: NatsConnection, timeoutMs = 5000): Promise<JetStreamManager> {
  return jetstreamManager(nc, { checkAPI: false, timeout: timeoutMs });
}

const MANAGED_FIELDS = [
  "subjects",
  "max_age",
  "max_bytes",
  "max_msgs_per_subject",
  "duplicate_window",
  "discard",
] as const;

/**
 * Create CXLRC_EVENTS and CXLRC_REQUESTS, or bring an existing one's limits in line. Idempotent and safe
 * to race (two agents starting together). Retries API timeouts, and placement on a cluster whose nodes have
 * not all joined yet, until readyTimeoutMs.
 */
export async function ensureStreams(jsm: JetStreamManager, opts: EnsureStreamsOptions = {}): Promise<void> {
  const deadline = performance.now() + (opts.readyTimeoutMs ?? 15_000);
  const retriable = (e: unknown) =>
    e instanceof natsErrors.TimeoutError ||
    isNoResponders(e) ||
    // A fresh cluster whose nodes have not all joined JetStream yet cannot place a replicated stream.
    /timeout|no responders|leader|no suitable peers|insufficient resources/i.test(
      (e as Error)?.message ?? "",
    );
  for (const cfg of streamConfigs(opts)) {
    try {
      await retry(() => ensureOne(jsm, cfg), {
        deadlineMs: Math.max(0, deadline - performance.now()),
        baseMs: 100,
        maxMs: 1000,
        retryIf: retriable,
      });
    } catch (e) {
      throw new CxlrcError(
        "backend",
        `cannot create JetStream stream ${cfg.name}: ${(e as Error)?.message ?? String(e)}`,
        { stream: cfg.name },
        { cause: e },
      );
    }
  }
}

async function ensureOne(
  jsm: JetStreamManager,
  cfg: Partial<StreamConfig> & { name: string },
): Promise<void> {
  let existing: StreamConfig | undefined;
  try {
    existing = (await jsm.streams.info(cfg.name)).config;
  } catch (e) {
    if (!/stream not found/i.test((e as Error)?.message ?? "")) throw e;
  }
  if (!existing) {
    try {
      await jsm.streams.add(cfg);
      return;
    } catch (e) {
      // Lost a race with another creator: fall through to the comparison.
      if (!/already in use/i.test((e as Error)?.message ?? "")) throw e;
      existing = (await jsm.streams.info(cfg.name)).config;
    }
  }
  const differs = MANAGED_FIELDS.some(
    (k) => JSON.stringify(existing?.[k]) !== JSON.stringify((cfg as Record<string, unknown>)[k]),
  );
  if (differs) {
    const update: Record<string, unknown> = { ...existing };
    for (const k of MANAGED_FIELDS) update[k] = (cfg as Record<string, unknown>)[k];
    await jsm.streams.update(cfg.name, update);
  }
}
