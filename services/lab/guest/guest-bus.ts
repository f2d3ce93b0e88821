// The whole product inside the guest, as production runs it: nats-server (JetStream, loopback only), the
// agent service on the lab's sysfs backend and the coordinator. Started once per boot, on first use, and
// shared by every check that goes through the bus and by the kernel demo; stopped when the scenario is over.
// One event feed, opened before the first request, follows every request to its outcome: no event is missed.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  type EventFeed,
  eventFilter,
  type FeedEvent,
  nextEventSeq,
  openEvents,
} from "../../../client/feed.ts";
import { applyEvent, newTracked, type TrackedRequest } from "../../../client/track.ts";
import { connectBus, ensureStreams, getJsm } from "../../../shared/bus/client.ts";
import type { ResetRequestInput } from "../../../shared/bus/requests.ts";
import { subjects } from "../../../shared/bus/subjects.ts";
import { describeError } from "../../../shared/errors.ts";
import { silentLogger } from "../../../shared/log.ts";
import { startAgent } from "../../agent/service.ts";
import { control } from "../../cli/bus.ts";
import { type Decision, decisionsOf } from "../../cli/format/plan.ts";
import { type CoordinatorHandle, startCoordinator } from "../../coordinator/service.ts";
import { LAB_TIMEOUTS, type LabContext } from "./lab-context.ts";

export const HOST = "kernel-lab";
const NATS_PORT = 4222;
export const NATS_URL = `nats://127.0.0.1:${NATS_PORT}`;
/** Under TCG every agent call is several times slower than on a host: room in the policy's timeouts. */
export const LAB_POLICY = {
  agentCallTimeoutMs: 20_000,
  verifyTimeoutMs: 30_000,
  imagePersistTimeoutMs: 20_000,
  leaseTimeoutMs: 20_000,
  deviceReadyTimeoutMs: 10_000,
  commitTimeoutMs: 500,
  // One boot resets the same device several times within a minute, on purpose: no attempt budget here.
  maxAttemptsPerWindow: 100,
};

function natsServerPath(): string {
  for (const p of ["/usr/sbin/nats-server", "/usr/bin/nats-server"]) if (existsSync(p)) return p;
  throw new Error("nats-server is not in the initramfs (install the nats-server package on the host)");
}

export function startNats(): ChildProcess {
  mkdirSync("/tmp/nats-js", { recursive: true });
  // JetStream sizes its file store from the free space of /tmp (a tmpfs of half the guest's RAM), less than
  // the 1 GiB the events stream reserves: declare the limit instead (nothing near it is written).
  writeFileSync(
    "/tmp/nats.conf",
    `listen: "127.0.0.1:${NATS_PORT}"\njetstream {\n  store_dir: "/tmp/nats-js"\n  max_file_store: 8GB\n  max_memory_store: 64MB\n}\n`,
  );
  return spawn(natsServerPath(), ["-c", "/tmp/nats.conf"], { stdio: "ignore" });
}

/** SIGKILL and wait for the exit (nothing of a guest process needs a graceful end). */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await gone;
}

/** One request's outcome must come within this (TCG: a full reset with a driver hand-over takes seconds). */
const OUTCOME_TIMEOUT_MS = 90_000;
/**
 * The submit is answered once the device's actor has taken the request (lease, planning probe, decision): under
 * TCG on a loaded host that is one agent call of up to LAB_POLICY.agentCallTimeoutMs and more, not the CLI's
 * 10 s (a CI run with two guests booting at once had every submit of a demo time out there, and the next
 * request found the first still running).
 */
const SUBMIT_TIMEOUT_MS = 2 * LAB_POLICY.agentCallTimeoutMs + LAB_POLICY.leaseTimeoutMs;

/** An event of a request as a check records it. */
export interface BusEvent {
  /** "coordinator" or "agent": whose subject space it came on. */
  source: string;
  kind: string;
  bdf: string | null;
  data: Record<string, unknown>;
}

export interface BusRun {
  requestId: string;
  /** The request followed through its events (outcome, reason, phases); a refusal on submit included. */
  tracked: TrackedRequest;
  /** What the coordinator answered to the submit: the plan, or the refusal with its message and gates. */
  decision: Decision | null;
  /** Every event of the request, coordinator's and agent's, in the order they arrived. */
  events: BusEvent[];
}

/** A reset request as a fleet controller submits it (requestId, host and requester are filled in). */
export type BusRequest = Pick<ResetRequestInput, "bdf" | "scope" | "reason"> &
  Partial<Pick<ResetRequestInput, "method" | "allowEscalation" | "memClear">>;

export interface GuestBus {
  nc: NatsConnection;
  jsm: JetStreamManager;
  coordinator: CoordinatorHandle;
  /**
   * Submits on cxlrc.ctl.submit and follows the request to its outcome (a refusal on submit is one); each of
   * its events goes to onEvent as it arrives.
   */
  submit(requestId: string, req: BusRequest, onEvent?: (e: FeedEvent) => void): Promise<BusRun>;
}

interface Following {
  run: BusRun;
  onEvent?: ((e: FeedEvent) => void) | undefined;
  wake: () => void;
}

async function startGuestBus(lab: LabContext): Promise<{ bus: GuestBus; close: () => Promise<void> }> {
  const nats: ChildProcess = startNats();
  const conns: NatsConnection[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  let feed: EventFeed | undefined;
  let pump: Promise<void> = Promise.resolve();
  const close = async () => {
    feed?.stop();
    await pump.catch(() => undefined);
    for (const s of stops.reverse()) await s().catch(() => undefined);
    for (const c of conns) await c.close().catch(() => undefined);
    await stop(nats);
  };
  try {
    const connect = async (name: string) => {
      const nc = await connectBus({ servers: NATS_URL, name, log: silentLogger, reconnectWaitMs: 100 });
      conns.push(nc);
      return nc;
    };
    const nc = await connect("kernel-lab");
    const jsm = await getJsm(nc);
    await ensureStreams(jsm);
    const agent = await startAgent({
      nc: await connect("agent"),
      host: HOST,
      backend: lab.backend,
      timeouts: LAB_TIMEOUTS,
      heartbeatMs: 60_000,
    });
    stops.push(() => agent.stop());
    const coordinator = await startCoordinator({
      nc: await connect("coordinator"),
      id: "kernel-lab",
      policy: LAB_POLICY,
      hosts: [HOST],
    });
    stops.push(() => coordinator.stop());

    const following = new Map<string, Following>();
    const openFeed = await openEvents(nc, eventFilter(), { from: "seq", seq: await nextEventSeq(nc) });
    feed = openFeed;
    pump = (async () => {
      for await (const e of openFeed) {
        const f = e.event.requestId ? following.get(e.event.requestId) : undefined;
        if (!f) continue;
        f.run.events.push({
          source: e.origin.source,
          kind: e.event.kind,
          bdf: e.event.bdf ?? null,
          data: e.event.data,
        });
        f.onEvent?.(e);
        if (applyEvent(f.run.tracked, e) && f.run.tracked.outcome !== null) f.wake();
      }
    })();

    const bus: GuestBus = {
      nc,
      jsm,
      coordinator,
      async submit(requestId, req, onEvent) {
        const bdf = req.bdf ?? "";
        const t = newTracked(requestId, HOST, bdf);
        t.scope = req.scope;
        t.method = req.method ?? null;
        t.phase = "submitted";
        t.startMs = Date.now();
        const run: BusRun = { requestId, tracked: t, decision: null, events: [] };
        let wake = () => {};
        const ended = new Promise<void>((resolve) => {
          wake = resolve;
        });
        following.set(requestId, { run, onEvent, wake });
        try {
          const reply = await control(
            nc,
            subjects.submit(HOST),
            { ...req, requestId, host: HOST, requester: "cxlrc-kernel-lab" },
            SUBMIT_TIMEOUT_MS,
          );
          const [decision] = decisionsOf(reply, { requestId, bdf });
          run.decision = decision ?? null;
          if (decision?.kind === "refused" || decision?.kind === "rejected") {
            // The refusal is the answer; its event may follow, or may not.
            t.outcome = decision.kind;
            t.reason = decision.kind === "refused" ? decision.refusal.reason : decision.message;
            t.endMs = Date.now();
          } else {
            const timer = setTimeout(wake, OUTCOME_TIMEOUT_MS);
            await ended;
            clearTimeout(timer);
            if (t.outcome === null) t.reason = `no outcome within ${OUTCOME_TIMEOUT_MS / 1000} s`;
          }
        } catch (e) {
          t.outcome = "failed";
          t.reason = describeError(e);
          t.endMs = Date.now();
        }
        return run;
      },
    };
    return { bus, close };
  } catch (e) {
    await close();
    throw e;
  }
}

const started = new WeakMap<LabContext, Promise<GuestBus>>();

/** The lab's bus, started on first use and stopped when the scenario is over (lab.close). */
export function guestBus(lab: LabContext): Promise<GuestBus> {
  let bus = started.get(lab);
  if (!bus) {
    bus = startGuestBus(lab).then(({ bus, close }) => {
      lab.atClose(close);
      return bus;
    });
    started.set(lab, bus);
  }
  return bus;
}
