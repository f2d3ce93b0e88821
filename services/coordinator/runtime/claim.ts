// Claiming devices under this coordinator's lease: discover builds (or loads) the actor of every CXL device
// of a host and stores it; recover takes over a device stored mid-operation whose lease is free. Each runs
// in the device's chain and gives the lease back once the device rests (runtime/let-go.ts).
import { deviceKey, keyParts } from "../../../shared/bus/subjects.ts";
import { describeError } from "../../../shared/errors.ts";
import { serialize } from "./device.ts";
import { keptHere } from "./let-go.ts";
import type { DeviceRuntime } from "./types.ts";

/** The device's actor built (or loaded) and stored under its lease; false when a peer holds the lease. */
function ensure(rt: DeviceRuntime, host: string, bdf: string): Promise<boolean> {
  const { o } = rt;
  const d = rt.device(host, bdf);
  return serialize(d, async () => {
    const lease = await o.leases.acquire(d.key);
    if (!lease) return false;
    d.pinned++;
    try {
      await rt.sync(d);
      await rt.settle(d);
      await rt.persist(d);
      return true;
    } finally {
      d.pinned--;
      void rt.maybeRelease(d);
    }
  });
}

/**
 * Create (or load) an actor for every CXL device of the host; returns their BDFs. `skip`: devices not to build
 * now (a start-up passes the ones already stored: their actor is built on their first request).
 */
export async function discover(
  rt: DeviceRuntime,
  host: string,
  opts: { skip?: (key: string) => boolean } = {},
): Promise<string[]> {
  const { o } = rt;
  const inv = await o.inventory(host, true);
  const bdfs = inv.devices.filter((x) => x.cxl).map((x) => x.bdf);
  const build = bdfs.filter((bdf) => !opts.skip?.(deviceKey(host, bdf)));
  await Promise.all(
    build.map((bdf) =>
      ensure(rt, host, bdf).catch((err) =>
        o.log.warn({ host, bdf, err: describeError(err) }, "device not discovered"),
      ),
    ),
  );
  return bdfs;
}

/**
 * A recovery pass is about to claim devices: the ones it takes run no step until the returned function is
 * called (once every claim of the pass is done), so the last claim never waits behind the first devices' work.
 */
export function holdTakeovers(rt: DeviceRuntime): () => void {
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => {
    release = r;
  });
  rt.takingOver = held;
  return () => {
    if (rt.takingOver === held) rt.takingOver = null;
    release();
  };
}

/**
 * Take over a device whose stored actor is mid-operation and whose lease is free. `hint.active`: the caller
 * knows it is mid-operation (the record's headers), so only the read under the lease is made.
 */
export async function recover(rt: DeviceRuntime, key: string, hint?: { active: boolean }): Promise<boolean> {
  const { o } = rt;
  // Known mid-operation from the stored record's headers: the record is read once, under the lease (sync).
  const rec = hint?.active ? null : await o.store.loadActor(key);
  if (!hint?.active && !rec?.value.active) return false;
  const { host, bdf } = keyParts(key);
  if (!host || bdf === null) return false;
  const d = rt.device(host, bdf);
  return serialize(d, async () => {
    if (d.actor && o.leases.get(key) && (rec === null || d.revision === rec.revision)) return false; // ours, running
    // Ours at rest, its host's partition held here since it was stored: nothing to take over, and the
    // partition is not taken by a look (it would never linger out while passes keep looking).
    if (keptHere(rt, d)) return false;
    const lease = await o.leases.acquire(key);
    if (!lease) return false;
    d.pinned++;
    try {
      // Claimed by a recovery pass: its steps wait until the pass has claimed all it takes.
      const cur = await rt.sync(d, { resumeAfter: rt.takingOver });
      return cur?.value.active === true;
    } finally {
      d.pinned--;
      void rt.maybeRelease(d);
    }
  });
}
