// The benchmark fleet: `hosts` simulated hosts with `perHost` CXL Type-2 devices each (one per root port,
// decoders 0 and 1 committed by firmware, cache enabled), and the accounting that tells device time from
// everything else: every operation runs on a per-device view of the simulator whose clock adds up the waits
// the operation asks of the device (post-reset 100 ms, CXL Reset polls, commit and cache-flush polls).

import type { OpContext } from "../../services/agent/ops/index.ts";
import type { Operations } from "../../services/agent/service.ts";
import type { Clock, HardwareBackend } from "../../shared/hw/backend.ts";
import type { HostSpecInput, SimHost } from "../../shared/sim/index.ts";

export const hostName = (i: number): string => `h${String(i).padStart(5, "0")}`;

/** One host: `perHost` devices, each alone below its own root port (domain 0000, up to 200 per host). */
export function benchHost(name: string, perHost: number): HostSpecInput {
  if (perHost > 200) throw new RangeError("at most 200 devices per bench host");
  const hex = (v: number, w: number) => v.toString(16).padStart(w, "0");
  const bridges = [];
  const devices = [];
  for (let k = 0; k < perHost; k++) {
    const port = `0000:00:${hex(k >> 3, 2)}.${k & 7}`;
    bridges.push({ bdf: port, kind: "root-port" as const, secondaryBus: k + 1 });
    const base = 0x1_0000_0000 + k * 0x2000_0000;
    devices.push({
      bdf: `0000:${hex(k + 1, 2)}:00.0`,
      parent: port,
      firmware: {
        cacheEnable: true,
        decoders: [
          { base, size: 0x1000_0000 },
          { base: base + 0x1000_0000, size: 0x1000_0000 },
        ],
      },
    });
  }
  return { name, bridges, devices };
}

/** BDF of device k on a bench host. */
export const benchBdf = (k: number): string => `0000:${(k + 1).toString(16).padStart(2, "0")}:00.0`;

/** What one device cost since the last take(). */
export interface DeviceAccount {
  /** Device waits the operations asked for (clock.sleep), ms: the hardware-mandated part. */
  waitMs: number;
  /** The same waits as they really lasted (timer lateness included). */
  waitActualMs: number;
  /** Wall time inside agent operations on this device (waits, register accesses, image building). */
  opMs: number;
  ops: number;
}

const empty = (): DeviceAccount => ({ waitMs: 0, waitActualMs: 0, opMs: 0, ops: 0 });

export class Accounts {
  private map = new Map<string, DeviceAccount>();
  get(key: string): DeviceAccount {
    let a = this.map.get(key);
    if (!a) {
      a = empty();
      this.map.set(key, a);
    }
    return a;
  }
  /** Every account, then all cleared. */
  take(): Record<string, DeviceAccount> {
    const out = Object.fromEntries(this.map);
    this.map = new Map();
    return out;
  }
}

/** A clock on real time that books every sleep against `account()`. */
function countingClock(base: Clock, account: () => DeviceAccount): Clock {
  return {
    now: () => base.now(),
    async sleep(ms) {
      const t0 = performance.now();
      await base.sleep(ms);
      const a = account();
      a.waitMs += Math.max(0, ms);
      a.waitActualMs += performance.now() - t0;
    },
  };
}

/**
 * The simulator seen through a per-device clock (everything else is the simulator itself). Methods are
 * bound once per view, not on every register access: the view must not cost more than the access it wraps.
 */
function deviceView(sim: SimHost, clock: Clock): HardwareBackend {
  const bound = new Map<PropertyKey, { of: unknown; fn: unknown }>();
  return new Proxy(sim, {
    get(target, prop) {
      if (prop === "clock") return clock;
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== "function") return v;
      const b = bound.get(prop);
      if (b?.of === v) return b.fn;
      const fn = (v as (...a: unknown[]) => unknown).bind(target);
      bound.set(prop, { of: v, fn });
      return fn;
    },
  });
}

const key = (host: string, bdf: string) => `${host}/${bdf}`;

/**
 * The agent's operations, each run on the device's counting view and timed. Operations without a device
 * (inventory) run as they are.
 */
export function accountedOperations(
  ops: Operations,
  sim: SimHost,
  host: string,
  accounts: Accounts,
): { operations: Operations; view(bdf: string): HardwareBackend } {
  const views = new Map<string, HardwareBackend>();
  const view = (bdf: string) => {
    let v = views.get(bdf);
    if (!v) {
      const k = key(host, bdf);
      v = deviceView(
        sim,
        countingClock(sim.clock, () => accounts.get(k)),
      );
      views.set(bdf, v);
    }
    return v;
  };
  const wrap =
    <P extends { bdf: string }, R>(f: (ctx: OpContext, p: P) => Promise<R>) =>
    async (ctx: OpContext, p: P): Promise<R> => {
      const t0 = performance.now();
      try {
        return await f({ ...ctx, backend: view(p.bdf) }, p);
      } finally {
        const a = accounts.get(key(host, p.bdf));
        a.opMs += performance.now() - t0;
        a.ops++;
      }
    };
  const operations: Operations = {
    inventory: (ctx) => ops.inventory(ctx),
    bind: wrap((ctx, p) => ops.bind(ctx, p)),
    probe: wrap((ctx, p) => ops.probe(ctx, p)),
    save: wrap((ctx, p) => ops.save(ctx, p)),
    quiesce: wrap((ctx, p) => ops.quiesce(ctx, p)),
    reset: wrap((ctx, p) => ops.reset(ctx, p)),
    restore: wrap((ctx, p) => ops.restore(ctx, p)),
    verify: wrap((ctx, p) => ops.verify(ctx, p)),
  };
  return { operations, view };
}

export const accountKey = key;
