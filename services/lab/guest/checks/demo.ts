// `cxlrc demo --backend kernel`, the guest side: the demo's scenarios (services/demo/scenarios.ts,
// kernelScenarios) on a real kernel, reported to the host line by line as they happen (lab.report), for the
// host to render live and sum up (services/demo/kernel.ts).
// 1. The seed's bug: firmware commits decoder 0 (cxl_pci unbound: the BAR must be mappable), then the
//    kernel's own reset, `echo 1 > reset` (method bus): the kernel restores the PCI state, the HDM decoders
//    read back wiped.
// 2. cxlrc over the bus, as in production: nats-server, the agent service on the sysfs backend and the
//    coordinator in the guest; firmware commits the decoders again; each bus scenario is submitted like the
//    demo submits it (cxlrc.ctl.submit), followed through the event stream (every event is passed on as it
//    arrives), and the device is read back when it ended.
import type { NatsConnection } from "@nats-io/transport-node";
import { connectBus, ensureStreams, getJsm } from "../../../../shared/bus/client.ts";
import { subjects } from "../../../../shared/bus/subjects.ts";
import { describeError } from "../../../../shared/errors.ts";
import { silentLogger } from "../../../../shared/log.ts";
import { operations } from "../../../agent/ops/index.ts";
import { startAgent } from "../../../agent/service.ts";
import { control } from "../../../cli/bus.ts";
import { type EventFeed, eventFilter, nextEventSeq, openEvents } from "../../../cli/events.ts";
import { decisionsOf } from "../../../cli/format/plan.ts";
import { applyEvent, newTracked, type TrackedRequest } from "../../../cli/track.ts";
import { startCoordinator } from "../../../coordinator/service.ts";
import { kernelScenarios, type Scenario } from "../../../demo/scenarios.ts";
import type { Check, Rec } from "../check.ts";
import { deviceState } from "../device-state.ts";
import { commitDecoder, findHdm } from "../firmware.ts";
import { LAB_TIMEOUTS, type LabContext } from "../lab-context.ts";
import { pciDir, resetMethodsOf, writeAttr } from "../sysfs-view.ts";
import { HOST, LAB_POLICY, NATS_URL, startNats, stop } from "./bus.ts";
import { cxlDevices, decoderRange } from "./common.ts";

/** One scenario's outcome must come within this (TCG: a full reset takes a few seconds). */
const SCENARIO_TIMEOUT_MS = 90_000;

/** Firmware's part at boot: every device unbound from cxl_pci, decoder 0 committed, side by side. */
async function firmwareCommits(lab: LabContext, devices: string[]): Promise<void> {
  for (const [i, bdf] of devices.entries()) {
    await operations.bind(lab.ctx, { bdf, driver: null });
    await commitDecoder(lab.backend, await findHdm(lab.backend, bdf), 0, decoderRange(i));
  }
}

async function seedBug(lab: LabContext, s: Scenario, rec: Rec): Promise<void> {
  const { bdf } = s;
  const resetMethod = resetMethodsOf(bdf)[0];
  if (resetMethod === undefined) throw new Error(`${bdf}: the kernel offers no reset method`);
  const before = await deviceState(lab, bdf);
  const startMs = Date.now();
  writeAttr(`${pciDir(bdf)}/reset`, "1");
  const endMs = Date.now();
  const after = await deviceState(lab, bdf);
  rec.seedBug = { bdf, resetMethod, before, after };
  lab.report({
    t: "demo",
    kind: "seed-bug",
    scenario: s,
    resetMethod,
    startMs,
    endMs,
    before,
    after,
  });
}

interface Bus {
  nc: NatsConnection;
  feed: EventFeed;
  pump: Promise<void>;
  /** Requests followed, by id; the waiter of each wakes when its outcome event arrives. */
  tracked: Map<string, TrackedRequest>;
  waiters: Map<string, () => void>;
}

/** Submits one scenario, follows it to its outcome and reads the device back. */
async function busScenario(lab: LabContext, bus: Bus, s: Scenario, n: number): Promise<TrackedRequest> {
  const t = newTracked(`kernel-demo-${n}-${s.id}`, s.host, s.bdf);
  t.scope = s.request.scope;
  t.method = s.request.method ?? null;
  t.phase = "submitted";
  t.startMs = Date.now();
  bus.tracked.set(t.requestId, t);
  lab.report({ t: "demo", kind: "scenario", scenario: s, requestId: t.requestId });
  const done = new Promise<void>((resolve) => bus.waiters.set(t.requestId, resolve));
  try {
    const reply = await control(bus.nc, subjects.submit(s.host), {
      requestId: t.requestId,
      host: s.host,
      bdf: s.bdf,
      reason: `cxlrc demo --backend kernel: ${s.title}`,
      requester: "cxlrc-demo",
      ...s.request,
    });
    const [decision] = decisionsOf(reply, { requestId: t.requestId, bdf: s.bdf });
    if (decision?.kind === "refused" || decision?.kind === "rejected") {
      // The refusal is the answer (its event may follow).
      t.outcome = decision.kind;
      t.reason = decision.kind === "refused" ? decision.refusal.reason : decision.message;
      t.endMs = Date.now();
    } else {
      const timer = setTimeout(() => bus.waiters.get(t.requestId)?.(), SCENARIO_TIMEOUT_MS);
      await done;
      clearTimeout(timer);
      if (t.outcome === null) t.reason = `no outcome within ${SCENARIO_TIMEOUT_MS / 1000} s`;
    }
  } catch (e) {
    t.outcome = "failed";
    t.reason = describeError(e);
    t.endMs = Date.now();
  }
  const readback = await deviceState(lab, s.bdf);
  lab.report({ t: "demo", kind: "result", id: s.id, tracked: t, readback });
  return t;
}

export const demo: Check = {
  name: "demo",
  async run(lab, rec) {
    const devices = await cxlDevices(lab);
    if (devices.length === 0) throw new Error("no CXL device in the guest");
    rec.devices = devices;
    const scenarios = kernelScenarios(HOST, devices);
    const say = (text: string) => lab.report({ t: "demo", kind: "step", text });

    say(
      `firmware's part: cxl_pci unbound, HDM decoder 0 committed on ${devices.join(", ")} (256 MiB in the CXL window)`,
    );
    await firmwareCommits(lab, devices);
    for (const s of scenarios.filter((x) => x.via === "sysfs")) await seedBug(lab, s, rec);

    say("nats-server, the agent (sysfs backend) and the coordinator start inside the guest");
    await firmwareCommits(lab, devices);
    const nats = startNats();
    const conns: NatsConnection[] = [];
    const stops: (() => Promise<unknown>)[] = [];
    let feed: EventFeed | undefined;
    try {
      const connect = async (name: string) => {
        const nc = await connectBus({ servers: NATS_URL, name, log: silentLogger, reconnectWaitMs: 100 });
        conns.push(nc);
        return nc;
      };
      const nc = await connect("cxlrc demo");
      await ensureStreams(await getJsm(nc));
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
        id: "kernel-demo",
        policy: LAB_POLICY,
        hosts: [HOST],
      });
      stops.push(() => coordinator.stop());

      // One feed for every scenario, opened before the first request so that no event is missed.
      feed = await openEvents(nc, eventFilter(), { from: "seq", seq: await nextEventSeq(nc) });
      const bus: Bus = { nc, feed, pump: Promise.resolve(), tracked: new Map(), waiters: new Map() };
      bus.pump = (async () => {
        for await (const e of bus.feed) {
          const t = e.event.requestId ? bus.tracked.get(e.event.requestId) : undefined;
          if (!t) continue;
          lab.report({ t: "demo", kind: "event", subject: e.subject, event: e.event });
          if (applyEvent(t, e) && t.outcome !== null) bus.waiters.get(t.requestId)?.();
        }
      })();
      say(`bus up at ${NATS_URL} (in the guest): ${scenarios.length - 1} request(s) follow`);
      const results: TrackedRequest[] = [];
      for (const [i, s] of scenarios.entries()) {
        if (s.via === "sysfs") continue;
        results.push(await busScenario(lab, bus, s, i));
      }
      rec.results = results.map((t) => ({ requestId: t.requestId, outcome: t.outcome, reason: t.reason }));
      feed.stop();
      await bus.pump.catch(() => undefined);
    } finally {
      feed?.stop();
      for (const s of stops.reverse()) await s().catch(() => undefined);
      for (const c of conns) await c.close().catch(() => undefined);
      await stop(nats);
      lab.takeEvents();
    }
  },
};
