// The lifecycle as a model for @xstate/graph: which events may arrive in each state (the steps' done/failed
// events (machines/steps.ts), a timeout as an error, requests, operator actions), and a serializer that keeps only what decides
// behaviour (not timings, ids or times), so the state space stays small.
import type { AnyMachineSnapshot, EventObject } from "xstate";
import type { DeviceFacts, ResetRequest } from "../../machines/facts.ts";
import type { LifecycleContext, VerifyResult } from "../../machines/lifecycle-types.ts";
import { BDF, facts, guards, HOST, SIBLING } from "./builders.ts";

export const FACTS_VARIANTS: Record<string, DeviceFacts> = {
  /** FLR and CXL Reset. */
  capable: facts(),
  /** No FLR, no CXL Reset: io is refused or escalated, full goes through the bridge (SBR). */
  bridgeOnly: facts({ flrCapable: false, cxlResetCapable: false }),
  /** cxl_pci holds the device: a full reset takes it and gives it back (handingBack). */
  driverBound: facts({
    driver: "cxl_pci",
    functionDrivers: { [BDF]: "cxl_pci" },
    holders: [{ kind: "driver", detail: "cxl_pci" }],
  }),
};

const REQUESTS: Record<string, Omit<ResetRequest, "requestId">> = {
  io: { host: HOST, bdf: BDF, scope: "io", reason: "model" },
  ioEscalate: { host: HOST, bdf: BDF, scope: "io", allowEscalation: true, reason: "model" },
  full: { host: HOST, bdf: BDF, scope: "full", reason: "model" },
  dryRun: { host: HOST, bdf: BDF, scope: "full", dryRun: true, reason: "model" },
};

const done = (id: string, output?: unknown): EventObject => ({ type: `done.${id}`, output }) as EventObject;
const fail = (id: string, kind = "backend"): EventObject =>
  ({ type: `failed.${id}`, error: { kind, message: `${id} failed` } }) as EventObject;

const PASSED: VerifyResult = { passed: true, mismatches: [] };
const CXL_CHANGED: VerifyResult = { passed: false, mismatches: [{ field: "dvsec.control.mem_enable" }] };
const PCI_CHANGED: VerifyResult = { passed: false, mismatches: [{ field: "command", area: "pci" }] };

/** The step each phase runs (its answers are `done.<step>` and `failed.<step>`). */
const STEP_ACTORS: Record<string, string> = {
  gating: "acquireDevice",
  savingImage: "saveImage",
  persistingImage: "persistImage",
  regating: "recheckGates",
  quiescing: "quiesceDevice",
  resetting: "resetDevice",
  awaitingReady: "awaitReady",
  restoring: "restoreDevice",
  committingDecoders: "commitDecoders",
  verifying: "verifyDevice",
  releasing: "releaseDevice",
  handingBack: "handBackDriver",
};

export interface ModelOptions {
  /** Offer a timeout in every phase (else only where the agent may hang longest: resetting, awaitingReady). */
  deadlinesEverywhere: boolean;
  /** Requests after the first outcome (a second request, quarantine release). */
  moreRequests: boolean;
  requestVariants: string[];
  /** Which FACTS_VARIANTS the probe may answer with. */
  factsVariants: string[];
}

function request(variant: string): ResetRequest {
  return { requestId: variant, ...REQUESTS[variant]! };
}

export function modelEvents(opts: ModelOptions) {
  return (snapshot: AnyMachineSnapshot): EventObject[] => {
    const ctx = snapshot.context as LifecycleContext;
    const state = String(snapshot.value);
    // A step past its budget: the effect wrapper rejects it with kind "timeout".
    const running = STEP_ACTORS[state];
    const deadline: EventObject[] = running ? [fail(running, "timeout")] : [];
    const timeouts =
      opts.deadlinesEverywhere || state === "resetting" || state === "awaitingReady" ? deadline : [];
    const reset = (variant: string) =>
      ({ type: "RESET_REQUESTED", request: request(variant), guards: guards() }) as EventObject;
    const firstDone = ctx.outcome !== null;
    switch (state) {
      case "binding":
        return [done("bindDevice"), fail("bindDevice")];
      case "probing":
        return [
          ...opts.factsVariants.map((v) => done("probeDevice", FACTS_VARIANTS[v])),
          fail("probeDevice"),
        ];
      case "unavailable":
        return opts.moreRequests ? [{ type: "PROBE" }] : [];
      case "ready":
        return !firstDone || opts.moreRequests ? opts.requestVariants.map(reset) : [];
      case "gating":
        return [
          done("acquireDevice", { granted: true }),
          done("acquireDevice", {
            granted: false,
            refusal: {
              kind: "refusal",
              requestId: ctx.request?.requestId,
              host: HOST,
              bdf: BDF,
              reason: "cooldown",
              message: "spent",
              details: {},
              gates: [],
            },
          }),
          fail("acquireDevice"),
          ...timeouts,
        ];
      case "savingImage":
        return [done("saveImage", { image: { v: 1 } }), fail("saveImage"), ...timeouts];
      case "persistingImage":
        return [done("persistImage", { key: "image.k", revision: 1 }), fail("persistImage"), ...timeouts];
      case "regating":
        return [
          done("recheckGates", ctx.facts),
          done("recheckGates", {
            ...ctx.facts!,
            holders: [{ kind: "process", detail: "pid 1" }],
            siblings: [SIBLING],
          }),
          fail("recheckGates"),
          ...timeouts,
        ];
      case "quiescing":
        return [done("quiesceDevice"), fail("quiesceDevice", "cache-flush-timeout"), ...timeouts];
      case "resetting":
        return [
          done("resetDevice"),
          fail("resetDevice", "reset-error"),
          ...timeouts,
          ...(opts.moreRequests ? [reset("io")] : []),
        ];
      case "awaitingReady":
        return [done("awaitReady"), fail("awaitReady", "not-ready"), ...timeouts];
      case "restoring":
        return [done("restoreDevice"), fail("restoreDevice"), ...timeouts];
      case "committingDecoders":
        return [
          done("commitDecoders", { decoders: [{ bdf: BDF, index: 0, retained: false }] }),
          fail("commitDecoders", "commit-error"),
          ...timeouts,
        ];
      case "verifying":
        return [
          done("verifyDevice", PASSED),
          done("verifyDevice", CXL_CHANGED),
          done("verifyDevice", PCI_CHANGED),
          fail("verifyDevice"),
          ...timeouts,
        ];
      case "releasing":
        return [done("releaseDevice"), fail("releaseDevice"), ...timeouts];
      case "handingBack":
        return [
          done("handBackDriver", { drivers: { [BDF]: "cxl_pci" }, verify: PASSED }),
          done("handBackDriver", { drivers: { [BDF]: "cxl_pci" }, verify: CXL_CHANGED }),
          fail("handBackDriver", "driver-rebind"),
          ...timeouts,
        ];
      case "quarantined":
        return opts.moreRequests
          ? [reset("io"), { type: "RELEASE", operator: "op", reason: "model" } as EventObject]
          : [];
      default:
        return [];
    }
  };
}

/** What decides behaviour; timings, ids, times and the image payload are left out. */
export function serializeModelState(snapshot: AnyMachineSnapshot): string {
  const c = snapshot.context as LifecycleContext;
  return JSON.stringify([
    snapshot.value,
    c.facts ? [c.facts.flrCapable, c.facts.cxlResetCapable, c.facts.driver ?? null] : null,
    c.request ? [c.request.scope, c.request.allowEscalation ?? false, c.request.dryRun ?? false] : null,
    c.plan ? [c.plan.scope, c.plan.method, Object.keys(c.plan.handover ?? {}).length] : null,
    c.run.handoverArmed,
    c.refusal?.reason ?? null,
    c.run.persisted,
    c.run.leaseHeld,
    c.run.restoreScope,
    c.run.retries,
    c.run.repairing,
    c.run.resetStarted,
    c.run.resetCompleted,
    c.scopeViolations,
    c.outcome,
  ]);
}
