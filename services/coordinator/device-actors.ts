// The coordinator's device core, as its callers see it: a request goes to a handler (handlers/: dispatch, dry
// run, release), the handler drives the device's runtime (runtime/: the durable keyed-actor host, one XState
// actor per device under its lease, every snapshot stored), the actor runs the lifecycle machine's effects
// (effects/), and the effects call the agent. This file wires the three together behind one interface.
import type { ResetRequest } from "../../machines/facts.ts";
import type { Plan, Refusal } from "../../machines/policy/types.ts";
import type { Decision } from "./handlers/decisions.ts";
import { dispatch } from "./handlers/dispatch.ts";
import { dryRun } from "./handlers/dry-run.ts";
import { type ReleaseResult, releaseDevice } from "./handlers/release.ts";
import { discover, holdTakeovers, recover } from "./runtime/claim.ts";
import { createDeviceRuntime, leaseLost, stop } from "./runtime/index.ts";
import { partitionGone } from "./runtime/let-go.ts";
import { announcedHere, announceStored } from "./runtime/outbox.ts";
import { liveRequests, local, status } from "./runtime/status.ts";
import type { DeviceActorsOptions, DeviceStatus } from "./runtime/types.ts";
import type { ActorRecord, Stored } from "./store.ts";

export type { Decision } from "./handlers/decisions.ts";
export type { ReleaseResult } from "./handlers/release.ts";
export type { RestoreReport } from "./handlers/restore.ts";
export { currentSnapshot, REST_STATES } from "./runtime/snapshot.ts";
export type { DeviceActorsOptions, DeviceStatus } from "./runtime/types.ts";

export interface DeviceActors {
  /** Hand a request to its device's actor; resolves once the actor accepted (plan) or refused it. */
  dispatch(
    request: ResetRequest,
    opts?: { onWaiting?: (position: number) => void; signal?: AbortSignal },
  ): Promise<Decision>;
  /** A plan or refusal for the request from fresh facts: nothing is touched, nothing stored. */
  dryRun(request: ResetRequest): Promise<Plan | Refusal>;
  /** Operator: out of quarantine. Resolves with the state reached (ready, or unavailable). */
  release(host: string, bdf: string, operator: string, reason: string): Promise<string>;
  /**
   * Operator: out of quarantine, optionally restoring the device first from its last known good image (full
   * scope, then verify). A restore that does not verify leaves the device quarantined (CxlrcError naming why,
   * details.restore the report).
   */
  releaseDevice(
    host: string,
    bdf: string,
    opts: { operator: string; reason: string; restore?: boolean },
  ): Promise<ReleaseResult>;
  /**
   * Create (or load) an actor for every CXL device of the host; returns their BDFs. `skip`: devices not to build
   * now (a start-up passes the ones already stored: their actor is built on their first request).
   */
  discover(host: string, opts?: { skip?: (key: string) => boolean }): Promise<string[]>;
  /**
   * Take over a device whose stored actor is mid-operation and whose lease is free. `hint.active`: the caller
   * knows it is mid-operation (the record's headers), so only the read under the lease is made.
   */
  recover(key: string, hint?: { active: boolean }): Promise<boolean>;
  /**
   * Devices taken over from now run no step until the returned function is called: a recovery pass claims
   * all it takes first.
   */
  holdTakeovers(): () => void;
  status(): DeviceStatus[];
  /** Local actors with the revision of their stored record last read or written here. */
  local(): Array<{ key: string; revision: number | null; leaseHeld: boolean; status: DeviceStatus }>;
  /**
   * Stop every actor. Unless `release: false` (a crash), the writes under way land first. Leases are not
   * touched here: the service releases them (or lets them expire) after this.
   */
  stop(opts?: { release?: boolean }): Promise<void>;
  /** Drop a device after its lease was lost (leases.ts onLost). */
  leaseLost(key: string): void;
  /** A host's partition lease is no longer held here (partition-leases.ts onPartitionGone). */
  partitionGone(host: string): void;
  /** Requests this coordinator is handing to an actor or running (a local actor not at rest). */
  liveRequests(): Set<string>;
  /**
   * A stored record at rest whose writer may have died between storing it and publishing what it decided
   * (its `announce`): publish that now, under the same ids. Once per record revision per process. Resolves
   * false when it was left for the device's current holder (a later pass must look again), true otherwise.
   */
  announceStored(key: string, rec: Stored<ActorRecord>): Promise<boolean>;
  /**
   * The stored record of `key` at `revision` was written here and its events announced right after: a
   * recovery pass need not read it.
   */
  announcedHere(key: string, revision: number | undefined): boolean;
}

export function createDeviceActors(o: DeviceActorsOptions): DeviceActors {
  const rt = createDeviceRuntime(o);
  return {
    dispatch: (request, opts) => dispatch(rt, request, opts),
    dryRun: (request) => dryRun(rt, request),
    release: async (host, bdf, operator, reason) =>
      (await releaseDevice(rt, host, bdf, { operator, reason })).state,
    releaseDevice: (host, bdf, opts) => releaseDevice(rt, host, bdf, opts),
    discover: (host, opts) => discover(rt, host, opts),
    recover: (key, hint) => recover(rt, key, hint),
    holdTakeovers: () => holdTakeovers(rt),
    status: () => status(rt),
    local: () => local(rt),
    stop: (opts) => stop(rt, opts),
    leaseLost: (key) => leaseLost(rt, key),
    partitionGone: (host) => partitionGone(rt, host),
    liveRequests: () => liveRequests(rt),
    announceStored: (key, rec) => announceStored(rt, key, rec),
    announcedHere: (key, revision) => announcedHere(rt, key, revision),
  };
}
