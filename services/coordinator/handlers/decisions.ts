// Answers a dispatch gives without the device's actor: a refusal decided here while another coordinator
// drives the device (stored first, one decision per request id, then published like the machine's), and the
// event of a stored decision, published again for a redelivery.
import type { ResetRequest } from "../../../machines/facts.ts";
import type { Plan, Refusal } from "../../../machines/policy/types.ts";
import { EVENT, type EventInput } from "../events.ts";
import type { Device, DeviceRuntime } from "../runtime/types.ts";
import type { DecisionRecord } from "../store.ts";

/** What a dispatch resolves with: the actor planned (accepted) or refused it, or it was taken before. */
export type Decision =
  | { kind: "accepted"; plan: Plan }
  | { kind: "refused"; refusal: Refusal }
  | { kind: "duplicate"; requestId: string };

/** A refusal of the request decided here (not by the policy). */
export function refusalOf(r: ResetRequest, reason: Refusal["reason"], message: string): Refusal {
  return {
    kind: "refusal",
    requestId: r.requestId,
    host: r.host,
    bdf: r.bdf,
    reason,
    message,
    details: {},
    gates: [],
  };
}

/** The event of a stored decision. */
export function decisionEvent(r: DecisionRecord): EventInput {
  return {
    host: r.host,
    bdf: r.bdf,
    kind: r.event.kind,
    data: r.event.data,
    id: r.event.id,
    requestId: r.requestId,
  };
}

/**
 * A refusal decided here, without the device's actor (another coordinator drives the device): stored first
 * (one decision per request id, whoever takes a redelivery), then published like the machine's.
 */
export async function refuseOutside(
  rt: DeviceRuntime,
  d: Device,
  r: ResetRequest,
  refusal: Refusal,
): Promise<Decision> {
  const { o } = rt;
  const mine: DecisionRecord = {
    v: 1,
    requestId: r.requestId,
    host: d.host,
    bdf: d.bdf,
    event: {
      id: o.store.outcomeId(r.requestId),
      kind: EVENT.refused,
      data: { outcome: "refused", refusal, atMs: o.now() },
    },
    coordinator: o.id,
    at: new Date(o.now()).toISOString(),
  };
  const held = await o.store.recordDecision(mine);
  await o.events.publish(decisionEvent(held));
  if (held !== mine) return { kind: "duplicate", requestId: r.requestId };
  o.outcomes.record({
    requestId: r.requestId,
    host: d.host,
    bdf: d.bdf,
    outcome: "refused",
    refusal,
    message: refusal.message,
    atMs: o.now(),
  });
  return { kind: "refused", refusal };
}
