// Runs one chaos scenario end to end: the bus (its own 1- or 3-node cluster, or one given and wiped), the
// simulated hosts with their agents, the coordinators as processes, the requests and faults at their
// moments; then brings everything back (settle), waits until the fleet is at rest, reads the event stream,
// the KV store and every device, and checks the invariants (invariants.ts).
import { writeFileSync } from "node:fs";
import { jetstream } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Policy } from "../../machines/policy/defaults.ts";
import { ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { encodeJson } from "../../shared/bus/codec.ts";
import { BUCKETS, deviceKey, STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { exitOnSignals } from "../../shared/children.ts";
import { silentLogger } from "../../shared/log.ts";
import { type ClusterHandle, startCluster } from "../../shared/natsd/cluster.ts";
import { retry } from "../../shared/retry.ts";
import { createRng } from "../../shared/rng.ts";
import { waitAtMost } from "../../shared/wait.ts";
import { operations } from "../agent/ops/index.ts";
import { agentTimeouts } from "../agent/ops/timeouts.ts";
import { CONSUMER_NAME } from "../coordinator/intake.ts";
import { type ActorRecord, FLEET_KEY, type ImageRecord } from "../coordinator/store.ts";
import { createCoordinators } from "./coordinators.ts";
import { type FaultDriver, startFaultDriver } from "./faults.ts";
import { createHosts } from "./hosts.ts";
import {
  checkChaosInvariants,
  type FunctionReading,
  functionZero,
  isTerminal,
  type LiveImageCheck,
  type ResetCount,
  spokenBy,
} from "./invariants.ts";
import { planScenario } from "./plan.ts";
import { type RecordedEvent, startRecorder } from "./recorder.ts";
import type { ChaosReport } from "./report.ts";
import { fleetDevices, type LoadedScenario, type RequestSpec } from "./scenario.ts";

/** Guards a chaos run starts from (the scenario's policy wins): budgets and the breaker would only hide faults. */
export const CHAOS_POLICY: Partial<Policy> = {
  maxAttemptsPerWindow: 100_000,
  attemptWindowMs: 60_000,
  cooldownMs: 1000,
  breakerMinSamples: 1_000_000,
  maxConcurrentPerHost: 4,
  maxConcurrentPerSwitch: 2,
};

export interface RunOptions {
  /** A running cluster to use (its cxlrc streams and buckets are deleted first). Default: start one. */
  cluster?: ClusterHandle;
  /** Progress lines (faults as they fire, phases of the run). */
  log?: (line: string) => void;
  /** The coordinators' stderr (their logs, with the scenario's logLevel). */
  coordinatorLog?: (index: number, text: string) => void;
  /** Write every stored event there (JSON lines, stream order) for a closer look. */
  eventsFile?: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const KV_STREAMS = Object.values(BUCKETS).map((b) => `KV_${b}`);

/** How long the live image check keeps asking the store before it says the image could not be read. */
const IMAGE_READ_BACK_MS = 45_000;

/** fn until it succeeds or the clock passes untilMs (Date.now()): pauses from pauseMs up to 4× that, jittered. */
function retryUntil<T>(fn: () => Promise<T>, untilMs: number, pauseMs = 200): Promise<T> {
  return retry(fn, {
    deadlineMs: Math.max(0, untilMs - Date.now()),
    baseMs: pauseMs,
    maxMs: 4 * pauseMs,
    jitter: "equal",
  });
}

/** Delete cxlrc's streams and buckets (a reused cluster starts each scenario empty). */
async function wipe(nc: NatsConnection): Promise<void> {
  const jsm = await getJsm(nc, 3000);
  for (const name of [STREAMS.events.name, STREAMS.requests.name, ...KV_STREAMS]) {
    await retryUntil(async () => {
      try {
        await jsm.streams.delete(name);
      } catch (e) {
        if (!/not found/i.test((e as Error).message)) throw e;
      }
    }, Date.now() + 20_000);
  }
}

export async function runScenario(loaded: LoadedScenario, opts: RunOptions = {}): Promise<ChaosReport> {
  const { scenario: s, fleet } = loaded;
  const log = opts.log ?? (() => undefined);
  const tStart = performance.now();
  const plan = planScenario(s, fleet);
  const rng = createRng(s.seed ^ 0x5eed);
  const devices = fleetDevices(fleet);

  // ------------------------------------------------------------------------------------------------
  // Bus
  let cluster = opts.cluster;
  const ownCluster = !cluster;
  if (cluster && cluster.size !== s.cluster.size) {
    throw new Error(`scenario wants ${s.cluster.size} NATS node(s), the given cluster has ${cluster.size}`);
  }
  cluster ??= await startCluster(s.cluster.size, { clusterName: "cxlrc-chaos" });
  const c = cluster;
  const tCluster = performance.now();
  let nc: NatsConnection | null = null;
  const hosts = createHosts({
    fleet,
    servers: c.urls,
    timings: s.timings,
    agentTimeouts: s.agentTimeouts,
    log: silentLogger,
    // Through relays only when a fault freezes or cuts off an agent (hosts.ts): other runs connect as before.
    relayed: plan.faults.some(
      (f) => f.target.agent !== undefined && (f.action === "freeze" || f.action === "partition"),
    ),
  });
  let driver: FaultDriver | null = null;
  const coordinators = createCoordinators({
    count: s.coordinators.count,
    servers: c.urls,
    leaseTtlMs: s.coordinators.leaseTtlMs,
    replicas: s.cluster.size,
    recoveryIntervalMs: s.coordinators.recoveryIntervalMs,
    ackWaitMs: s.coordinators.ackWaitMs,
    policy: { ...CHAOS_POLICY, ...s.coordinators.policy },
    logLevel: s.coordinators.logLevel,
    // Through relays only when a fault cuts a coordinator off (coordinators.ts).
    relayed: plan.faults.some((f) => f.target.coordinator !== undefined && f.action === "partition"),
    ...(opts.coordinatorLog ? { logSink: opts.coordinatorLog } : {}),
    onStep: (co, step) => driver?.onStep(co, step) ?? Promise.resolve(),
  });

  try {
    await c.waitReady();
    nc = await c.connect("cxlrc-chaos runner");
    const bus = nc;
    if (!ownCluster) await wipe(bus);
    const jsm = await getJsm(bus, 3000);
    await ensureStreams(jsm, { replicas: s.cluster.size, readyTimeoutMs: 30_000 });
    const js = jetstream(bus, { timeout: 3000 });
    const recorder = await startRecorder(bus, js, jsm);

    // ----------------------------------------------------------------------------------------------
    // Hosts, coordinators
    await Promise.all([...hosts.values()].map((h) => h.start()));
    const baseline = new Map<string, { flr: number; cxlReset: number; conventionalReset: number }>();
    const driversAtStart = new Map<string, string | null>();
    for (const h of hosts.values()) {
      for (const f of await h.sim.listFunctions()) {
        if (f.headerType === 0) driversAtStart.set(deviceKey(h.name, f.bdf), f.driver);
      }
    }
    for (const d of devices) {
      const k = hosts.get(d.host)!.sim.counters(d.bdf);
      baseline.set(deviceKey(d.host, d.bdf), {
        flr: k.flr,
        cxlReset: k.cxlReset,
        conventionalReset: k.conventionalReset,
      });
    }
    await Promise.all(coordinators.map((co) => co.start()));
    const t0 = performance.now();
    log(
      `started: ${c.size} NATS node(s), ${hosts.size} agents, ${coordinators.length} coordinators in ${Math.round(t0 - tCluster)} ms`,
    );

    const kvm = new Kvm(js);
    let imagesKv: KV | null = null;
    const images = async () => {
      imagesKv ??= await kvm.open(BUCKETS.images);
      return imagesKv;
    };

    // Live image check at every full reset: the request's persisted image revision is in KV.
    const liveImageChecks: LiveImageCheck[] = [];
    const liveChecks = new Set<Promise<void>>();
    const persisted = new Map<string, { key: string; revision: number }>();
    const terminal = new Map<string, string>();
    const afterWaiters = new Map<string, Array<() => void>>();
    recorder.onStored((r: RecordedEvent) => {
      const e = r.event;
      if (spokenBy(r) !== "coordinator" || !e.requestId) return;
      if (isTerminal(e) && !terminal.has(e.requestId)) {
        terminal.set(e.requestId, e.kind);
        for (const w of afterWaiters.get(e.requestId) ?? []) w();
        afterWaiters.delete(e.requestId);
      }
      if (e.kind === "image.persisted") {
        const img = (e.data as { image?: { key?: string; revision?: number } }).image;
        if (img?.key && typeof img.revision === "number")
          persisted.set(e.requestId, { key: img.key, revision: img.revision });
      }
      if (e.kind === "reset.started" && e.bdf && (e.data as { scope?: unknown }).scope === "full") {
        const requestId = e.requestId;
        const ref = persisted.get(requestId);
        const host = e.host;
        const bdf = e.bdf;
        const p = (async () => {
          if (!ref) {
            liveImageChecks.push({
              requestId,
              host,
              bdf,
              ok: false,
              message: "reset started with no image.persisted before it",
            });
            return;
          }
          try {
            const entry = await retryUntil(
              async () => (await images()).get(ref.key, { revision: ref.revision }),
              // A restarted nats-server 2.9.10 node may not serve JetStream for 10-15 s, and a stream then
              // elects a leader: no answer for a while is not an answer (only "not there" is).
              Date.now() + IMAGE_READ_BACK_MS,
              250,
            );
            const rec = entry?.operation === "PUT" ? entry.json<ImageRecord>() : null;
            liveImageChecks.push({
              requestId,
              host,
              bdf,
              ok: rec !== null && rec.requestId === requestId,
              message: rec
                ? `image ${ref.key}@${ref.revision} belongs to ${rec.requestId ?? "?"}, not ${requestId}`
                : `reset started but image ${ref.key}@${ref.revision} is not in the store`,
            });
          } catch (err) {
            liveImageChecks.push({
              requestId,
              host,
              bdf,
              ok: false,
              message: `image ${ref.key}@${ref.revision} could not be read back for ${IMAGE_READ_BACK_MS / 1000} s: ${(err as Error).message}`,
            });
          }
        })();
        liveChecks.add(p);
        void p.finally(() => liveChecks.delete(p));
      }
    });

    // ----------------------------------------------------------------------------------------------
    // Faults and requests
    driver = startFaultDriver({
      faults: plan.faults,
      cluster: c,
      coordinators,
      hosts,
      devices,
      recorder,
      nc: bus,
      rng,
      t0,
      log,
    });
    const sent = new Map<string, boolean>();
    const runDeadline = Date.now() + s.deadlineMs - Math.round(performance.now() - t0);
    const send = async (q: RequestSpec) => {
      const body = {
        requestId: q.requestId,
        host: q.host,
        bdf: q.bdf,
        scope: q.scope,
        allowEscalation: q.allowEscalation,
        memClear: q.memClear,
        reason: q.reason,
        dryRun: q.dryRun,
        ...(q.method ? { method: q.method } : {}),
      };
      try {
        await retryUntil(
          () => js.publish(subjects.request(q.host), encodeJson(body), { msgID: q.requestId }),
          runDeadline,
          250,
        );
        sent.set(q.requestId, true);
      } catch {
        sent.set(q.requestId, false);
      }
    };
    const sending = new Set<Promise<void>>();
    const timers: NodeJS.Timeout[] = [];
    const schedule = (q: RequestSpec, fromMs: number) => {
      const t = setTimeout(
        () => {
          const p = send(q);
          sending.add(p);
          void p.finally(() => sending.delete(p));
        },
        Math.max(0, fromMs + q.at - performance.now()),
      );
      timers.push(t);
    };
    for (const q of plan.requests) {
      if (q.after === undefined) schedule(q, t0);
      else {
        const list = afterWaiters.get(q.after) ?? [];
        list.push(() => schedule(q, performance.now()));
        afterWaiters.set(q.after, list);
      }
    }

    // ----------------------------------------------------------------------------------------------
    // Run until every request ended (and every timed fault fired), or the settle moment; then settle and
    // wait until the fleet is at rest.
    const settleAt = t0 + (s.settleAtMs ?? Math.round(s.deadlineMs * 0.6));
    const endAt = t0 + s.deadlineMs;
    const allEnded = () =>
      plan.requests.every(
        (q) => sent.has(q.requestId) && (!sent.get(q.requestId) || terminal.has(q.requestId)),
      );
    while (performance.now() < settleAt && !(allEnded() && driver.idle() && sending.size === 0))
      await sleep(100);
    const tSettle = performance.now();
    log(`settling at ${Math.round(tSettle - t0)} ms: bringing back whatever is down`);
    await driver.settle();
    await c.waitReady(20_000).catch(() => undefined);

    /** What still keeps the fleet from rest (empty when at rest). */
    const unrest: string[] = [];
    const atRest = async (): Promise<boolean> => {
      unrest.length = 0;
      const open = plan.requests.filter((q) => sent.get(q.requestId) === true && !terminal.has(q.requestId));
      if (open.length > 0) {
        unrest.push(
          `${open.length} request(s) without an outcome: ${open
            .slice(0, 10)
            .map((q) => q.requestId)
            .join(", ")}`,
        );
      }
      if (sending.size > 0) unrest.push(`${sending.size} request(s) still being sent`);
      try {
        const ci = await jsm.consumers.info(STREAMS.requests.name, CONSUMER_NAME);
        if (ci.num_pending + ci.num_ack_pending > 0) {
          unrest.push(
            `request stream: ${ci.num_pending} pending, ${ci.num_ack_pending} awaiting acknowledgement (redelivered ${ci.num_redelivered})`,
          );
        }
        const actors = await kvm.open(BUCKETS.actors);
        const busy: string[] = [];
        // The stream's subjects in one answer (kv.keys() streams for as long as the bucket is being written).
        const prefix = `$KV.${BUCKETS.actors}.`;
        const info = await jsm.streams.info(`KV_${BUCKETS.actors}`, { subjects_filter: `${prefix}>` });
        const keys = Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
        for (const key of keys) {
          const e = await actors.get(key);
          if (e?.operation !== "PUT" || key === FLEET_KEY) continue;
          const a = e.json<ActorRecord>();
          if (a.active) busy.push(`${key} ${a.state} (owner ${a.owner})`);
        }
        if (busy.length > 0)
          unrest.push(`${busy.length} device(s) mid-operation: ${busy.slice(0, 10).join(", ")}`);
        for (const co of coordinators) {
          const held = co.pendingSteps().filter((x) => x.waitingMs > 5000);
          if (held.length > 0) {
            unrest.push(
              `coordinator ${co.id} (${co.state}) waits at ${held.map((x) => `${x.phase}/${x.point} of ${x.requestId ?? "-"} for ${x.waitingMs} ms`).join(", ")}`,
            );
          }
        }
      } catch (e) {
        unrest.push(`store not readable: ${(e as Error).message}`);
      }
      return unrest.length === 0 && plan.requests.every((q) => sent.has(q.requestId));
    };
    let complete = false;
    while (performance.now() < endAt) {
      if (await atRest()) {
        complete = true;
        break;
      }
      await sleep(250);
    }
    for (const t of timers) clearTimeout(t);
    // Requests never sent (their `after` never ended, or the deadline came first) count as not sent.
    for (const q of plan.requests) if (!sent.has(q.requestId)) sent.set(q.requestId, false);
    const tChecks = performance.now();
    log(
      `${complete ? "at rest" : "deadline reached"} at ${Math.round(tChecks - t0)} ms: checking invariants`,
    );

    // ----------------------------------------------------------------------------------------------
    // Gather: events, images, devices, counters
    await waitAtMost(Promise.allSettled([...liveChecks]), IMAGE_READ_BACK_MS + 5000);
    const recordComplete = await recorder.catchUp(jsm, 30_000);
    await recorder.stop();
    const events = [...recorder.events];
    if (opts.eventsFile) {
      writeFileSync(
        opts.eventsFile,
        `${events.map((e) => JSON.stringify({ seq: e.seq, ...e.event })).join("\n")}\n`,
      );
    }

    const imagesByKey = new Map<string, ImageRecord | null>();
    const revisions = new Map<string, boolean>();
    const readings: FunctionReading[] = [];
    const ctxFor = (host: string) => ({
      backend: hosts.get(host)!.sim,
      host,
      log: silentLogger,
      emit: () => undefined,
      timeouts: agentTimeouts(s.agentTimeouts),
      agentVersion: "chaos",
    });
    const kvUntil = Date.now() + 20_000;
    for (const h of fleet.hosts) {
      for (const dev of h.devices) {
        const fns = [
          dev.bdf,
          ...dev.functions.filter((f) => f.cxl).map((f) => `${dev.bdf.slice(0, -1)}${f.fn}`),
        ];
        for (const bdf of fns) {
          const key = deviceKey(h.name, bdf);
          // Unreadable (the store did not answer) stays unset: the checks say so instead of "lost".
          const entry = await retryUntil(async () => (await images()).get(key), kvUntil).catch(
            () => undefined,
          );
          if (entry !== undefined)
            imagesByKey.set(key, entry?.operation === "PUT" ? entry.json<ImageRecord>() : null);
          // The device as it is now (a not-ready window after a late reset is waited out).
          let reading: FunctionReading = {
            host: h.name,
            bdf,
            device: functionZero(bdf),
            readable: false,
            decoders: [],
          };
          try {
            const p = await retry(() => operations.probe(ctxFor(h.name), { bdf }), {
              attempts: 20,
              baseMs: 100,
              maxMs: 200,
              jitter: "equal",
            });
            reading = {
              ...reading,
              readable: true,
              decoders: p.decoders.map((x) => ({
                index: x.index,
                committed: x.committed,
                base: BigInt(x.base),
                size: BigInt(x.size),
              })),
            };
          } catch (e) {
            reading.error = (e as Error).message;
          }
          readings.push(reading);
        }
      }
    }
    for (const ref of persisted.values()) {
      const entry = await retryUntil(
        async () => (await images()).get(ref.key, { revision: ref.revision }),
        kvUntil,
      ).catch(() => null);
      revisions.set(`${ref.key}@${ref.revision}`, entry?.operation === "PUT" && entry.key === ref.key);
    }
    const resets: ResetCount[] = devices.map((d) => {
      const now = hosts.get(d.host)!.sim.counters(d.bdf);
      const b = baseline.get(deviceKey(d.host, d.bdf))!;
      const detail = {
        flr: now.flr - b.flr,
        cxlReset: now.cxlReset - b.cxlReset,
        conventionalReset: now.conventionalReset - b.conventionalReset,
      };
      return {
        host: d.host,
        bdf: d.bdf,
        resets: detail.flr + detail.cxlReset + detail.conventionalReset,
        detail,
      };
    });

    const summary = checkChaosInvariants({
      events,
      requests: plan.requests.map((q) => ({ spec: q, submitted: sent.get(q.requestId) === true })),
      resets,
      images: imagesByKey,
      imageRevisions: revisions,
      liveImageChecks,
      readings,
    });
    summary.checks++;
    summary.byInvariant["event-record"] = { checks: 1, violations: recordComplete ? 0 : 1 };
    // The driver a reset took is back (issue #17), unless policy keeps a quarantined device unbound.
    const keepUnbound = s.coordinators.policy.quarantineUnbound === true;
    let driverChecks = 0;
    let driverViolations = 0;
    for (const h of hosts.values()) {
      for (const f of await h.sim.listFunctions()) {
        const key = deviceKey(h.name, f.bdf);
        if (!driversAtStart.has(key)) continue;
        driverChecks++;
        const was = driversAtStart.get(key) ?? null;
        if (f.driver === was) continue;
        const device = devices.find((d) => d.host === h.name && f.bdf.startsWith(d.bdf.slice(0, -1)));
        const last = device ? lastOutcomeOf(events, device.host, device.bdf) : null;
        if (keepUnbound && last === "quarantined" && f.driver === null) continue;
        driverViolations++;
        summary.violations.push({
          invariant: "driver-back",
          host: h.name,
          bdf: f.bdf,
          message: `${h.name} ${f.bdf} started bound to ${was ?? "no driver"} and ended bound to ${f.driver ?? "no driver"}`,
        });
      }
    }
    summary.checks += driverChecks;
    summary.byInvariant["driver-back"] = { checks: driverChecks, violations: driverViolations };
    if (!recordComplete) {
      summary.violations.push({
        invariant: "one-outcome",
        message: "the event stream could not be read to its end: the checks above saw only part of it",
      });
    }
    if (!complete) {
      summary.checks++;
      summary.byInvariant.complete = { checks: 1, violations: 1 };
      summary.violations.push({
        invariant: "one-outcome",
        message: `the fleet did not come to rest before the deadline (${s.deadlineMs} ms): ${unrest.join("; ") || "requests not sent"}`,
      });
    } else {
      summary.checks++;
      summary.byInvariant.complete = { checks: 1, violations: 0 };
    }
    const tEnd = performance.now();

    const outcomes: Record<string, number> = {};
    for (const q of plan.requests) {
      const k = terminalKind(events, q.requestId) ?? "none";
      outcomes[k] = (outcomes[k] ?? 0) + 1;
    }
    const injected = driver.records.filter((r) => r.source === "scenario" || r.source === "random");
    const byAction: Record<string, number> = {};
    for (const r of injected.filter((x) => x.ok)) byAction[r.action] = (byAction[r.action] ?? 0) + 1;
    const sum = (k: keyof ResetCount["detail"]) => resets.reduce((a, r) => a + r.detail[k], 0);
    const report: ChaosReport = {
      scenario: s.name,
      seed: s.seed,
      ok: summary.violations.length === 0,
      cluster: { size: c.size },
      coordinators: {
        count: coordinators.length,
        starts: coordinators.reduce((a, co) => a + co.starts, 0),
        leaseTtlMs: s.coordinators.leaseTtlMs,
      },
      fleet: {
        hosts: fleet.hosts.length,
        devices: devices.length,
        agentStarts: [...hosts.values()].reduce((a, h) => a + h.starts, 0),
      },
      requests: {
        planned: plan.requests.length,
        sent: [...sent.values()].filter(Boolean).length,
        outcomes,
        complete,
        list: requestList(events, plan.requests),
      },
      resets: {
        total: resets.reduce((a, r) => a + r.resets, 0),
        flr: sum("flr"),
        cxlReset: sum("cxlReset"),
        conventionalReset: sum("conventionalReset"),
      },
      faults: {
        injected: injected.filter((r) => r.ok).length,
        failed: injected.filter((r) => !r.ok).length,
        byAction,
        unfired: driver.unfired().map((f) => f.name ?? `${f.action} on ${JSON.stringify(f.on)}`),
        log: [...driver.records],
      },
      invariants: {
        checks: summary.checks,
        violations: summary.violations.length,
        byInvariant: summary.byInvariant,
      },
      violations: summary.violations,
      events: {
        stored: events.length,
        coordinator: events.filter((e) => spokenBy(e) === "coordinator").length,
        agent: events.filter((e) => spokenBy(e) === "agent").length,
      },
      timings: {
        clusterReadyMs: Math.round(tCluster - tStart),
        startMs: Math.round(t0 - tCluster),
        runMs: Math.round(tSettle - t0),
        settleMs: Math.round(tChecks - tSettle),
        checkMs: Math.round(tEnd - tChecks),
        totalMs: 0,
      },
    };
    return report;
  } finally {
    driver?.stop();
    await Promise.allSettled(coordinators.map((co) => co.stop()));
    await Promise.allSettled([...hosts.values()].map((h) => h.stop()));
    await nc?.close().catch(() => undefined);
    if (ownCluster) await c.stop().catch(() => undefined);
  }
}

function terminalKind(events: readonly RecordedEvent[], requestId: string): string | null {
  for (const { event } of events) if (event.requestId === requestId && isTerminal(event)) return event.kind;
  return null;
}

/** Each request's first outcome, with the refusal reason or failure message. */
function requestList(
  events: readonly RecordedEvent[],
  requests: readonly RequestSpec[],
): ChaosReport["requests"]["list"] {
  const first = new Map<string, RecordedEvent["event"]>();
  for (const { event } of events) {
    if (event.requestId && isTerminal(event) && !first.has(event.requestId))
      first.set(event.requestId, event);
  }
  return requests.map((q) => {
    const e = first.get(q.requestId);
    const data = (e?.data ?? {}) as {
      refusal?: { reason?: string; message?: string };
      reason?: string;
      error?: { message?: string } | null;
      coordinator?: string;
    };
    const detail = data.refusal
      ? `${data.refusal.reason}: ${data.refusal.message ?? ""}`
      : e?.kind === "quarantined"
        ? `${data.reason ?? ""}${data.error?.message ? ` (${data.error.message})` : ""}`
        : (data.error?.message ?? "");
    return {
      requestId: q.requestId,
      host: q.host,
      bdf: q.bdf,
      scope: q.scope,
      outcome: e?.kind ?? "none",
      by: data.coordinator ?? null,
      detail,
    };
  });
}

/** Run and time the whole thing (totalMs includes stopping everything). */
export async function runScenarioTimed(loaded: LoadedScenario, opts: RunOptions = {}): Promise<ChaosReport> {
  const t = performance.now();
  // A run owns the nats-servers and coordinators it spawns: in a process that left SIGINT/SIGTERM/SIGHUP at
  // their default (`cxlrc chaos`), which would die without an 'exit' and orphan them, a signal stops them
  // and exits (shared/children.ts). A host program with signal handlers of its own keeps them.
  const releaseSignals = exitOnSignals({ onlyIfUnclaimed: true });
  try {
    const r = await runScenario(loaded, opts);
    r.timings.totalMs = Math.round(performance.now() - t);
    return r;
  } finally {
    releaseSignals();
  }
}

/** The last outcome the device's events announce (its rest decides whether its driver may stay off). */
function lastOutcomeOf(events: readonly RecordedEvent[], host: string, bdf: string): string | null {
  let last: string | null = null;
  for (const { event } of events) {
    if (event.host === host && event.bdf === bdf && isTerminal(event)) last = event.kind;
  }
  return last;
}
