// Virtual time for the simulator and tests: sleep() moves time forward at once and resolves on a microtask,
// so a 100 ms reset wait costs nothing. Device state that changes with time is evaluated from now() lazily.
import type { Clock } from "../hw/backend.ts";

export class VirtualClock implements Clock {
  private t: number;
  constructor(startMs = 0) {
    this.t = startMs;
  }
  now(): number {
    return this.t;
  }
  /** Advances virtual time by `ms` immediately (concurrent sleepers each advance it). */
  sleep(ms: number): Promise<void> {
    this.advance(ms);
    return Promise.resolve();
  }
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`cannot advance a clock by ${ms} ms`);
    this.t += ms;
  }
}
