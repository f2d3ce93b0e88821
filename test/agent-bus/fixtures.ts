// Shared setup for the agent-over-NATS tests: a real nats-server, the agent on its own connection, a
// client connection, and small fakes (a backend with a few functions, operations with gates and counters)
// for the bus mechanics that must not depend on hardware timing.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  type AgentHandle,
  type OpContext,
  type Operations,
  type StartAgentOptions,
  startAgent,
} from "../../services/agent/service.ts";
import type {
  InventoryBridge,
  InventoryDevice,
  InventoryResult,
  ProbeResult,
  SaveResult,
} from "../../shared/bus/agent-contract.ts";
import { connectBus, ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { EventEnvelope } from "../../shared/bus/codec.ts";
import { STREAMS } from "../../shared/bus/subjects.ts";
import { decodeConfigSpace } from "../../shared/cxl/decode.ts";
import type { HardwareBackend, PciFunctionInfo } from "../../shared/hw/backend.ts";
import { realClock } from "../../shared/hw/backend.ts";
import { sealImage } from "../../shared/image/checksum.ts";
import { IMAGE_VERSION } from "../../shared/image/schema.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, type StartNatsOptions, startNats } from "../../shared/natsd/server.ts";

export interface Env {
  server: NatsServerHandle;
  /** The agent's connection. */
  agentNc: NatsConnection;
  /** The test's (coordinator's) connection. */
  nc: NatsConnection;
  jsm: JetStreamManager;
  agent: AgentHandle;
  close(): Promise<void>;
}

export async function startEnv(
  agentOpts: Omit<StartAgentOptions, "nc">,
  natsOpts: StartNatsOptions & { streams?: boolean } = {},
): Promise<Env> {
  const server = await startNats(natsOpts);
  const agentNc = await connectBus({
    servers: server.url,
    name: `agent ${agentOpts.host}`,
    log: silentLogger,
    reconnectWaitMs: 50,
    reconnectMaxWaitMs: 250,
  });
  const nc = await connectBus({
    servers: server.url,
    name: "test client",
    log: silentLogger,
    reconnectWaitMs: 50,
    reconnectMaxWaitMs: 250,
  });
  const jsm = await getJsm(nc);
  if (natsOpts.streams !== false && natsOpts.jetstream !== false) await ensureStreams(jsm);
  const agent = await startAgent({ heartbeatMs: 60_000, ...agentOpts, nc: agentNc });
  return {
    server,
    agentNc,
    nc,
    jsm,
    agent,
    async close() {
      await agent.stop().catch(() => undefined);
      await agentNc.close().catch(() => undefined);
      await nc.close().catch(() => undefined);
      await server.stop();
    },
  };
}

/** Every message in a stream, decoded as event envelopes (small test streams only). */
export async function readEvents(
  jsm: JetStreamManager,
  stream: string = STREAMS.events.name,
): Promise<Array<{ seq: number; subject: string; event: EventEnvelope }>> {
  const info = await jsm.streams.info(stream);
  const out: Array<{ seq: number; subject: string; event: EventEnvelope }> = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (!m) continue;
    out.push({ seq, subject: m.subject, event: EventEnvelope.parse(m.json()) });
  }
  return out;
}

export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Poll a condition on real time (used only to wait for something to happen, never to assert timing). */
export async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  maxMs = 10_000,
): Promise<void> {
  const end = Date.now() + maxMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const DEV_A = "0000:01:00.0";
export const DEV_B = "0000:02:00.0";

function fn(bdf: string, parent: string | null, headerType: 0 | 1): PciFunctionInfo {
  return {
    bdf,
    vendorId: 0x8086,
    deviceId: 0x0d93,
    classCode: 0x050210,
    headerType,
    multiFunction: false,
    parent,
    driver: null,
    iommuGroup: null,
    resetMethods: ["flr"],
  };
}

/** A backend that only lists functions (the fake operations never touch registers) and keeps faults. */
export function fakeBackend(): HardwareBackend & {
  faults: {
    set(b: string, f: unknown): void;
    clear(b: string, n?: string): void;
    list(b: string): unknown[];
  };
} {
  const faults = new Map<string, Array<Record<string, unknown>>>();
  return {
    kind: "sim",
    clock: realClock,
    capabilities: { kernelReset: false, vfioReset: false, bind: false, faults: true },
    listFunctions: async () => [
      fn("0000:00:01.0", null, 1),
      fn(DEV_A, "0000:00:01.0", 0),
      fn("0000:00:02.0", null, 1),
      fn(DEV_B, "0000:00:02.0", 0),
    ],
    configRead: async () => 0xffffffff,
    configWrite: async () => undefined,
    configReadAll: async () => new Uint8Array(256).fill(0xff),
    mmioRead32: async () => 0xffffffff,
    mmioWrite32: async () => undefined,
    holders: async () => [],
    close: async () => undefined,
    faults: {
      set(b, f) {
        if (typeof f !== "object" || f === null || typeof (f as { name?: unknown }).name !== "string") {
          throw new TypeError("fault needs a name");
        }
        faults.set(b, [...(faults.get(b) ?? []), f as Record<string, unknown>]);
      },
      clear(b, n) {
        faults.set(
          b,
          (faults.get(b) ?? []).filter((f) => n !== undefined && f.name !== n),
        );
      },
      list: (b) => faults.get(b) ?? [],
    },
  };
}

export interface FakeOps extends Operations {
  /** "op:bdf" → times run. */
  runs: Map<string, number>;
  /** Start/end log: "start probe 0000:01:00.0 #tag". */
  trace: string[];
  /** Hold every op whose params carry this tag (reset: kernelMethod; others: see gateKey) until released. */
  gates: Map<string, Promise<void>>;
  started: Set<string>;
}

/** Results of the fake operations: contract-shaped (shared/bus/agent-contract.ts), nothing measured. */
const fakeResult = {
  async inventory(ctx: OpContext): Promise<InventoryResult> {
    const all = await ctx.backend.listFunctions();
    const device = (f: PciFunctionInfo): InventoryDevice => ({
      bdf: f.bdf,
      functions: [f.bdf],
      vendorId: f.vendorId,
      deviceId: f.deviceId,
      classCode: f.classCode,
      cxl: false,
      cxlFunctions: [],
      bridge: f.parent,
      siblings: [],
      holders: [],
      resetMethods: f.resetMethods,
      driver: f.driver,
      iommuGroup: f.iommuGroup,
    });
    const bridge = (f: PciFunctionInfo): InventoryBridge => ({
      bdf: f.bdf,
      parent: f.parent,
      secondaryBus: null,
      subordinateBus: null,
      cxlPort: false,
      below: all.filter((x) => x.parent === f.bdf).map((x) => x.bdf),
      driver: f.driver,
    });
    return {
      host: ctx.host,
      backend: ctx.backend.kind,
      devices: all.filter((f) => f.headerType === 0).map(device),
      bridges: all.filter((f) => f.headerType === 1).map(bridge),
      functions: all,
    };
  },
  probe: (bdf: string): ProbeResult => ({
    bdf,
    vendorId: 0x8086,
    deviceId: 0x0d93,
    classCode: 0x050210,
    flrCapable: true,
    cxl: null,
    decoders: [],
    hdmDecoderEnable: null,
    functions: [bdf],
    bridge: null,
    siblings: [],
    holders: [],
    memoryRanges: [],
    resetMethods: ["flr"],
    driver: null,
    decoded: { config: decodeConfigSpace(new Uint8Array(64), { bdf }), component: null },
  }),
  save: (ctx: OpContext, bdf: string): SaveResult =>
    sealImage({
      version: IMAGE_VERSION,
      identity: {
        host: ctx.host,
        bdf,
        vendorId: 0x8086,
        deviceId: 0x0d93,
        classCode: 0x050210,
        serial: null,
        functions: [bdf],
      },
      pci: { header: Array.from({ length: 16 }, () => "0x0"), pcieCapOffset: null, pcie: {} },
      cxl: null,
      takenAt: new Date().toISOString(),
      durationMs: 0,
      agentVersion: ctx.agentVersion,
    }),
};

/**
 * Operations that only count and trace. A `reset` with kernelMethod "gate:<name>" waits for
 * gates.get(name) before finishing, which lets tests hold an operation in flight deterministically.
 * A reset's result carries the device's reset count in details.resets.
 */
export function fakeOps(): FakeOps {
  const runs = new Map<string, number>();
  const trace: string[] = [];
  const gates = new Map<string, Promise<void>>();
  const started = new Set<string>();
  const count = (op: string, bdf: string) => {
    const k = `${op}:${bdf}`;
    const n = (runs.get(k) ?? 0) + 1;
    runs.set(k, n);
    return n;
  };
  return {
    runs,
    trace,
    gates,
    started,
    async inventory(ctx) {
      count("inventory", "-");
      return fakeResult.inventory(ctx);
    },
    async bind(_ctx, p) {
      return { bdf: p.bdf, previous: null, driver: p.driver };
    },
    async probe(ctx, p) {
      const n = count("probe", p.bdf);
      ctx.emit(p.bdf, "probe.read", { n });
      return fakeResult.probe(p.bdf);
    },
    async save(ctx, p) {
      return fakeResult.save(ctx, p.bdf);
    },
    async quiesce(_ctx, p) {
      return {
        bdf: p.bdf,
        scope: p.scope,
        busMasterWas: true,
        cache: "not-needed",
        wbInvInitiated: false,
        durationMs: 0,
      };
    },
    async reset(ctx, p) {
      const tag = p.kernelMethod ?? "";
      const name = tag.startsWith("gate:") ? tag.slice(5) : "";
      trace.push(`start ${p.bdf} ${name}`);
      started.add(name);
      const n = count("reset", p.bdf);
      ctx.emit(p.bdf, "reset.initiated", { method: p.method });
      if (name && gates.has(name)) await gates.get(name);
      if (p.method === "sbr" && tag === "fail") {
        throw Object.assign(new Error("boom"), { name: "Boom" });
      }
      trace.push(`end ${p.bdf} ${name}`);
      return {
        bdf: p.bdf,
        method: p.method,
        target: p.bdf,
        reached: [p.bdf],
        durationMs: 0,
        details: { resets: n },
      };
    },
    async restore(_ctx, p) {
      return { bdf: p.bdf, scope: p.scope, checksum: "", decoders: [], configLock: false, durationMs: 0 };
    },
    async verify(_ctx, p) {
      return {
        bdf: p.bdf,
        scope: p.scope,
        passed: true,
        mismatches: [],
        scopeViolation: false,
        registersChecked: 0,
      };
    },
  };
}
