// Check 2, over the bus: the whole product inside the guest. nats-server (JetStream, loopback only), the
// agent service on the sysfs backend, the coordinator; a fleet controller's reset request goes into the
// request stream, the coordinator plans (the model has no CXL Reset: a secondary bus reset at the root
// port), the agent saves, resets, restores and verifies on the real kernel, and the event stream shows it.
// The coordinator's methods are cxl/sbr/vfio; the kernel's own `reset` file is exercised by kernel-reset.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import type { JetStreamManager } from "@nats-io/jetstream";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectBus, ensureStreams, getJsm } from "../../../../shared/bus/client.ts";
import { EventEnvelope, encodeJson } from "../../../../shared/bus/codec.ts";
import type { ResetRequestInput } from "../../../../shared/bus/requests.ts";
import { STREAMS, subjects } from "../../../../shared/bus/subjects.ts";
import { silentLogger } from "../../../../shared/log.ts";
import { startAgent } from "../../../agent/service.ts";
import { startCoordinator } from "../../../coordinator/service.ts";
import type { Check } from "../check.ts";
import { deviceState, startClean } from "../device-state.ts";
import { commitDecoder, findHdm } from "../firmware.ts";
import { LAB_TIMEOUTS } from "../lab-context.ts";
import { decoderRange, onlyCxlDevice } from "./common.ts";

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
};
const OUTCOME_TIMEOUT_MS = 120_000;

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

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await gone;
}

/** Every event of one request in CXLRC_EVENTS, in stream order. */
async function eventsOf(jsm: JetStreamManager, requestId: string): Promise<EventEnvelope[]> {
  const info = await jsm.streams.info(STREAMS.events.name);
  const out: EventEnvelope[] = [];
  if (info.state.messages === 0) return out;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(STREAMS.events.name, { seq }).catch(() => null);
    if (!m) continue;
    const e = EventEnvelope.parse(m.json());
    if (e.requestId === requestId) out.push(e);
  }
  return out;
}

export const busReset: Check = {
  name: "bus-reset",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    rec.start = await startClean(lab, bdf, null);
    const range = decoderRange(0);
    rec.range = range;
    rec.firmware = await commitDecoder(lab.backend, await findHdm(lab.backend, bdf), 0, range);
    const nats = startNats();
    const conns: NatsConnection[] = [];
    const stops: (() => Promise<unknown>)[] = [];
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
      const request: ResetRequestInput = {
        requestId: "kernel-lab-sbr-1",
        host: HOST,
        bdf,
        scope: "full",
        method: "sbr",
        reason: "kernel lab: full-scope reset over the bus",
      };
      await jetstream(nc).publish(subjects.request(request.host), encodeJson(request), {
        msgID: request.requestId,
      });
      rec.outcome = await coordinator.waitForOutcome(request.requestId, OUTCOME_TIMEOUT_MS);
      rec.events = (await eventsOf(jsm, request.requestId)).map((e) => ({
        source: e.source,
        kind: e.kind,
        bdf: e.bdf,
        data: e.data,
      }));
      rec.final = await deviceState(lab, bdf);
    } finally {
      for (const s of stops.reverse()) await s().catch(() => undefined);
      for (const c of conns) await c.close().catch(() => undefined);
      await stop(nats);
      lab.takeEvents();
    }
  },
};
