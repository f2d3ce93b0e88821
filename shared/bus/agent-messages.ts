// The agent's command contract: what the coordinator (or a test, or the CLI) sends to
// cxlrc.agent.<host>.<op>, and the reply envelope. The schema is the type and the validator.
import { z } from "zod";
import { BDF_RE } from "../hw/backend.ts";

export const Bdf = z.string().regex(BDF_RE, 'a PCI address "DDDD:BB:DD.F" in lowercase hex');
/** Operation id: the coordinator's idempotency key. A repeated id returns the first result. */
export const OpId = z.string().min(1).max(128);

/**
 * Fencing token of the coordinator that sends a device operation: the KV revision at which it acquired the
 * device's lease (`epoch`, monotonic over the leases bucket) and its id. The agent refuses an epoch lower than
 * the highest it has served for the function (error kind "stale-epoch"). Optional: tools that talk to an agent
 * without a coordinator send none. `lease` names the lease the epoch belongs to (epochs of one lease compare).
 */
export const Fence = z.strictObject({
  epoch: z.number().int().positive(),
  owner: z.string().min(1).max(128),
  lease: z.string().min(1).max(256).optional(),
});
export type Fence = z.infer<typeof Fence>;

export const ResetMethod = z.enum(["flr", "cxl", "sbr", "vfio", "kernel"]);
export type ResetMethod = z.infer<typeof ResetMethod>;
export const Scope = z.enum(["io", "full"]);
export type Scope = z.infer<typeof Scope>;

export const InventoryParams = z.strictObject({ opId: OpId });
const DriverName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_.-]+$/, "a driver name (letters, digits, _ . -)");
export const BindParams = z.strictObject({
  opId: OpId,
  fence: Fence.optional(),
  bdf: Bdf,
  driver: DriverName.nullable(),
  /** The driver_override to leave behind (null clears it); absent: the driver bound, none when unbinding. */
  override: DriverName.nullable().optional(),
  /**
   * The hand-back of a reset (issue #17): after the driver is bound again, verify the device against the
   * image it was saved to (the result's `verify`), in the same operation.
   */
  verify: z.strictObject({ scope: z.enum(["io", "full"]), image: z.unknown() }).optional(),
});
export const ProbeParams = z.strictObject({
  opId: OpId,
  fence: Fence.optional(),
  bdf: Bdf,
  /** Without `decoded` (what a planner reads is the rest): a result a fifth the size. */
  brief: z.boolean().optional(),
});
export const SaveParams = z.strictObject({
  opId: OpId,
  fence: Fence.optional(),
  bdf: Bdf,
  /** Full reset of a device with a driver bound: save under it, then take it (the driver the plan names). */
  handover: z.strictObject({ driver: DriverName }).optional(),
  /**
   * Also read the function's facts once it is saved, as a brief probe does, in the same operation (the
   * result's `probe`; feature "save.probe"): the regate's read, without an operation of its own.
   */
  probe: z.boolean().optional(),
});
/** Bus Master off (both scopes); for full scope also the cache write-back + invalidate of reset-rules step 3. */
export const QuiesceParams = z.strictObject({ opId: OpId, fence: Fence.optional(), bdf: Bdf, scope: Scope });
export const ResetParams = z.strictObject({
  opId: OpId,
  fence: Fence.optional(),
  bdf: Bdf,
  method: ResetMethod,
  /** CXL Reset only: set Mem Clr Enable (only honoured when the device is capable). */
  memClear: z.boolean().optional(),
  /** method "kernel": which reset_method to use (flr, bus, cxl_bus...). */
  kernelMethod: z.string().min(1).max(32).optional(),
  /**
   * Quiesce the function first, in the same operation (what `quiesce` does, for this scope): one round trip
   * less. A quiesce that fails leaves the device as it was and fails the operation before any reset.
   */
  quiesce: z.strictObject({ scope: Scope }).optional(),
  /**
   * Restore the function from this image right after the reset, in the same operation, once the reset's own
   * polling saw it answer (what `restore` does, with `verify` as there): one round trip less. A restore that
   * fails does not fail the operation (the reset happened): the result's `restore` carries its error.
   */
  restore: z.strictObject({ scope: Scope, image: z.unknown(), verify: z.boolean().optional() }).optional(),
});
/** The image travels as JSON; its own schema lives in shared/image. */
export const RestoreParams = z.strictObject({
  opId: OpId,
  fence: Fence.optional(),
  bdf: Bdf,
  scope: Scope,
  image: z.unknown(),
  /** Verify right after the restore, in the same operation (the result's `verify`): one round trip less. */
  verify: z.boolean().optional(),
});
export const VerifyParams = z.strictObject({
  opId: OpId,
  fence: Fence.optional(),
  bdf: Bdf,
  scope: Scope,
  image: z.unknown(),
});
/** Simulated backends only (chaos role). */
export const FaultParams = z.strictObject({
  opId: OpId,
  bdf: Bdf,
  action: z.enum(["set", "clear", "list"]),
  fault: z.record(z.string(), z.unknown()).optional(),
});

/**
 * A liveness check: answered at once by the agent's event loop, touching no device and publishing no event. A
 * call that gets no reply to its operation asks this: no answer here either means the agent is not reading its
 * requests (frozen, stopped, its event loop blocked), not that the operation is slow.
 */
export const PingParams = z.strictObject({ opId: OpId });

export const AGENT_PARAMS = {
  inventory: InventoryParams,
  bind: BindParams,
  probe: ProbeParams,
  save: SaveParams,
  quiesce: QuiesceParams,
  reset: ResetParams,
  restore: RestoreParams,
  verify: VerifyParams,
  fault: FaultParams,
  ping: PingParams,
} as const;

export const ErrorBody = z.object({
  kind: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).default({}),
  cause: z.string().optional(),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

/** Every agent reply: ok with a result, or an error naming what was wrong. */
export const AgentReply = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true), opId: OpId, result: z.unknown() }),
  z.object({ ok: z.literal(false), opId: OpId.nullable(), error: ErrorBody }),
]);
export type AgentReply = z.infer<typeof AgentReply>;
