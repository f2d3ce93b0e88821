// The device runtime's shapes: the options a coordinator builds it with, the record it keeps per device, what
// status shows of a device, and the runtime itself as the handlers and its own parts see it (runtime/index.ts
// builds it; each of its files implements a part against this interface).
import type { NatsConnection } from "@nats-io/transport-node";
import type { Actor } from "xstate";
import type { LifecycleMachine } from "../../../machines/lifecycle.ts";
import type { LifecycleContext, LifecycleEmitted, StepCall } from "../../../machines/lifecycle-types.ts";
import type { Policy } from "../../../machines/policy/defaults.ts";
import type { InventoryResult } from "../../../shared/bus/agent-contract.ts";
import type { Logger } from "../../../shared/log.ts";
import type { Admission } from "../admission.ts";
import type { AgentLink } from "../agent-link.ts";
import type { DeviceAccess, StepHook } from "../effects/agent-actors.ts";
import type { EventPublisher } from "../events.ts";
import type { FleetStore } from "../fleet-state.ts";
import type { CoordinatorMetrics } from "../metrics.ts";
import type { Outcomes } from "../outcomes.ts";
import type { PartitionLeaseManager } from "../partition-leases.ts";
import type { ActorRecord, AnnouncedEvent, CoordinatorStore, Stored } from "../store.ts";

export type DeviceActor = Actor<LifecycleMachine>;

export interface DeviceActorsOptions {
  nc: NatsConnection;
  /** Agent calls (and the agent events believed for them). */
  link: AgentLink;
  /** Coordinator id. */
  id: string;
  store: CoordinatorStore;
  leases: PartitionLeaseManager;
  fleet: FleetStore;
  events: EventPublisher;
  metrics: CoordinatorMetrics;
  outcomes: Outcomes;
  admission: Admission;
  /** The effective policy (defaults + overrides): its machine's, so every device it drives runs under it. */
  policy: Policy;
  log: Logger;
  now: () => number;
  inventory(host: string, fresh?: boolean): Promise<InventoryResult>;
  /** The features of the host's agent (its latest inventory's); default: read from inventory(). */
  agentFeatures?(host: string): Promise<ReadonlySet<string>>;
  hook?: StepHook;
  /** Steps that call agents or the store at once (the step gate's limit). Default MAX_RUNNING_STEPS. */
  maxRunningSteps?: number;
  /** How long a request may wait for a device actor to settle (binding, probing). Default 30 s. */
  settleTimeoutMs?: number;
  /**
   * A device was given up here mid-operation (its lease lost, a write refused, a step not allowed to act): its
   * stored record waits for whoever takes it next. The service asks for a recovery pass of it soon
   * (recovery.ts soon), instead of leaving it to the next periodic pass.
   */
  onGivenUp?(key: string): void;
}

/** What status shows of one device. */
export interface DeviceStatus {
  host: string;
  bdf: string;
  state: string;
  requestId: string | null;
  /** The device lease is held by this coordinator. */
  leaseHeld: boolean;
  scopeViolations: number;
  quarantineReason: string | null;
  /** Coordinator driving the device: this one for a local actor, else the one that stored it last. */
  owner: string | null;
  /** This coordinator's live actor (true), or the stored snapshot of a device driven elsewhere (false). */
  local: boolean;
}

export interface Device {
  key: string;
  host: string;
  bdf: string;
  actor: DeviceActor | null;
  unsubscribe: (() => void) | null;
  /** Revision of the stored actor record as last read or written here (null: none). */
  revision: number | null;
  /**
   * The snapshot and requests as last stored (their JSON, null: none known), the ids of the events that record names
   * (`named`, its announce: whoever takes it over sends those again), and, for a write made here, the actor's
   * snapshot object and requests array it was made from (`from`: a later call with the same two needs no
   * serializing).
   */
  lastWritten: {
    snapshotJson: string;
    requestsJson: string;
    named: ReadonlySet<string>;
    from?: { snapshot: unknown; requests: string[] };
  } | null;
  writing: Promise<void>;
  /** Phase the actor was restored in (mid-reset), consumed by that phase's first step. */
  recovery: string | null;
  /** Taken over in a recovery pass: its steps wait until the pass has claimed every device it takes. */
  resumeAfter: Promise<void> | null;
  requests: string[];
  /** Dispatches, releases and recoveries of this device run one after the other. */
  chain: Promise<unknown>;
  /** >0 while a dispatch needs the lease kept. */
  pinned: number;
  /** The lease has been held without a break since the actor was last synced from KV. */
  owned: boolean;
  releaseQueued: boolean;
  stateName: string;
  stateSinceMs: number;
  plans: Map<string, { method: string; scope: string; atMs: number }>;
  /** Writes of the last known good image (after a verify passed): joined by the next step and the outcome. */
  lastKnownGood: Promise<void>;
  /** Added to the data of the machine's `released` event (a release with restore reports its verify). */
  releaseData: Record<string, unknown> | null;
  /** Coordinator that wrote the stored record last, as read or written here. */
  storedOwner: string | null;
  /**
   * Every event the actor emits, held until a stored snapshot contains it (runtime/emitted.ts): never an
   * outcome on the stream that the stored state does not know, and nothing said by a coordinator whose write
   * the device's new owner has refused. `urgent`: an outcome or a rest state, stored at once.
   */
  held: Array<{ event: AnnouncedEvent; sent: (p: Promise<unknown>) => void; urgent?: boolean }>;
  /** The write that stores held events nobody else stores in time (runtime/outbox.ts holdFor). */
  holdTimer: NodeJS.Timeout | null;
  /** The latest outcome the actor emitted, settled once it is on the stream (or given up). */
  outcomeSent: Promise<unknown> | null;
  /**
   * Its request's slots, given back once that outcome is on the stream (or at once with `now`: the device
   * given up here); `done` once they are.
   */
  pendingRelease: { now: () => void; done: Promise<void> } | null;
  /**
   * A device at rest whose actor was let go (its state is stored, its lease given back): what status shows of
   * it. Its actor is built again from the stored record on its next request.
   */
  rest: { state: string; scopeViolations: number; quarantineReason: string | null } | null;
  /**
   * At rest and stored, its lease given back, but its host's partition still held here at this epoch: the actor
   * stays in memory (nobody else can have written the device since), and a request under the same epoch takes
   * it without reading the store. Let go when the partition goes (let-go.ts partitionGone).
   */
  kept: number | null;
}

/**
 * One coordinator's device runtime: its devices, the lifecycle machine built once with its effects, and the
 * operations that keep each device's actor durable and single-owner. Passed to every handler.
 */
export interface DeviceRuntime {
  readonly o: DeviceActorsOptions;
  /** The lifecycle machine with this coordinator's effects, provided once. */
  readonly machine: LifecycleMachine;
  /** The step a state runs, by the machine's policy (the stored form names it: runtime/snapshot.ts). */
  readonly stepOf: (state: string, context: LifecycleContext) => StepCall | null;
  /** Every device known here, by key (deviceKey(host, bdf)). */
  readonly devices: Map<string, Device>;
  /** Requests between intake and their actor's decision (they may hold an admission slot already). */
  readonly dispatching: Set<string>;
  /** Stored records (key@revision) whose announce this process has published again. */
  readonly announcedStored: Set<string>;
  /** The device hooks the effects look up by key (the actors themselves are built once, with the machine). */
  readonly access: Map<string, DeviceAccess>;
  readonly settleTimeoutMs: number;
  /** Set by stop: nothing is stored, released or driven from then on. */
  stopping: boolean;
  /** While a recovery pass claims devices: resolves when it has claimed them all (claim.ts holdTakeovers). */
  takingOver: Promise<void> | null;
  /** Devices kept in memory at rest, by host (Device.kept). */
  readonly kept: Map<string, Set<Device>>;

  /** The device's record, created on first use (device.ts). */
  device(host: string, bdf: string): Device;
  /** A logger bound to the device. */
  log(d: Device): Logger;
  /**
   * Store the latest snapshot (CAS, persist.ts). `strict`: without the lease it is an error, and with nothing
   * new to store it waits for the events sent since; `namedEnough`: not for those the stored record names
   * (they are sent again by whoever takes it over).
   */
  persist(d: Device, strict?: boolean, namedEnough?: boolean): Promise<void>;
  /** Publish the first `n` held events, now stored (outbox.ts). */
  announce(d: Device, n: number): void;
  /** Held events not urgent: stored with the next write, or by one of their own after HOLD_MS (outbox.ts). */
  holdFor(d: Device): void;
  /** Steps wait for their turn at the step gate now (the coordinator is overloaded). */
  queued(): boolean;
  /** Publish again what a stored record taken over names (outbox.ts). */
  reannounce(d: Device, rec: ActorRecord): Promise<void>;
  /** One event the device's actor emitted (emitted.ts). */
  onEmitted(d: Device, e: LifecycleEmitted): void;
  /** Give the lease back if the device rests (let-go.ts). */
  maybeRelease(d: Device): void;
  /** Stop driving the device here (let-go.ts). */
  abandon(d: Device, why: string): void;
  /** Make the in-memory actor match the stored one, under a lease just taken (actor.ts). */
  sync(d: Device, opts?: { resumeAfter?: Promise<void> | null }): Promise<Stored<ActorRecord> | null>;
  /** Wait until the actor rests or runs a request (actor.ts). */
  settle(d: Device): Promise<void>;
}
