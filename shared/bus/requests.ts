// The coordinator's contract with fleet controllers, operators and the CLI: the reset request that travels
// through the JetStream stream CXLRC_REQUESTS (on cxlrc.req.reset, Nats-Msg-Id = requestId), and the control
// messages of cxlrc.ctl.* (plan, submit, status, release, image). The schema is the type and the validator;
// objects are strict, so a misspelt field is an error naming it instead of a silently ignored option.
import { z } from "zod";
import { Bdf, ErrorBody, Scope } from "./agent-messages.ts";
import { EVENT_KIND_RE, EventEnvelope } from "./codec.ts";
import { HOST_RE } from "./subjects.ts";

export const RequestId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._:/=-]+$/, "letters, digits and . _ : / = - only");
export const HostName = z.string().regex(HOST_RE, "1-64 letters, digits, '-' or '_'");

/** Devices of one host chosen by what they are rather than where they are (resolved by the agent's inventory). */
export const DeviceSelector = z
  .strictObject({
    vendorId: z.number().int().min(0).max(0xffff).optional(),
    deviceId: z.number().int().min(0).max(0xffff).optional(),
    /** Device Serial Number as 16 lowercase hex digits. */
    serial: z
      .string()
      .regex(/^(0x)?[0-9a-f]{16}$/)
      .optional(),
    /** Every CXL device of the host. */
    all: z.literal(true).optional(),
  })
  .refine((s) => Object.keys(s).length > 0, "name at least one of vendorId, deviceId, serial, all");
export type DeviceSelector = z.infer<typeof DeviceSelector>;

export const ResetRequestMessage = z
  .strictObject({
    requestId: RequestId,
    host: HostName,
    /** Function 0 of the device. Exactly one of bdf / deviceSelector. */
    bdf: Bdf.optional(),
    deviceSelector: DeviceSelector.optional(),
    scope: Scope,
    /** io requested on a device without FLR: allow moving to full scope (the plan says so). */
    allowEscalation: z.boolean().default(false),
    /** CXL Reset: set Mem Clr Enable (only when the device is capable). */
    memClear: z.boolean().default(false),
    /** Why (logged, in every event of the request). */
    reason: z.string().min(1).max(500),
    /** Absolute time (ISO 8601) after which the request must not start. */
    deadline: z.iso.datetime({ offset: true }).optional(),
    /** Plan only: compute scope, method, siblings, gates and deadlines; touch nothing. */
    dryRun: z.boolean().default(false),
    /** Full scope: the method to use (default: the policy's preference among those the device supports). */
    method: z.enum(["cxl", "sbr", "vfio"]).optional(),
    /** SBR: functions of other devices below the same bridge included in the plan (each saved and restored). */
    siblings: z.array(Bdf).max(32).optional(),
    /** Who asks (fleet controller, operator), for the audit trail. */
    requester: z.string().min(1).max(128).optional(),
  })
  .superRefine((r, ctx) => {
    if ((r.bdf === undefined) === (r.deviceSelector === undefined)) {
      ctx.addIssue({ code: "custom", path: ["bdf"], message: "give exactly one of bdf or deviceSelector" });
    }
  });
export type ResetRequestMessage = z.output<typeof ResetRequestMessage>;
export type ResetRequestInput = z.input<typeof ResetRequestMessage>;

/**
 * cxlrc.ctl.release: an operator takes a device out of quarantine. With `restore`, the device is first put back
 * from its last known good (verified) image, full scope, and verified; only a verify that passes releases it.
 */
export const ReleaseRequest = z.strictObject({
  host: HostName,
  bdf: Bdf,
  operator: z.string().min(1).max(128),
  reason: z.string().min(1).max(500),
  restore: z.boolean().default(false),
});
export type ReleaseRequest = z.output<typeof ReleaseRequest>;
export type ReleaseRequestInput = z.input<typeof ReleaseRequest>;

/**
 * cxlrc.ctl.image: the images of a function: the last saved one (what a reset in progress restores from) and
 * the last known good one (the last image a reset verified on the device; what a release with restore uses).
 */
export const ImageRequest = z.strictObject({ host: HostName, bdf: Bdf });
export type ImageRequest = z.infer<typeof ImageRequest>;

/** cxlrc.ctl.status: the fleet as this coordinator sees it (empty body allowed). */
export const StatusRequest = z.strictObject({ host: HostName.optional() });
export type StatusRequest = z.infer<typeof StatusRequest>;

/** cxlrc.ctl.breaker: an operator closes the fleet circuit breaker. */
export const BreakerResetRequest = z.strictObject({
  operator: z.string().min(1).max(128),
  reason: z.string().min(1).max(500),
});

/**
 * cxlrc.ctl.events: replay stored events (readers have no JetStream API of their own). One batch per request,
 * in stream order, from `startSeq` or from the first event at or after `since` (neither: from the next event
 * stored, i.e. nothing yet, with the stream's last sequence so that a live follower knows where it stands).
 * Ask again with `startSeq: nextSeq` until `nextSeq > lastSeq` (caught up).
 */
export const EventsRequest = z.strictObject({
  host: HostName.optional(),
  bdf: Bdf.optional(),
  /** Only these kinds (exact, e.g. "verified", "op.completed"). */
  kinds: z.array(z.string().regex(EVENT_KIND_RE).max(128)).max(32).optional(),
  /** Only the coordinator's events (cxlrc.evt.>) or only the agents' (cxlrc.agt.>). Default both. */
  source: z.enum(["coordinator", "agent"]).optional(),
  startSeq: z.number().int().min(1).optional(),
  since: z.iso.datetime({ offset: true }).optional(),
  /** Events per batch, at most 1000. Default 500. */
  max: z.number().int().min(1).max(1000).default(500),
});
export type EventsRequest = z.output<typeof EventsRequest>;
export type EventsRequestInput = z.input<typeof EventsRequest>;

export const StoredEvent = z.strictObject({
  seq: z.number().int(),
  subject: z.string(),
  event: EventEnvelope,
});
export type StoredEvent = z.infer<typeof StoredEvent>;

export const EventsReply = z.strictObject({
  events: z.array(StoredEvent),
  /** The sequence to ask for next. */
  nextSeq: z.number().int().min(1),
  /** The stream's last sequence when this batch was read (0: empty stream). */
  lastSeq: z.number().int().min(0),
});
export type EventsReply = z.infer<typeof EventsReply>;

/** Every control reply: ok with a result, or an error naming the field or the problem. */
export const ControlReply = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true), result: z.unknown() }),
  z.object({ ok: z.literal(false), error: ErrorBody }),
]);
export type ControlReply = z.infer<typeof ControlReply>;
