// Test fixtures: a simulated host (virtual clock) behind a recording backend, and an OpContext that
// collects events.

import type { OpContext } from "../../services/agent/ops/index.ts";
import { type AgentTimeouts, agentTimeouts } from "../../services/agent/ops/timeouts.ts";
import { silentLogger } from "../../shared/log.ts";
import type { HostSpecInput } from "../../shared/sim/index.ts";
import {
  createSimHost,
  type SimHost,
  type SimpleHostOptions,
  simpleHost,
  VirtualClock,
} from "../../shared/sim/index.ts";
import { RecordingBackend } from "./recording-backend.ts";

export const DEV = "0000:01:00.0";
export const PORT = "0000:00:01.0";

export interface Event {
  t: number;
  bdf: string;
  kind: string;
  data: Record<string, unknown>;
}

export interface Rig {
  sim: SimHost;
  rec: RecordingBackend;
  clock: VirtualClock;
  ctx: OpContext;
  events: Event[];
}

export function rigFor(spec: HostSpecInput, timeouts: Partial<AgentTimeouts> = {}): Rig {
  const clock = new VirtualClock();
  const sim = createSimHost(spec, { clock });
  const rec = new RecordingBackend(sim);
  const events: Event[] = [];
  const ctx: OpContext = {
    backend: rec,
    host: sim.name,
    log: silentLogger,
    emit: (bdf, kind, data = {}) => events.push({ t: clock.now(), bdf, kind, data }),
    timeouts: agentTimeouts(timeouts),
    agentVersion: "test",
  };
  return { sim, rec, clock, ctx, events };
}

export function rig(opts: SimpleHostOptions = {}, timeouts: Partial<AgentTimeouts> = {}): Rig {
  return rigFor(simpleHost(opts), timeouts);
}

// Read-backs straight from the simulator (not through the recording wrapper), at the addresses the
// simulator documents: DVSEC id 0 at 0x100, component block at BAR0 + 0x10000, HDM capability at
// block + 0x1000 + 0x100, PCIe capability at 0x40; the root port's DVSEC id 3 at 0x100.
export const DVSEC = 0x100;
export const PCIE_CAP = 0x40;
export const PORT_DVSEC = 0x100;
export const HDM_AT = 0x10000 + 0x1000 + 0x100;
export const decoderOffset = (n: number, reg: number) => HDM_AT + 0x10 + n * 0x20 + reg;

export function readDecoder(sim: SimHost, n: number, bdf = DEV) {
  const r = (o: number) => sim.mmioRead32(bdf, 0, decoderOffset(n, o));
  return (async () => {
    const [baseLow, baseHigh, sizeLow, sizeHigh, control] = await Promise.all([
      r(0x00),
      r(0x04),
      r(0x08),
      r(0x0c),
      r(0x10),
    ]);
    return {
      base: (BigInt(baseHigh) << 32n) | BigInt((baseLow & 0xf000_0000) >>> 0),
      size: (BigInt(sizeHigh) << 32n) | BigInt((sizeLow & 0xf000_0000) >>> 0),
      control,
      committed: (control & (1 << 10)) !== 0,
      errorNotCommitted: (control & (1 << 11)) !== 0,
    };
  })();
}

export function eventKinds(events: readonly Event[]): string[] {
  return events.map((e) => e.kind);
}

/** Decoder n's Control as the device holds it, even while its BAR does not decode (after a bus reset). */
export function heldDecoderControl(sim: SimHost, n: number, bdf = DEV): number {
  const c = sim.snapshot(bdf).component;
  return new DataView(c.buffer, c.byteOffset).getUint32(HDM_AT - 0x10000 + 0x10 + n * 0x20 + 0x10, true);
}
