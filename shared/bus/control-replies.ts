// What the coordinator's control endpoints (cxlrc.ctl.*) answer: the `result` of each ok reply, and the reply
// envelope around it. The requests are in requests.ts. Open objects (z.object / z.looseObject): a field a newer
// coordinator adds is ignored by an older client. The coordinator's own types (services/coordinator) are
// checked against these schemas by test/contract.
import { z } from "zod";
import { SaveResult } from "./agent-contract.ts";
import { Bdf, ErrorBody } from "./agent-messages.ts";
import { Plan, Refusal, RestoreReport } from "./event-data.ts";

const Count = z.number().int().nonnegative();

/** Every control reply: `{ ok: true, result }` or `{ ok: false, error }` (error.details.fields names bad fields). */
export function controlReply<R extends z.ZodType>(result: R) {
  return z.discriminatedUnion("ok", [
    z.object({ ok: z.literal(true), result }),
    z.object({ ok: z.literal(false), error: ErrorBody }),
  ]);
}

/** cxlrc.ctl.plan.<host>: the plan or refusal of each device the request names (nothing is executed). */
export const PlanResult = z.object({
  requestId: z.string().min(1),
  decisions: z.array(z.union([z.object({ bdf: Bdf, plan: Plan }), z.object({ bdf: Bdf, refusal: Refusal })])),
});
export type PlanResult = z.infer<typeof PlanResult>;

/** How a request ended, as the coordinator that saw it recorded it (services/coordinator/outcomes.ts). */
export const RequestOutcome = z.object({
  requestId: z.string().min(1),
  host: z.string().nullable(),
  bdf: Bdf.nullable(),
  /** An outcome event kind, or "rejected" (request.rejected). */
  outcome: z.enum(["verified", "refused", "failed", "quarantined", "planned", "rejected"]),
  plan: Plan.optional(),
  refusal: Refusal.optional(),
  /** failed / quarantined / rejected / refused: what happened, in one sentence. */
  message: z.string().optional(),
  repaired: z.boolean().optional(),
  atMs: z.number(),
});
export type RequestOutcome = z.infer<typeof RequestOutcome>;

/**
 * cxlrc.ctl.submit.<host>: the request is written to CXLRC_REQUESTS (Nats-Msg-Id = requestId) and the first
 * decision of each device is awaited (at most ~10 s: then `queued`). Each decision is the kind and data of the
 * event that decided it: plan, refused, request.rejected, request.duplicate, request.waiting, or "queued" with
 * empty data when none came in time. The outcome follows on cxlrc.evt.>.
 */
export const SubmitAccepted = z.object({
  requestId: z.string().min(1),
  streamSeq: Count,
  /** Some device had no decision in time: follow its events. */
  queued: z.boolean(),
  decisions: z.array(
    z.object({
      bdf: Bdf,
      /** The device's own request id (`<id>@<bdf-token>` when a selector named several). */
      requestId: z.string().min(1),
      kind: z.string(),
      data: z.record(z.string(), z.unknown()),
    }),
  ),
});
/** The same requestId was submitted before (within the stream's duplicate window): nothing new happens. */
export const SubmitDuplicate = z.object({
  requestId: z.string().min(1),
  duplicate: z.literal(true),
  streamSeq: Count,
  /** The outcome, when this coordinator has seen it (null: still running, or decided elsewhere). */
  outcome: RequestOutcome.nullable(),
});
export const SubmitResult = z.union([SubmitDuplicate, SubmitAccepted]);
export type SubmitResult = z.infer<typeof SubmitResult>;

/** The fleet circuit breaker (machines/policy/breaker.ts). */
export const BreakerState = z.object({
  status: z.enum(["closed", "open"]),
  outcomes: z.array(z.object({ atMs: z.number(), failed: z.boolean() })),
  openedAtMs: z.number().nullable(),
  reason: z.string().nullable(),
  closedBy: z.object({ operator: z.string(), atMs: z.number() }).nullable(),
});

/** One device in a status reply. */
export const DeviceStatus = z.object({
  host: z.string(),
  bdf: Bdf,
  /** The lifecycle state: ready, quarantined, unavailable, or a phase of a reset in progress. */
  state: z.string(),
  /** The request running on it, if any. */
  requestId: z.string().nullable(),
  leaseHeld: z.boolean(),
  scopeViolations: Count,
  quarantineReason: z.string().nullable(),
  owner: z.string().nullable(),
  /** Driven by the answering coordinator (true) or known from the store (false). */
  local: z.boolean(),
});

/** cxlrc.ctl.status: the fleet as the answering coordinator sees it. */
export const StatusResult = z.object({
  /** The answering coordinator. */
  id: z.string(),
  devices: z.array(DeviceStatus),
  states: z.record(z.string(), Count),
  leasesHeld: z.array(z.string()),
  /** Hosts whose partition lease the coordinator holds (absent in replies of coordinators with per-device leases). */
  partitionsHeld: z.array(z.string()).optional(),
  /** Hosts whose partition lease is being given back (the lease's delete not yet stored; absent before this field). */
  partitionsReleasing: z.array(z.string()).optional(),
  breaker: BreakerState,
  inFlight: z.record(
    z.string(),
    z.object({ key: z.string(), host: z.string(), bdf: Bdf, owner: z.string(), sinceMs: z.number() }),
  ),
  running: z.record(z.string(), z.array(z.string())),
  waiting: Count,
});
export type StatusResult = z.infer<typeof StatusResult>;

/** Which verify made an image the last known good one. */
export const VerifiedStamp = z.object({
  at: z.string(),
  requestId: z.string().nullable(),
  coordinator: z.string(),
  imageKey: z.string(),
  imageRevision: Count,
  scope: z.enum(["io", "full"]),
  round: Count,
});

/**
 * cxlrc.ctl.image: the last saved image of a function (what a reset in progress restores from) and its last
 * known good one (the last image a reset verified on it: what a release with restore uses).
 */
export const ImageResult = z.object({
  v: z.literal(1),
  host: z.string(),
  bdf: Bdf,
  revision: Count,
  savedAt: z.string(),
  requestId: z.string().nullable(),
  opId: z.string(),
  coordinator: z.string(),
  image: SaveResult,
  /** This image is the last known good one. */
  verified: z.boolean(),
  lastKnownGood: z
    .object({
      revision: Count,
      savedAt: z.string(),
      requestId: z.string().nullable(),
      opId: z.string(),
      verified: VerifiedStamp,
      image: SaveResult,
    })
    .nullable(),
});
export type ImageResult = z.infer<typeof ImageResult>;

/** cxlrc.ctl.release: the state the device reached (ready), and the restore report when asked for one. */
export const ReleaseResult = z.object({
  host: z.string(),
  bdf: Bdf,
  state: z.string(),
  restore: RestoreReport.nullable().optional(),
});
export type ReleaseResult = z.infer<typeof ReleaseResult>;

/** cxlrc.ctl.breaker: the breaker once closed. */
export const BreakerResult = z.object({ breaker: BreakerState });
export type BreakerResult = z.infer<typeof BreakerResult>;
