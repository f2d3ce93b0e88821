// Every transition and decision of the coordinator, published to the JetStream stream CXLRC_EVENTS on
// cxlrc.evt.<host>.<bdf-token>.<kind> as an EventEnvelope with source "coordinator" (the coordinators' subject
// space: every kind stays in it, none can land among the agents' cxlrc.agt.> events). The envelope id is the JetStream msgID, so a
// retried publish is deduplicated; the events of one device are published one after another, in the order
// they were emitted, so SRE tools replaying the stream see the device's history as it happened.
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { createAckPublisher } from "../../shared/bus/ack-publisher.ts";
import { type EventEnvelope, encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import { STREAMS, subjects } from "../../shared/bus/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import { sleepBackoff } from "../../shared/retry.ts";
import { REST_STATES } from "./runtime/snapshot.ts";
import type { AnnouncedEvent } from "./store.ts";

/** Event kinds the coordinator publishes (reset-rules.md names; the machine may add its own). */
export const EVENT = {
  plan: "plan",
  refused: "refused",
  requestRejected: "request.rejected",
  requestDuplicate: "request.duplicate",
  stateEntered: "state.entered",
  imagePersisted: "image.persisted",
  resetStarted: "reset.started",
  resetCompleted: "reset.completed",
  decoderCommitted: "decoder.committed",
  verifyPassed: "verify.passed",
  verifyFailed: "verify.failed",
  scopeViolation: "scope.violation",
  driverRebound: "driver.rebound",
  driverRebindFailed: "driver.rebind-failed",
  quarantined: "quarantined",
  released: "released",
  /** A release with restore whose verify did not pass: the device stays quarantined (data: the report). */
  releaseFailed: "release.failed",
  failed: "failed",
  verified: "verified",
  leaseLost: "lease.lost",
  recovered: "recovered",
} as const;

export interface EventInput {
  host: string;
  /** null for host-level events (a request naming no device yet). */
  bdf: string | null;
  kind: string;
  data?: Record<string, unknown>;
  opId?: string;
  requestId?: string;
  /** Envelope id (the JetStream msgID); default a fresh one. */
  id?: string;
  /** When it happened (ISO); default now. */
  time?: string;
  /** Checked in turn, right before sending: false drops the event (its publisher lost the right to say it). */
  gate?: () => Promise<boolean>;
  /**
   * The event is in a device record stored under this coordinator's lease (a CAS write proved the right to
   * say it then): sent even if the lease is lost meanwhile, never dropped by the fence. Whoever takes the
   * record over sends it again under the same id, so it is said once either way.
   */
  stored?: boolean;
}

export interface EventPublisher {
  /**
   * Publish (ordered per device: the promise settles after every earlier event of the device). Resolves with
   * the envelope once JetStream acknowledged it. An event is never given up while it may still be said: a
   * publish that keeps failing (an event stream without a leader) is tried again, logged, until it is
   * acknowledged, its lease is no longer confirmed (fence) or the publisher is closed. Never thrown.
   */
  publish(e: EventInput): Promise<EventEnvelope>;
  /** Stop trying: events not acknowledged yet are given up (logged). Their stored records name them. */
  close(): void;
  /** Events sent and awaiting their PubAck. */
  inFlight(): number;
  /** Resolves when everything published so far (of one device, or of all) is acknowledged or given up. */
  flush(device?: { host: string; bdf: string | null }): Promise<void>;
  /**
   * The device's events published but not yet acknowledged (nor given up), in publishing order, as a stored
   * record announces them: a write-ahead stores them with its snapshot instead of waiting for their acks, and
   * whoever takes the record over sends them again (same ids: JetStream drops a copy it already holds).
   */
  unsent(device: { host: string; bdf: string | null }): AnnouncedEvent[];
  /**
   * The stream's last event of this kind for the device, or for the host when bdf is null (null: none): the
   * coordinators' (default), or with source "agent" the host's agent's (cxlrc.agt.<host>.>, where only that
   * agent may publish).
   */
  last(
    device: { host: string; bdf: string | null },
    kind: string,
    source?: "coordinator" | "agent",
  ): Promise<{ id: string; requestId: string | null } | null>;
}

export interface EventPublisherOptions {
  js: JetStreamClient;
  /** The connection events are published on (default: the JetStream client's own). */
  nc?: NatsConnection;
  /** Coordinator id, in every envelope's data as `coordinator`. */
  coordinator: string;
  log: Logger;
  /** Local listeners (metrics, status, waitForOutcome) see each event as it is published. */
  onEvent?: (e: EventEnvelope) => void;
  /** Failed attempts (same msgID each time) after which a publish is logged as failing. Default 5. */
  attempts?: number;
  /**
   * Fencing: a device event published while this coordinator holds the device's lease carries the lease's
   * epoch, and is sent (and re-sent) only while `confirm` says that lease, at that epoch, is still ours;
   * otherwise it is dropped. Events about devices not held here (refusals decided outside) carry none.
   */
  fence?: {
    epoch(host: string, bdf: string): number | undefined;
    confirm(host: string, bdf: string, epoch: number): boolean | Promise<boolean>;
  };
}

/**
 * Progress events whose order among themselves nothing relies on: they may be sent together. What readers and
 * the lifecycle invariants (machines/invariants.ts) order are the anchors between them: the request taken, the
 * plan, the image stored (before any state that changes the device), the reset started, verify results (after
 * every decoder committed), outcomes, rest states, takeovers. An anchor goes alone, once everything before it
 * is acknowledged, and what follows waits for it; so a progress event retried after a node failure may land
 * behind a neighbour of its own run, never behind an anchor. The states that change the device are progress
 * here: what orders them is the image stored and the reset started, both anchors.
 */
export function pipelines(env: Pick<EventEnvelope, "kind" | "data">): boolean {
  if (env.kind === "decoder.committed" || env.kind === "reset.completed") return true;
  return env.kind === "state.entered" && !REST_STATES.has(String(env.data.state));
}

/** An event waiting for its device's drain. */
interface Pending {
  env: EventEnvelope;
  stored: boolean;
  gate?: () => Promise<boolean>;
  /** Settles the publish() promise: this event and every earlier one of the device are settled. */
  done: () => void;
}

export function eventSubject(e: Pick<EventEnvelope, "host" | "bdf" | "kind">): string {
  return e.bdf === null ? subjects.hostEvent(e.host, e.kind) : subjects.event(e.host, e.bdf, e.kind);
}

export function createEventPublisher(opts: EventPublisherOptions): EventPublisher {
  /** Per device, its events waiting to go out and the drain sending them (one at a time per device). */
  const queues = new Map<string, { items: Pending[]; drain: Promise<void> }>();
  /** Per device, the envelopes published and not yet settled (acknowledged, dropped or given up). */
  const unsettled = new Map<string, Set<EventEnvelope>>();
  const attempts = opts.attempts ?? 5;
  let jsm: JetStreamManager | null = null;
  // nats.js's JetStream client keeps its connection as `nc` (BaseApiClientImpl, public in its typings).
  const nc = opts.nc ?? (opts.js as unknown as { nc: NatsConnection }).nc;
  const acks = createAckPublisher(nc, { timeoutMs: 5000 });

  /** Still allowed to speak for the device at the event's epoch (always, for an unfenced event). */
  const fenced = async (env: EventEnvelope): Promise<boolean> => {
    if (env.epoch === undefined || env.bdf === null || !opts.fence) return true;
    const ok = await Promise.resolve(opts.fence.confirm(env.host, env.bdf, env.epoch)).catch(() => false);
    if (!ok) {
      opts.log.warn(
        { kind: env.kind, host: env.host, bdf: env.bdf, epoch: env.epoch, id: env.id },
        "event dropped: the lease it was published under is no longer confirmed",
      );
    }
    return ok;
  };

  let closed = false;
  // An outcome given up would be a request that never ends for whoever follows it (chaos one-outcome, seen
  // with an events stream electing a leader for 25 s): each event is tried until it lands or may not be said.
  // The first attempt is issued at once (no await before it): the events of a group hit the wire in order.
  const send = async (env: EventEnvelope, stored: boolean): Promise<void> => {
    const subject = eventSubject(env);
    for (let i = 1; ; i++) {
      if (i > 1 && !stored && !(await fenced(env))) return;
      try {
        await acks.publish(subject, encodeJson(env), { msgID: env.id });
        if (i > attempts)
          opts.log.info({ subject, id: env.id, attempts: i }, "event published after retries");
        return;
      } catch (err) {
        if (closed) {
          opts.log.error({ err: String(err), subject, id: env.id }, "event not published: publisher closed");
          return;
        }
        if (i === attempts || (i > attempts && i % 10 === 0)) {
          opts.log.error(
            { err: String(err), subject, id: env.id, attempts: i },
            "event not published yet: trying again (the device's later events wait behind it)",
          );
        }
        await sleepBackoff(i - 1, { baseMs: 100, maxMs: 1000 });
      }
    }
  };

  /**
   * Send a device's events in order: a run of progress events queued together goes out at once, pipelined on
   * one connection, and anything after the run waits until each of them is acknowledged or given up; every
   * other event goes alone (pipelines()). A publish that fails while later ones are in flight (a connection
   * lost with the node it was on: those after it go out on the new one) is retried behind them, so only
   * progress events of one run can land out of order, never across an event whose place matters.
   */
  const drain = async (key: string, q: { items: Pending[] }): Promise<void> => {
    await Promise.resolve();
    while (q.items.length > 0) {
      let n = 1;
      if (pipelines(q.items[0]!.env)) while (n < q.items.length && pipelines(q.items[n]!.env)) n++;
      const group = q.items.splice(0, n);
      const going: Pending[] = [];
      for (const p of group) {
        if (p.gate && !(await p.gate().catch(() => false))) {
          opts.log.warn(
            { kind: p.env.kind, host: p.env.host, bdf: p.env.bdf },
            "event dropped: its device is no longer ours",
          );
          continue;
        }
        if (!p.stored && !(await fenced(p.env))) continue;
        going.push(p);
      }
      await Promise.all(going.map((p) => send(p.env, p.stored)));
      const open = unsettled.get(key);
      for (const p of group) {
        open?.delete(p.env);
        p.done();
      }
      if (open?.size === 0 && unsettled.get(key) === open) unsettled.delete(key);
    }
    if (queues.get(key) === q) queues.delete(key);
  };

  return {
    publish(input) {
      const epoch = input.bdf === null ? undefined : opts.fence?.epoch(input.host, input.bdf);
      const env = makeEvent({
        host: input.host,
        bdf: input.bdf,
        kind: input.kind,
        source: "coordinator",
        data: { coordinator: opts.coordinator, ...input.data },
        ...(input.opId ? { opId: input.opId } : {}),
        ...(input.requestId ? { requestId: input.requestId } : {}),
        ...(input.id ? { id: input.id } : {}),
        ...(input.time ? { time: new Date(input.time) } : {}),
        ...(epoch !== undefined ? { epoch } : {}),
      });
      try {
        opts.onEvent?.(env);
      } catch (err) {
        opts.log.error({ err: String(err), kind: env.kind }, "event listener failed");
      }
      const key = `${env.host}/${env.bdf ?? "-"}`;
      const open = unsettled.get(key) ?? new Set<EventEnvelope>();
      unsettled.set(key, open);
      open.add(env);
      let done!: () => void;
      const settled = new Promise<void>((r) => {
        done = r;
      });
      const p: Pending = {
        env,
        stored: input.stored === true,
        done,
        ...(input.gate ? { gate: input.gate } : {}),
      };
      const q = queues.get(key);
      if (q) q.items.push(p);
      else {
        const fresh = { items: [p], drain: Promise.resolve() };
        fresh.drain = drain(key, fresh);
        queues.set(key, fresh);
      }
      return settled.then(() => env);
    },
    async last(device, kind, source = "coordinator") {
      jsm ??= await opts.js.jetstreamManager(false);
      try {
        const m = await jsm.streams.getMessage(STREAMS.events.name, {
          last_by_subj:
            source === "agent"
              ? subjects.agentEvent(device.host, device.bdf, kind)
              : eventSubject({ host: device.host, bdf: device.bdf, kind }),
        });
        if (!m) return null;
        const env = m.json<{ id?: string; requestId?: string }>();
        return { id: env.id ?? "", requestId: env.requestId ?? null };
      } catch (err) {
        if (/no message found|not found/i.test(String(err))) return null;
        throw err;
      }
    },
    close() {
      closed = true;
    },
    unsent(device) {
      const open = unsettled.get(`${device.host}/${device.bdf ?? "-"}`);
      if (!open) return [];
      return [...open].map((env) => ({
        id: env.id,
        kind: env.kind,
        time: env.time,
        data: env.data,
        ...(env.requestId ? { requestId: env.requestId } : {}),
      }));
    },
    inFlight: () => acks.pending(),
    async flush(device) {
      if (device) await queues.get(`${device.host}/${device.bdf ?? "-"}`)?.drain;
      else await Promise.all([...queues.values()].map((q) => q.drain));
    },
  };
}
