// What a device's actor emits becomes the world's view of it: JetStream events (an outcome, and what follows
// it, held until the snapshot that decided it is stored: runtime/outbox.ts), metrics, request outcomes, and
// the last known good image once a verify passed.
import { nuid } from "@nats-io/transport-node";
import type { LifecycleEmitted } from "../../../machines/lifecycle-types.ts";
import { CxlrcError, describeError } from "../../../shared/errors.ts";
import type { RequestOutcomeKind } from "../outcomes.ts";
import type { AnnouncedEvent, VerifiedImageRecord } from "../store.ts";
import { contextOf } from "./device.ts";
import { OUTCOMES } from "./outbox.ts";
import { REST_STATES } from "./snapshot.ts";
import type { Device, DeviceRuntime } from "./types.ts";

/**
 * A verify passed: the image it compared against is on the device, read back field by field. It becomes the
 * last known good image of every function it covers (its own key, never overwritten by a plain save).
 * The write joins the device's next step (write-ahead barrier) and its outcome.
 */
function markVerified(
  rt: DeviceRuntime,
  d: Device,
  requestId: string | null,
  scope: "io" | "full",
  round: number,
): void {
  const { o } = rt;
  const ref = contextOf(d)?.image;
  if (!ref) return;
  const at = new Date(o.now()).toISOString();
  const job = async () => {
    const rec = await o.store.getImageRevision(ref.key, ref.revision);
    if (!rec) throw new CxlrcError("internal", `image ${ref.key}@${ref.revision} is not in the store`);
    const verified: VerifiedImageRecord["verified"] = {
      at,
      requestId,
      coordinator: o.id,
      imageKey: ref.key,
      imageRevision: ref.revision,
      scope,
      round,
    };
    for (const [bdf, image] of Object.entries(rec.images)) {
      if (bdf === rec.bdf) continue;
      await o.store.putVerifiedImage({ ...rec, bdf, images: { [bdf]: image }, verified });
    }
    await o.store.putVerifiedImage({ ...rec, verified });
  };
  d.lastKnownGood = d.lastKnownGood
    .then(job)
    .catch((err) =>
      rt
        .log(d)
        .error(
          { err: describeError(err), image: ref },
          "last known good image not stored (the previous one stays)",
        ),
    );
}

/**
 * Envelope ids (JetStream msgIDs) that are the same for whoever emits the event: one outcome per request on
 * the stream. Everything else is said as it happens: a request taken again (its first taker died before
 * storing it, so nothing of that attempt touched the device), or a restore and verify run again after a
 * takeover, shows up again, and the stream tells who did what when.
 */
function eventId(rt: DeviceRuntime, type: string, requestId: string | null): string | null {
  return requestId && OUTCOMES.has(type) ? rt.o.store.outcomeId(requestId) : null;
}

/** One event the device's actor emitted: published (or held for its snapshot), counted, outcome recorded. */
export function onEmitted(rt: DeviceRuntime, d: Device, e: LifecycleEmitted): void {
  const { o } = rt;
  const { type, host: _h, bdf: _b, requestId, ...rest } = e;
  const data =
    e.type === "released" && d.releaseData
      ? { ...rest, ...d.releaseData }
      : (rest as Record<string, unknown>);
  if (e.type === "verify.passed") markVerified(rt, d, requestId, e.scope, e.round);
  // Published in emission order; an outcome is recorded once its event (and every earlier one) is on the
  // stream, so whoever waits for it can read the whole history back.
  const id = eventId(rt, type, requestId);
  // Every event of the actor waits for a stored snapshot that contains it: a CAS write of the device's record,
  // the one proof of ownership that a bus losing lease entries cannot fake. A coordinator that lost the device
  // without knowing it yet (its next write fails against the new owner's claim) never says anything more
  // about it. An outcome or a rest state is stored at once; any other event rides along with the next write
  // (the write-ahead of a step that changes the device), or is stored for itself after HOLD_MS.
  const restEntered = e.type === "state.entered" && REST_STATES.has(e.state);
  const urgent = (OUTCOMES.has(type) && requestId !== null) || restEntered;
  // Kept as emitted (when, and by whom), whoever ends up publishing it.
  const event: AnnouncedEvent = {
    id: id ?? nuid.next(),
    kind: type,
    data: { coordinator: o.id, ...data },
    time: new Date().toISOString(),
    ...(requestId ? { requestId } : {}),
  };
  const published = new Promise<unknown>((sent) => d.held.push({ event, sent, urgent }));
  if (!urgent) rt.holdFor(d);
  const nowMs = o.now();
  if (e.type === "state.entered") {
    o.metrics.stateDuration.observe({ state: d.stateName }, Math.max(0, nowMs - d.stateSinceMs) / 1000);
    d.stateName = e.state;
    d.stateSinceMs = nowMs;
    return;
  }
  if (e.type === "plan" && requestId) {
    d.plans.set(requestId, { method: e.plan.method, scope: e.plan.scope, atMs: nowMs });
    return;
  }
  if (!OUTCOMES.has(e.type) || !requestId) return;
  d.outcomeSent = published;
  // Slots granted in the fleet state go back in releaseDevice, which then frees the local admission; a
  // request refused before its grant frees it here.
  if (!o.fleet.granted(requestId)) o.admission.release(requestId);
  const plan = d.plans.get(requestId);
  d.plans.delete(requestId);
  if (e.type === "verified" || e.type === "failed" || e.type === "quarantined") {
    const method = plan?.method ?? "unknown";
    o.metrics.resets.inc({ method, scope: plan?.scope ?? "unknown", outcome: e.type });
    if (plan) o.metrics.resetDuration.observe({ method, outcome: e.type }, (nowMs - plan.atMs) / 1000);
  }
  const ctx = contextOf(d);
  const outcome = {
    requestId,
    host: d.host,
    bdf: d.bdf,
    outcome: e.type as RequestOutcomeKind,
    ...(e.type === "refused" ? { refusal: e.refusal, message: e.refusal.message } : {}),
    ...(e.type === "planned" ? { plan: e.plan } : {}),
    ...(ctx?.plan && ctx.plan.requestId === requestId && e.type !== "planned" ? { plan: ctx.plan } : {}),
    ...(e.type === "verified" ? { repaired: e.repaired } : {}),
    ...(e.type === "failed" ? { message: e.error?.message ?? "failed" } : {}),
    ...(e.type === "quarantined" ? { message: e.reason } : {}),
    atMs: nowMs,
  };
  const lastKnownGood = d.lastKnownGood;
  void Promise.all([published, lastKnownGood]).then(() => o.outcomes.record(outcome));
}
