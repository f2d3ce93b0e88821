// One event as a reader gets it: the subject it came on (what the bus vouches for: only a coordinator may
// publish under cxlrc.evt.>, only agent H under cxlrc.agt.H.>), where that subject says it came from, and
// the envelope (what the publisher claims). Outcomes are believed from the subject, never from the claim.
import { type EventEnvelope, envelopeOf } from "../shared/bus/codec.ts";
import { checkEventSubject, type EventOrigin, eventOrigin } from "../shared/bus/trust.ts";

export interface FeedEvent {
  /** The subject the event came on. */
  subject: string;
  /** Source, host, device token and kind, read from the subject. */
  origin: EventOrigin;
  /** The envelope as published. */
  event: EventEnvelope;
  /** Why the envelope disagrees with its subject (host, device, kind or source), or null when it agrees. */
  mismatch: string | null;
}

/** The feed item for a raw message on `subject`; null when it is no event envelope on an event subject. */
export function feedEventOf(subject: string, data: Uint8Array): FeedEvent | null {
  const env = envelopeOf(data);
  return env ? feedEvent(subject, env) : null;
}

/** The feed item for an envelope received on `subject`; null when the subject is no event subject at all. */
export function feedEvent(subject: string, event: EventEnvelope): FeedEvent | null {
  const origin = eventOrigin(subject);
  if (!origin) return null;
  return { subject, origin, event, mismatch: checkEventSubject(subject, event) };
}

/**
 * May what this event says about a request's progress or outcome be believed? Only when it came on the
 * coordinator's subject space and its envelope agrees with that subject.
 */
export function fromCoordinator(e: FeedEvent): boolean {
  return e.origin.source === "coordinator" && checkEventSubject(e.subject, e.event, "coordinator") === null;
}
