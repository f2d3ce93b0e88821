// The host agent on NATS: a micro-service "cxlrc-agent" (discovery, ping, stats come with it) with one
// endpoint per operation on cxlrc.agent.<host>.<op>.
//
// Every request is size-checked, JSON-decoded and schema-checked (AGENT_PARAMS[op]); bad input gets an
// error reply and the agent keeps serving. Commands are idempotent by opId: a repeated opId gets the first
// result (or waits for the one in flight) and nothing runs twice. One operation per device at a time;
// later ones for the same device wait in a bounded FIFO, or are refused with "in-progress" when it is full.
// Every step is an event on cxlrc.agt.<host>.<bdf>.<kind> (JetStream, msgID = event id), and a heartbeat
// goes out on cxlrc.agt.<host>.agent.heartbeat: the agents' own subject space, never the coordinator's.
//
// A request is answered only on the caller's inbox (shared/bus/trust.ts isCallerInbox): a reply subject
// aimed anywhere else ($JS.API..., $KV..., another service) is refused before the request is even read, with
// a log line and a count (refusedReplySubjects), and nothing runs. The guard sits on the connection the
// micro-service subscribes through, so the discovery endpoints ($SRV PING/INFO/STATS) are covered too.
import { createHash } from "node:crypto";
import { type Service, type ServiceMsg, Svcm } from "@nats-io/services";
import type { Msg, NatsConnection, SubscriptionOptions } from "@nats-io/transport-node";
import type { z } from "zod";
import {
  AGENT_FEATURES,
  type AgentFeature,
  type AgentResult,
  type FaultResult,
  type PingResult,
  type ResetResult,
  type RestoreResult,
  type SaveResult,
} from "../../shared/bus/agent-contract.ts";
import { AGENT_PARAMS, type AgentReply, type Fence, OpId } from "../../shared/bus/agent-messages.ts";
import {
  decodeJson,
  type EventEnvelope,
  errorToBody,
  formatZodIssues,
  makeEvent,
} from "../../shared/bus/codec.ts";
import { AGENT_OPS, type AgentOp, checkHost, subjects } from "../../shared/bus/subjects.ts";
import { isCallerInbox } from "../../shared/bus/trust.ts";
import { CxlrcError, describeError } from "../../shared/errors.ts";
import type { HardwareBackend } from "../../shared/hw/backend.ts";
import { VALIDATED_IMAGES_KEPT, validatedImages } from "../../shared/image/validated.ts";
import { type Logger, silentLogger } from "../../shared/log.ts";
import { packageVersion } from "../../shared/version.ts";
import { waitAtMost } from "../../shared/wait.ts";
import { EventPublisher, type EventPublisherOptions, type EventPublisherStats } from "./events.ts";
import { openFenceTable } from "./fence-table.ts";
import type { AgentMetrics, OpResult } from "./metrics.ts";
import type { OpContext } from "./ops/context.ts";
import { operations as defaultOperations } from "./ops/index.ts";
import { type AgentTimeouts, agentTimeouts } from "./ops/timeouts.ts";
import { openResetJournal } from "./reset-journal.ts";

export type { AgentTimeouts, OpContext };

export const AGENT_SERVICE_NAME = "cxlrc-agent";

/** The package version (also the micro-service version: must be semver). */
export const AGENT_VERSION: string = packageVersion();

type Params<Op extends AgentOp> = Omit<z.output<(typeof AGENT_PARAMS)[Op]>, "opId" | "fence">;

type Returns<Op extends AgentOp> = Promise<AgentResult<Op>>;

/**
 * The agent's operations (services/agent/ops), each returning what the contract declares for it
 * (shared/bus/agent-contract.ts). Methods, so implementations may narrow parameter types.
 */
export interface Operations {
  inventory(ctx: OpContext): Returns<"inventory">;
  bind(ctx: OpContext, p: Params<"bind">): Returns<"bind">;
  probe(ctx: OpContext, p: Params<"probe">): Returns<"probe">;
  save(ctx: OpContext, p: Params<"save">): Returns<"save">;
  quiesce(ctx: OpContext, p: Params<"quiesce">): Returns<"quiesce">;
  reset(ctx: OpContext, p: Params<"reset">): Returns<"reset">;
  restore(ctx: OpContext, p: Params<"restore">): Returns<"restore">;
  verify(ctx: OpContext, p: Params<"verify">): Returns<"verify">;
}

export interface StartAgentOptions {
  nc: NatsConnection;
  host: string;
  backend: HardwareBackend;
  /** Default: services/agent/ops. */
  operations?: Operations;
  log?: Logger;
  timeouts?: Partial<AgentTimeouts>;
  /** Default 5000 ms. */
  heartbeatMs?: number;
  /** Remembered opIds (results kept for repeats). Default 10,000. */
  dedupCapacity?: number;
  /** Largest accepted request. Default 256 KiB. */
  maxPayloadBytes?: number;
  /** Operations waiting per device beyond the running one; more are refused "in-progress". Default 16. */
  maxQueuePerDevice?: number;
  /**
   * How long a reply waits for its op's events to be stored. Default 1000 ms: half the coordinator's call
   * timeout, so a stalled events stream (a NATS node failing over) delays the reply but never silences it.
   */
  eventWaitMs?: number;
  /** stop(): how long to wait for running operations. Default 10 s. */
  stopTimeoutMs?: number;
  events?: EventPublisherOptions;
  /**
   * Where the fencing table (fence-table.ts) is kept across restarts. Unset: in memory only (an embedded
   * agent); `cxlrc serve agent` always sets it (config `stateDir`).
   */
  stateDir?: string;
  /** Where operations, heartbeats and lost events are counted (services/agent/metrics.ts). Default: nowhere. */
  metrics?: AgentMetrics;
  /**
   * The AGENT_FEATURES this agent offers and names in its inventory (default: all). One left out is refused
   * as the first release refused it (`bad-input` naming the field): what a coordinator sees of an older agent.
   */
  features?: readonly AgentFeature[];
}

export interface AgentStats {
  host: string;
  version: string;
  uptimeMs: number;
  /** Operations running now. */
  inFlight: number;
  /** Operations waiting for their device. */
  queued: number;
  /** Requests received (all endpoints). */
  received: number;
  completed: number;
  failed: number;
  /** Repeated opIds answered from the cache. */
  deduplicated: number;
  badInput: number;
  /** Refused because the device's queue was full. */
  refused: number;
  /** Fenced operations refused: their epoch is older than one already served for the function. */
  staleEpoch: number;
  /** Requests (operations and discovery) not answered: their reply subject is not a caller's inbox. */
  refusedReplySubjects: number;
  /** opIds remembered. */
  remembered: number;
  events: EventPublisherStats;
  heartbeats: number;
}

export interface AgentHandle {
  readonly host: string;
  readonly service: Service;
  stats(): AgentStats;
  /** Stop serving (drain the endpoints), finish running ops (bounded), stop the heartbeat, flush events. */
  stop(): Promise<void>;
}

interface CacheEntry {
  op: AgentOp;
  fingerprint: string;
  reply: Promise<AgentReply>;
  done: boolean;
}

/** Bounded LRU of opId → reply; in-flight entries are never evicted. */
class OpCache {
  private readonly map = new Map<string, CacheEntry>();
  constructor(private readonly capacity: number) {}
  /** Forget `opId` if it still maps to `e`. */
  delete(opId: string, e: CacheEntry): void {
    if (this.map.get(opId) === e) this.map.delete(opId);
  }
  get(opId: string): CacheEntry | undefined {
    const e = this.map.get(opId);
    if (e) {
      this.map.delete(opId);
      this.map.set(opId, e);
    }
    return e;
  }
  set(opId: string, e: CacheEntry): void {
    this.map.set(opId, e);
    this.evict();
  }
  evict(): void {
    if (this.map.size <= this.capacity) return;
    for (const [k, v] of this.map) {
      if (this.map.size <= this.capacity) break;
      if (v.done) this.map.delete(k);
    }
  }
  get size(): number {
    return this.map.size;
  }
}

/** One operation per device; FIFO queue behind it, bounded. */
class DeviceLanes {
  private readonly lanes = new Map<string, { queue: Array<() => void> }>();
  constructor(private readonly maxQueue: number) {}
  /** A promise of the release function, or undefined when the device's queue is full. */
  enter(bdf: string): Promise<() => void> | undefined {
    const lane = this.lanes.get(bdf);
    const release = () => this.release(bdf);
    if (!lane) {
      this.lanes.set(bdf, { queue: [] });
      return Promise.resolve(once(release));
    }
    if (lane.queue.length >= this.maxQueue) return undefined;
    return new Promise((resolve) => lane.queue.push(() => resolve(once(release))));
  }
  private release(bdf: string): void {
    const lane = this.lanes.get(bdf);
    if (!lane) return;
    const next = lane.queue.shift();
    if (next) next();
    else this.lanes.delete(bdf);
  }
  get queued(): number {
    let n = 0;
    for (const l of this.lanes.values()) n += l.queue.length;
    return n;
  }
}

function once(f: () => void): () => void {
  let called = false;
  return () => {
    if (!called) {
      called = true;
      f();
    }
  };
}

const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Stable JSON (sorted keys) for the opId fingerprint. Loops, not map/join: it walks whole images. */
function canonical(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) {
    let s = "";
    for (let i = 0; i < v.length; i++) s += (i > 0 ? "," : "") + canonical(v[i]);
    return `[${s}]`;
  }
  const o = v as Record<string, unknown>;
  let s = "";
  for (const k of Object.keys(o).sort(byCodeUnit)) {
    if (o[k] !== undefined) s += `${s.length > 0 ? "," : ""}${JSON.stringify(k)}:${canonical(o[k])}`;
  }
  return `{${s}}`;
}

/** Operations that only read the device (a save that hands a driver over unbinds it: not one of them). */
function readsOnly(op: AgentOp, params: Record<string, unknown>): boolean {
  return op === "probe" || op === "verify" || (op === "save" && params.handover === undefined);
}

/** Ops that take the device lane. inventory has no device; fault must reach a device mid-reset (chaos). */
const LANE_OPS: ReadonlySet<AgentOp> = new Set([
  "bind",
  "probe",
  "save",
  "quiesce",
  "reset",
  "restore",
  "verify",
]);

/** Results up to this size are copied into op.completed events. */
const EVENT_RESULT_MAX = 8 * 1024;

export async function startAgent(opts: StartAgentOptions): Promise<AgentHandle> {
  const host = checkHost(opts.host);
  const { nc, backend } = opts;
  const operations: Operations = opts.operations ?? defaultOperations;
  const features: ReadonlySet<AgentFeature> = new Set(opts.features ?? AGENT_FEATURES);
  const log = (opts.log ?? silentLogger).child({ host });
  const timeouts = agentTimeouts(opts.timeouts);
  const heartbeatMs = opts.heartbeatMs ?? 5000;
  const maxPayloadBytes = opts.maxPayloadBytes ?? 256 * 1024;
  const eventWaitMs = opts.eventWaitMs ?? 1000;
  const cache = new OpCache(opts.dedupCapacity ?? 10_000);
  const lanes = new DeviceLanes(opts.maxQueuePerDevice ?? 16);
  const publisher = new EventPublisher(nc, log, opts.events);
  const metrics = opts.metrics ?? null;
  metrics?.countOutboxDropsWith(() => publisher.stats().dropped);
  const fences = openFenceTable(opts.stateDir ?? null);
  const resets = openResetJournal(opts.stateDir ?? null);
  const started = performance.now();
  const running = new Set<Promise<unknown>>();
  const counters = {
    received: 0,
    completed: 0,
    failed: 0,
    deduplicated: 0,
    badInput: 0,
    refused: 0,
    staleEpoch: 0,
    refusedReplySubjects: 0,
    heartbeats: 0,
  };
  /** Replies whose JSON text run() already has. */
  const replyJson = new WeakMap<AgentReply, string>();
  let inFlight = 0;
  let devices = 0;
  let stopped = false;

  const emitEvent = (
    bdf: string | null,
    kind: string,
    data: Record<string, unknown> = {},
    opId?: string,
  ): number => {
    let env: EventEnvelope;
    let subject: string;
    try {
      env = makeEvent({ host, bdf, kind, data, source: "agent", ...(opId ? { opId } : {}) });
      subject = subjects.agentEvent(host, bdf, kind);
    } catch (e) {
      log.error({ err: (e as Error).message, kind, bdf }, "event not publishable");
      metrics?.eventsDropped("unpublishable");
      return 0;
    }
    return publisher.publish(subject, env);
  };

  const refreshDevices = async () => {
    try {
      devices = (await backend.listFunctions()).filter((f) => f.headerType === 0).length;
    } catch (e) {
      log.warn({ err: (e as Error).message }, "listing functions failed");
    }
  };
  await refreshDevices();

  const faultApi = (
    backend as unknown as {
      faults?: {
        set(bdf: string, f: unknown): void;
        clear(bdf: string, name?: string): void;
        list(bdf: string): FaultResult["faults"];
      };
    }
  ).faults;

  /** A restore, and the verify right after it when asked (a verify that cannot run is left out, logged). */
  async function restoreThenVerify(
    ctx: OpContext,
    rp: Omit<Params<"restore">, "verify">,
    andVerify: boolean,
  ): Promise<RestoreResult> {
    const restored = await operations.restore(ctx, rp);
    if (!andVerify) return restored;
    // A verify that cannot run here is left out: the caller's own verify step runs it and names why.
    try {
      return { ...restored, verify: await operations.verify(ctx, rp) };
    } catch (e) {
      ctx.log.warn({ err: describeError(e) }, "verify after the restore not run; left to the verify step");
      return restored;
    }
  }

  async function dispatch(op: AgentOp, ctx: OpContext, p: Record<string, unknown>): Promise<unknown> {
    switch (op) {
      case "inventory":
        return { ...(await operations.inventory(ctx)), features: [...features] };
      case "bind":
        return operations.bind(ctx, p as Params<"bind">);
      case "probe":
        return operations.probe(ctx, p as Params<"probe">);
      case "save": {
        const { probe, ...sp } = p as Params<"save">;
        const image = await operations.save(ctx, sp);
        if (probe !== true) return image;
        // The regate's read, right after the save: a read that fails leaves it out (the caller reads again);
        // the save stands.
        try {
          return {
            ...image,
            probe: await operations.probe(ctx, { bdf: sp.bdf, brief: true }),
          } satisfies SaveResult;
        } catch (e) {
          ctx.log.warn({ err: describeError(e) }, "read after the save not made; left to the caller");
          return image;
        }
      }
      case "quiesce":
        return operations.quiesce(ctx, p as Params<"quiesce">);
      case "reset": {
        const { restore, ...rp } = p as Params<"reset">;
        const reset = await operations.reset(ctx, rp);
        // Restored in the same operation only once the reset's own polling saw the function answer; a restore
        // that fails is said in the result (the reset happened: failing the operation would hide that).
        if (!restore || !reset.reached.includes(rp.bdf)) return reset;
        const { verify, ...how } = restore;
        try {
          const restored = await restoreThenVerify(ctx, { bdf: rp.bdf, ...how }, verify === true);
          return { ...reset, restore: { ok: true, result: restored } } satisfies ResetResult;
        } catch (e) {
          ctx.log.warn({ err: describeError(e) }, "restore after the reset failed");
          return { ...reset, restore: { ok: false, error: errorToBody(e) } } satisfies ResetResult;
        }
      }
      case "restore": {
        const { verify: andVerify, ...rp } = p as Params<"restore">;
        return restoreThenVerify(ctx, rp, andVerify === true);
      }
      case "verify":
        return operations.verify(ctx, p as Params<"verify">);
      case "fault": {
        const f = p as Params<"fault">;
        if (!faultApi) throw new CxlrcError("unsupported", `backend ${backend.kind} has no fault injection`);
        if (f.action === "set") {
          if (!f.fault)
            throw new CxlrcError("bad-input", 'fault: field "fault" is required for action "set"');
          faultApi.set(f.bdf, f.fault);
        } else if (f.action === "clear") {
          const name = f.fault?.name;
          faultApi.clear(f.bdf, typeof name === "string" ? name : undefined);
        }
        return { bdf: f.bdf, faults: faultApi.list(f.bdf) } satisfies FaultResult;
      }
    }
  }

  /** Run one admitted operation: wait for the device, run, publish events, build the reply. */
  async function run(
    op: AgentOp,
    opId: string,
    params: Record<string, unknown>,
    lane: Promise<() => void> | undefined,
    fence: Fence | undefined,
  ): Promise<AgentReply> {
    const bdf = typeof params.bdf === "string" ? params.bdf : null;
    const opLog = log.child({ op, opId, ...(bdf ? { bdf } : {}) });
    const release = lane ? await lane : undefined;
    inFlight++;
    const t0 = performance.now();
    let lastSeq = 0;
    const ctx: OpContext = {
      backend,
      host,
      log: opLog,
      timeouts,
      agentVersion: AGENT_VERSION,
      emit: (b, kind, data) => {
        lastSeq = emitEvent(b, kind, data ?? {}, opId) || lastSeq;
      },
    };
    // Images stay out of the event (kilobytes, and the image is stored already): the rest says what was asked.
    const { image: _image, ...summary } = params;
    if (summary.restore && typeof summary.restore === "object") {
      const { image: _restoreImage, ...restore } = summary.restore as Record<string, unknown>;
      summary.restore = restore;
    }
    lastSeq = emitEvent(bdf, "op.started", { op, params: summary }, opId);
    opLog.debug("operation started");
    let reply: AgentReply;
    try {
      // Under the device's lane: no operation of an older owner can slip in between the check and the op. A
      // higher epoch is taken at once (in memory: any older owner is refused from now on); its durable write
      // runs beside an operation that only reads the device, which says nothing (no op.completed, no reply)
      // until the write is stored. An operation that changes the device runs only once it is stored.
      const refusal = fence && bdf ? fences.check(bdf, fence) : null;
      if (refusal) throw refusal;
      const raised = fence && bdf ? fences.admit(bdf, fence) : null;
      raised?.catch(() => undefined);
      if (raised && !readsOnly(op, params)) await raised;
      if (op === "reset" && bdf) await resets.begin(opId, bdf);
      const [ran, stored] = await Promise.allSettled([dispatch(op, ctx, params), raised]);
      if (stored.status === "rejected") throw stored.reason;
      if (ran.status === "rejected") throw ran.reason;
      const raw = ran.value;
      // Round-trip through JSON now: a result that cannot be sent fails here, not in respond().
      const json = JSON.stringify(raw ?? null);
      const result: unknown = JSON.parse(json);
      const durationMs = performance.now() - t0;
      counters.completed++;
      metrics?.operation(op, backend.kind, "ok", durationMs / 1000);
      lastSeq = emitEvent(
        bdf,
        "op.completed",
        { op, durationMs, ...(json.length <= EVENT_RESULT_MAX ? { result } : { resultBytes: json.length }) },
        opId,
      );
      opLog.info({ durationMs: Math.round(durationMs * 1000) / 1000 }, "operation completed");
      reply = { ok: true, opId, result };
      // The same JSON respond() would build, from the text already made: results run to kilobytes.
      replyJson.set(reply, `{"ok":true,"opId":${JSON.stringify(opId)},"result":${json}}`);
    } catch (e) {
      const durationMs = performance.now() - t0;
      const error = errorToBody(e);
      counters.failed++;
      // errorToBody gives an ErrorKind: a closed set, fit for a label.
      metrics?.operation(op, backend.kind, error.kind as OpResult, durationMs / 1000);
      lastSeq = emitEvent(bdf, "op.failed", { op, durationMs, error }, opId);
      opLog.warn({ kind: error.kind, err: error.message, durationMs }, "operation failed");
      reply = { ok: false, opId, error };
    } finally {
      inFlight--;
      release?.();
    }
    if (op === "reset" && bdf) {
      await resets
        .end(opId, reply)
        .catch((e) => opLog.error({ err: describeError(e) }, "reset journal not written"));
    }
    if (op === "inventory" || op === "bind") void refreshDevices();
    // The reply follows the op's events into the stream, unless the stream is slow (bounded wait).
    if (!(await publisher.waitFor(lastSeq, eventWaitMs))) {
      opLog.warn({ eventWaitMs }, "events not yet stored; replying anyway");
    }
    return reply;
  }

  function respond(msg: ServiceMsg, reply: AgentReply): void {
    if (!isCallerInbox(msg.reply)) return;
    try {
      msg.respond(replyJson.get(reply) ?? JSON.stringify(reply));
    } catch (e) {
      log.warn({ err: (e as Error).message }, "reply not sent");
    }
  }

  function badInput(
    msg: ServiceMsg,
    opId: string | null,
    message: string,
    details: Record<string, unknown> = {},
  ) {
    counters.badInput++;
    log.warn({ subject: msg.subject, opId, err: message }, "bad request");
    respond(msg, { ok: false, opId, error: { kind: "bad-input", message, details } });
  }

  /** A fenced operation refused: counted, logged, answered (never cached: the newer owner may reuse the id). */
  function staleEpoch(op: AgentOp, opId: string, error: AgentReply & { ok: false }): void {
    counters.staleEpoch++;
    log.warn(
      { op, opId, ...error.error.details },
      "operation refused: stale epoch (another coordinator owns the device)",
    );
  }

  function handle(op: AgentOp, msg: ServiceMsg): void {
    counters.received++;
    if (msg.data.length > maxPayloadBytes) {
      badInput(
        msg,
        null,
        `${op}: message of ${msg.data.length} bytes exceeds the agent's limit of ${maxPayloadBytes} bytes`,
        { bytes: msg.data.length, limit: maxPayloadBytes },
      );
      return;
    }
    let raw: unknown;
    try {
      raw = decodeJson(msg);
    } catch (e) {
      badInput(msg, null, `${op}: ${(e as Error).message}`);
      return;
    }
    const rawOpId = (raw as { opId?: unknown } | null)?.opId;
    const guessedOpId = OpId.safeParse(rawOpId).success ? (rawOpId as string) : null;
    const parsed = AGENT_PARAMS[op].safeParse(raw);
    if (!parsed.success) {
      // An unknown field is named too (its issue's path is the object holding it).
      const fields = parsed.error.issues
        .flatMap((i) =>
          i.code === "unrecognized_keys"
            ? i.keys.map((k) => [...i.path.map(String), k].join("."))
            : [i.path.map(String).join(".")],
        )
        .filter(Boolean);
      badInput(msg, guessedOpId, `${op}: ${formatZodIssues(parsed.error)}`, { fields });
      return;
    }
    const { opId, fence, ...params } = parsed.data as { opId: string; fence?: Fence } & Record<
      string,
      unknown
    >;
    if (op === "ping") {
      // From the event loop, at once: no lane, no event, no cache (nothing to repeat). What the caller learns is
      // that this agent reads its requests.
      respond(msg, { ok: true, opId, result: { host, inFlight } satisfies PingResult });
      return;
    }
    const gated = FEATURE_FIELDS[op];
    if (gated && params[gated.field] !== undefined && !features.has(gated.feature)) {
      badInput(
        msg,
        opId,
        `${op}: field "${gated.field}" is not offered by this agent (its features: ${[...features].join(", ") || "none"})`,
        { fields: [gated.field] },
      );
      return;
    }
    const bdf = typeof params.bdf === "string" ? params.bdf : undefined;
    if (fence && bdf) {
      const refusal = fences.check(bdf, fence);
      if (refusal) {
        const reply = { ok: false as const, opId, error: errorToBody(refusal) };
        staleEpoch(op, opId, reply);
        respond(msg, reply);
        return;
      }
    }
    // The fence is not part of the operation: a new owner repeating an operation id gets the first result.
    const fingerprint = createHash("sha256").update(canonical(params)).digest("base64url");
    const seen = cache.get(opId);
    if (seen) {
      if (seen.op !== op || seen.fingerprint !== fingerprint) {
        badInput(
          msg,
          opId,
          `${op}: opId ${JSON.stringify(opId)} was already used for ${seen.op} with different parameters`,
          { field: "opId", firstOp: seen.op },
        );
        return;
      }
      counters.deduplicated++;
      // A newer owner repeating an operation id (a takeover re-runs the step) still raises the epoch.
      if (fence && bdf) {
        fences
          .admit(bdf, fence)
          .catch((e) => log.warn({ op, opId, err: (e as Error).message }, "fence not stored"));
      }
      log.debug({ op, opId }, "repeated opId: answering with the first result");
      // Answered by the run still in flight, its reads are as new as a run of its own; once it has ended, the
      // reads it made besides its work (the facts a save read after it) are as old as that run: left out.
      const ended = seen.done;
      void seen.reply.then((r) => respond(msg, ended ? withoutLateReads(op, r) : r));
      return;
    }
    // A reset this agent issued before it restarted: never issued twice.
    const journaled = op === "reset" ? resets.repeat(opId) : null;
    if (journaled) {
      counters.deduplicated++;
      log.warn({ op, opId, ok: journaled.ok }, "repeated reset opId from before a restart: not issued again");
      respond(msg, journaled);
      return;
    }
    if (stopped) {
      respond(msg, {
        ok: false,
        opId,
        error: { kind: "unsupported", message: `agent ${host} is stopping`, details: {} },
      });
      return;
    }
    let lane: Promise<() => void> | undefined;
    if (bdf && LANE_OPS.has(op)) {
      lane = lanes.enter(bdf);
      if (!lane) {
        counters.refused++;
        respond(msg, {
          ok: false,
          opId,
          error: {
            kind: "in-progress",
            message: `${op}: device ${bdf} is busy and its queue is full`,
            details: { bdf },
          },
        });
        return;
      }
    }
    const entry: CacheEntry = { op, fingerprint, reply: run(op, opId, params, lane, fence), done: false };
    cache.set(opId, entry);
    running.add(entry.reply);
    void entry.reply.then((r) => {
      entry.done = true;
      running.delete(entry.reply);
      if (!r.ok && r.error.kind === "stale-epoch") {
        cache.delete(opId, entry);
        staleEpoch(op, opId, r);
      }
      cache.evict();
      respond(msg, r);
    });
  }

  /** Pass a request on only when its reply goes to the caller's inbox; otherwise drop it (logged, counted). */
  const guard =
    (callback: (err: Error | null, msg: Msg) => void) =>
    (err: Error | null, msg: Msg): void => {
      if (err === null && !isCallerInbox(msg.reply)) {
        counters.refusedReplySubjects++;
        const n = counters.refusedReplySubjects;
        // Bounded logging: a flood of these must not become a flood of log lines.
        if (n <= 10 || n % 1000 === 0) {
          log.warn(
            { subject: msg.subject, reply: msg.reply ?? null, refused: n },
            "request refused: its reply subject is not a caller's inbox (not answered, not run)",
          );
        }
        return;
      }
      callback(err, msg);
    };
  const service = await new Svcm(guardedSubscriptions(nc, guard)).add({
    name: AGENT_SERVICE_NAME,
    version: AGENT_VERSION,
    description: `cxlrc host agent for ${host}`,
    metadata: { host, backend: backend.kind },
  });
  for (const op of AGENT_OPS) {
    if (op === "fault" && !backend.capabilities.faults) continue;
    service.addEndpoint(op, {
      subject: subjects.agent(host, op),
      metadata: { op },
      handler: (err, msg) => {
        if (err) {
          log.error({ err: err.message, op }, "endpoint error");
          return;
        }
        try {
          handle(op, msg);
        } catch (e) {
          // The services library would answer a throw itself; keep every answer here, on the checked inbox.
          log.error({ err: (e as Error).message, op }, "request handler failed");
          respond(msg, {
            ok: false,
            opId: null,
            error: { kind: "internal", message: `${op}: ${(e as Error).message}`, details: {} },
          });
        }
      },
    });
  }
  // Subscriptions are live once the server has processed them.
  await nc.flush();

  const heartbeat = () => {
    counters.heartbeats++;
    const env = makeEvent({
      host,
      bdf: null,
      kind: "heartbeat",
      source: "agent",
      data: {
        host,
        version: AGENT_VERSION,
        devices,
        inFlight,
        uptimeMs: Math.round(performance.now() - started),
      },
    });
    try {
      // Core publish: a heartbeat is worth nothing late, so no acks and no retries (the stream still keeps it).
      nc.publish(subjects.agentEvent(host, null, "heartbeat"), JSON.stringify(env));
      metrics?.heartbeat(Date.now());
    } catch (e) {
      metrics?.eventsDropped("heartbeat");
      log.warn({ err: (e as Error).message }, "heartbeat not sent");
    }
    if (counters.heartbeats % 12 === 0) void refreshDevices();
  };
  const timer = setInterval(heartbeat, heartbeatMs);
  timer.unref();
  // The images this agent's saves make, kept until their restore and verify (validated.ts): room for its own
  // host's devices, whatever other agents this process runs.
  const releaseImages = validatedImages.reserve(VALIDATED_IMAGES_KEPT);
  emitEvent(null, "agent.started", { version: AGENT_VERSION, backend: backend.kind, devices });
  heartbeat();
  log.info(
    { version: AGENT_VERSION, backend: backend.kind, devices, service: service.info().id },
    "agent serving",
  );

  return {
    host,
    service,
    stats: () => ({
      host,
      version: AGENT_VERSION,
      uptimeMs: performance.now() - started,
      inFlight,
      queued: lanes.queued,
      ...counters,
      remembered: cache.size,
      events: publisher.stats(),
    }),
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await service.stop();
      if (running.size > 0) {
        const stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
        await waitAtMost(Promise.allSettled([...running]), stopTimeoutMs);
        if (running.size > 0) log.warn({ running: running.size }, "stopping with operations still running");
      }
      if (!nc.isClosed()) {
        emitEvent(null, "agent.stopped", { uptimeMs: Math.round(performance.now() - started) });
        await publisher.close(2000);
      }
      await resets.close().catch(() => undefined);
      await fences.close().catch(() => undefined);
      releaseImages();
      log.info("agent stopped");
    },
  };
}

/** The fields an operation takes only from an agent that offers their feature (AGENT_FEATURES). */
const FEATURE_FIELDS: Partial<Record<AgentOp, { field: string; feature: AgentFeature }>> = {
  reset: { field: "restore", feature: "reset.restore" },
  save: { field: "probe", feature: "save.probe" },
};

/**
 * A first result given again for a repeated operation id, without the reads it made of the device besides its
 * work: a save's `probe` (the facts read once it was saved: the regate's read, which must be of now). The
 * caller, finding none, reads the device afresh.
 */
function withoutLateReads(op: AgentOp, r: AgentReply): AgentReply {
  if (op !== "save" || !r.ok || typeof r.result !== "object" || r.result === null || !("probe" in r.result))
    return r;
  const { probe: _late, ...image } = r.result as Record<string, unknown>;
  return { ...r, result: image };
}

/**
 * The connection as the micro-service sees it: every subscription it makes (endpoints and discovery) gets its
 * messages through `guard`. Everything else is the connection itself.
 */
function guardedSubscriptions(
  nc: NatsConnection,
  guard: (cb: (err: Error | null, msg: Msg) => void) => (err: Error | null, msg: Msg) => void,
): NatsConnection {
  return new Proxy(nc, {
    get(target, prop) {
      if (prop === "subscribe") {
        return (subject: string, opts: SubscriptionOptions = {}) =>
          target.subscribe(subject, opts.callback ? { ...opts, callback: guard(opts.callback) } : opts);
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
