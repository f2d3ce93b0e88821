// A request's slots given back after its outcome: the host's next reset never shows up on the stream before
// this one's end, and the device rests unheld only once they are back (let-go.ts maybeRelease waits for it).
import { describeError } from "../../../shared/errors.ts";
import type { Device, DeviceRuntime } from "./types.ts";

/**
 * Run `release` once the device's latest outcome is acknowledged on the stream (at once when none waits), or
 * at once when the device is given up here first (let-go.ts abandon: `pendingRelease.now()`).
 */
export function releaseAfterOutcome(rt: DeviceRuntime, d: Device, release: () => Promise<void>): void {
  const sent = d.outcomeSent ?? Promise.resolve();
  d.outcomeSent = null;
  // One request at a time per device: a release still waiting is its previous request's, due now.
  d.pendingRelease?.now();
  let now!: () => void;
  const forced = new Promise<void>((r) => {
    now = r;
  });
  const entry = {
    now,
    done: Promise.race([sent, forced])
      .then(release)
      .catch((err: unknown) => rt.log(d).error({ err: describeError(err) }, "request slots not given back"))
      .finally(() => {
        if (d.pendingRelease === entry) d.pendingRelease = null;
      }),
  };
  d.pendingRelease = entry;
}
