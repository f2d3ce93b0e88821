// What the coordinators keep in JetStream KV (services/coordinator/store.ts, leases.ts), as schemas for the
// contract document. Only coordinators read and write these buckets: no other role has a JetStream API
// (permissions.ts). A client reads the same facts through cxlrc.ctl.image and cxlrc.ctl.status.
import { z } from "zod";
import { SaveResult } from "./agent-contract.ts";
import { Bdf } from "./agent-messages.ts";
import { VerifiedStamp } from "./control-replies.ts";

/**
 * cxlrc-images, key `<host>.<bdf-token>`: the image of every function a plan touched, saved before the reset
 * (one record per function as well, so each can be asked for).
 */
export const ImageRecord = z.object({
  v: z.literal(1),
  host: z.string(),
  bdf: Bdf,
  images: z.record(Bdf, SaveResult),
  savedAt: z.string(),
  requestId: z.string().nullable(),
  opId: z.string(),
  coordinator: z.string(),
});

/** cxlrc-images, key `verified.<host>.<bdf-token>`: the last image a reset verified (last known good). */
export const VerifiedImageRecord = ImageRecord.extend({ verified: VerifiedStamp });

/** An event held until the record that decided it is stored, then published under this id. */
export const AnnouncedEvent = z.object({
  id: z.string(),
  kind: z.string(),
  time: z.string().optional(),
  requestId: z.string().optional(),
  data: z.record(z.string(), z.unknown()),
});

/** cxlrc-actors, key `<host>.<bdf-token>`: a device's persisted lifecycle actor (XState snapshot, opaque). */
export const ActorRecord = z.object({
  v: z.literal(1),
  host: z.string(),
  bdf: Bdf,
  owner: z.string(),
  savedAt: z.string(),
  /** The lifecycle state, flattened ("ready", "savingImage", "failed.quarantined"). */
  state: z.string(),
  /** Mid-operation: whoever takes the device over continues it. */
  active: z.boolean(),
  snapshot: z.unknown(),
  /** Request ids the device has taken, newest last (bounded). */
  requests: z.array(z.string()),
  announce: z.array(AnnouncedEvent).optional(),
});

/** cxlrc-decisions, key: a hash of the request id: a request decided without its device's actor (24 h). */
export const DecisionRecord = z.object({
  v: z.literal(1),
  requestId: z.string(),
  host: z.string(),
  bdf: Bdf.nullable(),
  event: z.object({ id: z.string(), kind: z.string(), data: z.record(z.string(), z.unknown()) }),
  coordinator: z.string(),
  at: z.string(),
});

/**
 * cxlrc-leases, key `<host>`: the coordinator that owns the host's partition (drives its devices); the entry's
 * revision is the fencing epoch of every device of the host. Coordinators before partition leases used the key
 * `<host>.<bdf-token>`, one per device.
 */
export const LeaseRecord = z.object({
  owner: z.string(),
  /** One per process: tells a restarted coordinator's leftovers from a live twin. */
  instance: z.string(),
  acquiredAt: z.number(),
  renewedAt: z.number(),
});
