// dispatch: a reset request handed to its device's actor, in the device's chain. Answered without the actor
// when it was decided before (a duplicate) or a peer drives the device (handlers/decisions.ts); otherwise
// under the device lease, with the actor synced from the store, fresh facts, a host slot admitted, and the
// request stored in the snapshot before the caller acknowledges it.
import type { ResetRequest } from "../../../machines/facts.ts";
import type { LifecycleEmitted } from "../../../machines/lifecycle-types.ts";
import { CxlrcError, describeError } from "../../../shared/errors.ts";
import { backoffDelay } from "../../../shared/retry.ts";
import { contextOf, serialize, stateNow } from "../runtime/device.ts";
import { REST_STATES, runningRequest } from "../runtime/snapshot.ts";
import type { Device, DeviceRuntime } from "../runtime/types.ts";
import { type Decision, decisionEvent, refusalOf, refuseOutside } from "./decisions.ts";
import { freshFacts } from "./fresh-facts.ts";

const REQUESTS_KEPT = 64;

/**
 * The device lease for a request. Held by a peer that only passes by (discovering or recovering the device,
 * storing its rest state): waited for. Held by a peer running another request: refused in-progress, as the
 * device's own actor would. The request already taken by the device (a redelivery): a duplicate.
 */
async function leaseFor(
  rt: DeviceRuntime,
  d: Device,
  request: ResetRequest,
  signal: AbortSignal | undefined,
  firstTry: Promise<unknown>,
): Promise<{ kind: "held"; atOnce: boolean } | { kind: "decided"; decision: Decision }> {
  const { o } = rt;
  const waitUntil = performance.now() + Math.min(o.store.leaseTtlMs, 15_000);
  for (let n = 0; ; n++) {
    if (await (n === 0 ? firstTry : o.leases.acquire(d.key))) return { kind: "held", atOnce: n === 0 };
    const stored = await o.store.loadActor(d.key).catch(() => null);
    if (stored?.value.requests?.includes(request.requestId)) {
      return { kind: "decided", decision: { kind: "duplicate", requestId: request.requestId } };
    }
    const holder = await o.leases.holder(d.key).catch(() => null);
    const running = runningRequest(stored?.value.snapshot);
    if (holder && running && running !== request.requestId) {
      return {
        kind: "decided",
        decision: await refuseOutside(
          rt,
          d,
          request,
          refusalOf(
            request,
            "in-progress",
            `${request.bdf} is being driven by coordinator ${holder.owner} for request ${running}`,
          ),
        ),
      };
    }
    // Jittered: coordinators that found the lease taken together do not all ask again together.
    const delay = backoffDelay(n, { baseMs: 50, maxMs: 500 });
    if (performance.now() + delay >= waitUntil || signal?.aborted || rt.stopping) {
      // Not a refusal: the request is tried again (redelivered) once the lease is free.
      throw new CxlrcError(
        "in-progress",
        `${request.bdf}: the device lease is ${holder ? `held by coordinator ${holder.owner}` : "not answering"}; will retry`,
      );
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

/**
 * Where a dispatch's time went, for its debug line: each mark is the time since the one before (ms, two
 * decimals); the lookups started together are counted under the first that is awaited.
 */
function timeMarks() {
  let last = performance.now();
  const spans: Record<string, number> = {};
  return {
    at(name: string) {
      const now = performance.now();
      spans[name] = Math.round((now - last) * 100) / 100;
      last = now;
    },
    spans: () => spans,
  };
}

/** The request is one this device took already (a redelivery). */
function isDuplicate(d: Device, requestId: string): boolean {
  return d.requests.includes(requestId) || contextOf(d)?.request?.requestId === requestId;
}

/** Hand a request to its device's actor; resolves once the actor accepted (plan) or refused it. */
export function dispatch(
  rt: DeviceRuntime,
  request: ResetRequest,
  opts: { onWaiting?: (position: number) => void; signal?: AbortSignal } = {},
): Promise<Decision> {
  const { o } = rt;
  const d = rt.device(request.host, request.bdf);
  rt.dispatching.add(request.requestId);
  const run = serialize(d, async (): Promise<Decision> => {
    if (rt.stopping) throw new CxlrcError("in-progress", "coordinator is stopping");
    const marks = timeMarks();
    // Only a device held here all along knows its requests from memory; otherwise the store says (below).
    if (d.owned && o.leases.get(d.key) && isDuplicate(d, request.requestId)) {
      return { kind: "duplicate", requestId: request.requestId };
    }
    // Started together, none waiting for another: the lookup of an earlier decision, the device lease, and a
    // read of the device for planning (a probe is a read: it needs no lease; used only if the lease came at
    // once, so it is never older than the lease). Not for a device this coordinator is resetting right now:
    // that request is refused in-progress, and the read would only queue behind the reset at the agent.
    const busyHere = d.owned && d.actor !== null && !REST_STATES.has(stateNow(d));
    const early = busyHere ? null : freshFacts(rt, d.host, d.bdf);
    early?.catch(() => undefined);
    const firstTry = o.leases.acquire(d.key);
    firstTry.catch(() => undefined);
    /** Not taken after all: a lease the first try got goes back once the device rests. */
    const letFirstTryGo = () =>
      void firstTry.then(
        () => rt.maybeRelease(d),
        () => undefined,
      );
    // Decided before without the actor (its acknowledgement lost): the same answer again, not a second one.
    const prior = await o.store.getDecision(request.requestId).catch((err: unknown) => {
      letFirstTryGo();
      throw err;
    });
    if (prior) {
      void o.events.publish(decisionEvent(prior));
      letFirstTryGo();
      return { kind: "duplicate", requestId: request.requestId };
    }
    marks.at("decisionMs");
    const lease = await leaseFor(rt, d, request, opts.signal, firstTry);
    if (lease.kind !== "held") return lease.decision;
    marks.at("leaseMs");
    d.pinned++;
    try {
      await rt.sync(d);
      marks.at("syncMs");
      if (isDuplicate(d, request.requestId)) return { kind: "duplicate", requestId: request.requestId };
      await rt.settle(d);
      if (stateNow(d) === "unavailable") {
        d.actor!.send({ type: "PROBE" });
        await rt.settle(d);
      }
      const actor = d.actor!;
      if (stateNow(d) === "ready") {
        try {
          const facts = await (lease.atOnce && early ? early : freshFacts(rt, d.host, d.bdf));
          actor.send({ type: "FACTS_UPDATED", facts });
        } catch (err) {
          rt.log(d).warn({ err: describeError(err) }, "facts not refreshed; planning from the last probe");
        }
        marks.at("factsMs");
        if (!request.dryRun) {
          const switchId = contextOf(d)?.facts?.bridge?.switchId ?? null;
          let waited = false;
          await o.admission.admit(
            { requestId: request.requestId, host: request.host, switchId, key: d.key, bdf: d.bdf },
            {
              onWait: (position) => {
                waited = true;
                void o.events.publish({
                  host: d.host,
                  bdf: d.bdf,
                  kind: "request.waiting",
                  requestId: request.requestId,
                  data: {
                    reason: "host-busy",
                    position,
                    running: o.admission.running()[request.host] ?? [],
                  },
                });
                opts.onWaiting?.(position);
              },
              ...(opts.signal ? { signal: opts.signal } : {}),
            },
          );
          // A stale view only makes the gating CAS try again: never a reason to lose the admitted slot.
          if (waited) await o.fleet.refresh().catch(() => undefined);
          marks.at("admitMs");
        }
      }
      let decision: Decision | null = null;
      const off = actor.on("*", (e) => {
        const ev = e as LifecycleEmitted;
        if (ev.requestId !== request.requestId || decision) return;
        if (ev.type === "plan") decision = { kind: "accepted", plan: ev.plan };
        else if (ev.type === "refused") decision = { kind: "refused", refusal: ev.refusal };
      });
      try {
        const guards = o.fleet.guards(d.key, {
          activeRequestId: null,
          quarantined: stateNow(d) === "quarantined",
        });
        actor.send({ type: "RESET_REQUESTED", request, guards });
      } finally {
        off.unsubscribe();
      }
      // Taken only when the machine decided (planned or refused): a request it did not take (the device
      // was busy probing) must not look taken to a redelivery, or it would never get an outcome. Set in the
      // same turn as the send, so the snapshot write the transition triggers stores both together.
      if (decision) {
        d.requests = [...d.requests.filter((id) => id !== request.requestId), request.requestId].slice(
          -REQUESTS_KEPT,
        );
      }
      // The request is in the stored snapshot before the caller acknowledges it: a device given up meanwhile
      // (lease lost, write refused) throws here, and the request is delivered again.
      await rt.persist(d, true);
      marks.at("writeMs");
      if (o.log.isLevelEnabled("debug")) {
        rt.log(d).debug({ requestId: request.requestId, ...marks.spans() }, "request dispatched");
      }
      if (d.actor !== actor) {
        throw new CxlrcError(
          "in-progress",
          `${request.bdf}: the device was given up before its state was stored`,
        );
      }
      if (!decision) {
        o.admission.release(request.requestId);
        throw new CxlrcError("internal", `device actor neither planned nor refused ${request.requestId}`);
      }
      return decision;
    } finally {
      d.pinned--;
      void rt.maybeRelease(d);
    }
  });
  void run.finally(() => rt.dispatching.delete(request.requestId)).catch(() => undefined);
  return run;
}
