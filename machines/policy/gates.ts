// The gates a reset must pass (reset-rules "full scope" step 1, "Guards"), each a pure function returning a
// GateResult: passed, or refused with a machine-readable reason and a sentence naming what is in the way.
import type { ResetMethod, Scope } from "../../shared/bus/agent-messages.ts";
import type { Holder } from "../../shared/hw/backend.ts";
import type { AddressRange, DeviceFacts, ResetRequest } from "../facts.ts";
import { isBreakerOpen } from "./breaker.ts";
import { checkBudget } from "./budget.ts";
import { checkSlots } from "./concurrency.ts";
import type { ConfigLockHandling, GateResult, Plan, PolicyContext, Refusal } from "./types.ts";

const pass = (gate: GateResult["gate"], message: string, details?: Record<string, unknown>): GateResult => ({
  gate,
  passed: true,
  message,
  ...(details ? { details } : {}),
});

/** The request names this device, its deadline parses and has not passed. */
export function requestGate(request: ResetRequest, facts: DeviceFacts): GateResult {
  if (request.host !== facts.host || request.bdf !== facts.bdf) {
    return {
      gate: "request",
      passed: false,
      reason: "bad-request",
      message: `request names ${request.host} ${request.bdf} but the facts are for ${facts.host} ${facts.bdf}`,
    };
  }
  if (request.deadline !== undefined && Number.isNaN(Date.parse(request.deadline))) {
    return {
      gate: "request",
      passed: false,
      reason: "bad-request",
      message: `deadline ${JSON.stringify(request.deadline)} is not an ISO time`,
    };
  }
  return pass("request", "request names this device");
}

export function deadlineGate(request: Pick<ResetRequest, "deadline">, nowMs: number): GateResult {
  if (request.deadline === undefined) return pass("deadline", "no deadline");
  const deadlineMs = Date.parse(request.deadline);
  if (deadlineMs <= nowMs) {
    return {
      gate: "deadline",
      passed: false,
      reason: "deadline-passed",
      message: `the request's deadline ${request.deadline} has passed`,
      details: { deadline: request.deadline, nowMs },
    };
  }
  return pass("deadline", `deadline ${request.deadline} not reached`);
}

export function quarantineGate(ctx: PolicyContext, bdf: string): GateResult {
  return ctx.quarantined
    ? {
        gate: "quarantine",
        passed: false,
        reason: "quarantined",
        message: `${bdf} is quarantined: no reset until an operator releases it`,
      }
    : pass("quarantine", "not quarantined");
}

/** One operation per device: the lease. The same request may re-plan (a new owner continuing it). */
export function leaseGate(request: ResetRequest, ctx: PolicyContext): GateResult {
  if (ctx.activeRequestId !== null && ctx.activeRequestId !== request.requestId) {
    return {
      gate: "lease",
      passed: false,
      reason: "in-progress",
      message: `${request.bdf} is already being reset by request ${ctx.activeRequestId}`,
      details: { activeRequestId: ctx.activeRequestId },
    };
  }
  return pass("lease", "no other operation on the device");
}

export function breakerGate(ctx: PolicyContext): GateResult {
  if (!isBreakerOpen(ctx.breaker)) return pass("breaker", "fleet circuit breaker closed");
  const since =
    ctx.breaker.openedAtMs === null ? "" : ` since ${new Date(ctx.breaker.openedAtMs).toISOString()}`;
  return {
    gate: "breaker",
    passed: false,
    reason: "breaker-open",
    message: `fleet circuit breaker open${since}: ${ctx.breaker.reason ?? "too many failures"}; an operator must close it`,
    details: { openedAtMs: ctx.breaker.openedAtMs },
  };
}

export function budgetGate(ctx: PolicyContext, bdf: string): GateResult {
  const check = checkBudget(ctx.budget, ctx.policy, ctx.nowMs);
  if (check.allowed) return pass("budget", `${check.remaining} attempt(s) left in the window`);
  return {
    gate: "budget",
    passed: false,
    reason: "cooldown",
    message: `${bdf} spent its attempt budget (${ctx.policy.maxAttemptsPerWindow} per ${ctx.policy.attemptWindowMs} ms); cooldown ends ${new Date(check.untilMs).toISOString()}`,
    details: { untilMs: check.untilMs, attemptsInWindow: check.attemptsInWindow },
    retryAfterMs: Math.max(0, check.untilMs - ctx.nowMs),
  };
}

export function concurrencyGates(
  request: ResetRequest,
  facts: DeviceFacts,
  ctx: PolicyContext,
): GateResult[] {
  const switchId = facts.bridge?.switchId ?? null;
  const check = checkSlots(ctx.concurrency, ctx.policy, {
    requestId: request.requestId,
    host: request.host,
    switchId,
  });
  const host = pass(
    "host-concurrency",
    `below ${ctx.policy.maxConcurrentPerHost} concurrent resets on ${request.host}`,
  );
  const sw = pass(
    "switch-concurrency",
    switchId === null
      ? "not below a switch"
      : `below ${ctx.policy.maxConcurrentPerSwitch} concurrent resets on switch ${switchId}`,
  );
  if (check.ok) return [host, sw];
  const refused: GateResult = {
    gate: check.reason === "host-busy" ? "host-concurrency" : "switch-concurrency",
    passed: false,
    reason: check.reason,
    message:
      check.reason === "host-busy"
        ? `${request.host} already runs ${check.inFlight.length} reset(s) (${check.inFlight.join(", ")}), the limit is ${ctx.policy.maxConcurrentPerHost}; retry in ${check.retryAfterMs} ms`
        : `switch ${switchId} already runs ${check.inFlight.length} reset(s) (${check.inFlight.join(", ")}), the limit is ${ctx.policy.maxConcurrentPerSwitch}; retry in ${check.retryAfterMs} ms`,
    details: { inFlight: check.inFlight },
    retryAfterMs: check.retryAfterMs,
  };
  return check.reason === "host-busy" ? [refused, sw] : [host, refused];
}

export function memClearGate(request: ResetRequest, facts: DeviceFacts, method: ResetMethod): GateResult {
  if (request.memClear !== true) return pass("mem-clear", "no memory clear asked");
  if (method !== "cxl") {
    return {
      gate: "mem-clear",
      passed: false,
      reason: "mem-clear-unsupported",
      message: `memory clear is a CXL Reset option (Mem Clr Enable) and the plan uses ${method}`,
    };
  }
  if (!facts.memClrCapable) {
    return {
      gate: "mem-clear",
      passed: false,
      reason: "mem-clear-unsupported",
      message: `${facts.bdf} does not advertise CXL Reset Mem Clr Capable (DVSEC Capability bit 11)`,
    };
  }
  return pass("mem-clear", "Mem Clr Enable will be set with the CXL Reset");
}

const holderName = (h: Holder): string =>
  h.kind === "vfio-group"
    ? `open VFIO group ${h.detail}`
    : h.kind === "driver"
      ? `driver ${h.detail} in use`
      : h.kind === "process"
        ? `process ${h.detail}`
        : h.kind === "memory-online"
          ? `online memory ${h.detail}`
          : `${h.kind} ${h.detail}`;

function rangeName(base: bigint, size: bigint): string {
  return `0x${base.toString(16)}-0x${(base + size - 1n).toString(16)}`;
}

function parseHex(s: string): bigint | null {
  try {
    return /^0x[0-9a-f]+$/i.test(s) ? BigInt(s) : null;
  } catch {
    return null;
  }
}

/** Committed decoder ranges that overlap online memory (or cannot be told apart from it). */
function rangesInUse(facts: DeviceFacts): string[] {
  const online: Array<[bigint, bigint] | null> = facts.memoryOnline.map((r: AddressRange) => {
    const b = parseHex(r.base);
    const s = parseHex(r.size);
    return b === null || s === null ? null : [b, s];
  });
  const busy: string[] = [];
  for (const d of facts.decoders) {
    if (!d.committed) continue;
    const base = parseHex(d.base);
    const size = parseHex(d.size);
    if (base === null || size === null) {
      busy.push(`decoder ${d.index} (unreadable range ${d.base}+${d.size})`);
      continue;
    }
    // A malformed online range cannot be shown to be free: count it as overlapping (fail safe).
    const hit = online.some((o) => o === null || (o[0] < base + size && base < o[0] + o[1]));
    if (hit) busy.push(`decoder ${d.index} range ${rangeName(base, size)} is online`);
  }
  return busy;
}

/**
 * The driver a full reset takes from the device for its length and gives back after (issue #17): the one the
 * backend reports holding it (a driver that claims the device: on a real host every driver but the vfio-pci
 * cxlrc bound itself). Not vfio-pci when the reset goes through VFIO: that one stays and resets the device.
 */
export function handoverOf(
  scope: Scope,
  method: ResetMethod,
  facts: DeviceFacts,
  targets: readonly string[],
): Record<string, string> | null {
  if (scope !== "full") return null;
  const held: Record<string, string> = { ...(facts.functionDrivers ?? {}) };
  // Facts without the per-function map (older probes): the device's own driver, when it holds the device.
  if (
    !facts.functionDrivers &&
    facts.driver &&
    facts.holders.some((h) => h.kind === "driver" && h.detail === facts.driver)
  ) {
    held[facts.bdf] = facts.driver;
  }
  for (const [t, hs] of Object.entries(facts.siblingHolders ?? {})) {
    const d = hs.find((h) => h.kind === "driver");
    if (d && !(t in held)) held[t] = d.detail;
  }
  const out: Record<string, string> = {};
  for (const t of targets) {
    const driver = held[t];
    if (!driver || (method === "vfio" && /^vfio[-_]pci$/.test(driver))) continue;
    out[t] = driver;
  }
  return Object.keys(out).length > 0 ? out : null;
}

/** "cxl_pci" for the device alone, "0000:01:00.0 cxl_pci, 0000:01:00.1 cxl_accel" for several functions. */
export function handoverText(handover: Record<string, string>): string {
  const e = Object.entries(handover);
  return e.length === 1 ? e[0]![1] : e.map(([bdf, d]) => `${bdf} ${d}`).join(", ");
}

/**
 * Full scope: the host range of every committed decoder must be free and nothing may hold a target. The
 * driver the plan hands over is no holder (it is unbound for the reset); memory of the device in use is, so
 * that a driver is never taken from under a user.
 */
export function deviceBusyGate(
  scope: Scope,
  facts: DeviceFacts,
  targets: string[],
  handover: Record<string, string> | null = null,
): GateResult {
  if (scope === "io") return pass("device-busy", "io scope keeps CXL.mem: memory and holders may stay");
  const busy = [
    ...rangesInUse(facts),
    ...facts.holders
      .filter((h) => !(h.kind === "driver" && Object.values(handover ?? {}).includes(h.detail)))
      .map(holderName),
    ...targets.flatMap((t) =>
      (facts.siblingHolders?.[t] ?? [])
        .filter((h) => !(h.kind === "driver" && handover?.[t] === h.detail))
        .map((h) => `${t}: ${holderName(h)}`),
    ),
  ];
  if (busy.length === 0) {
    return pass(
      "device-busy",
      handover
        ? `no online memory and no holder but driver ${handoverText(handover)}, handed over for the reset and bound again after`
        : "no online memory and no holder",
    );
  }
  return {
    gate: "device-busy",
    passed: false,
    reason: "device-busy",
    message: `${facts.bdf} is in use: ${busy.join("; ")}`,
    details: { inUse: busy },
  };
}

/** SBR resets everything below the bridge: every sibling must be in the plan. */
export function siblingGate(method: ResetMethod, facts: DeviceFacts, targets: string[]): GateResult {
  if (method !== "sbr") return pass("siblings", `${method} does not reach other functions below the bridge`);
  const outside = facts.siblings.filter((s) => !targets.includes(s));
  if (outside.length === 0) return pass("siblings", "every function below the bridge is in the plan");
  return {
    gate: "siblings",
    passed: false,
    reason: "sibling-busy",
    message: `a secondary bus reset on ${facts.bridge?.bdf ?? "the bridge"} would also reset ${outside.join(", ")}, which the plan does not include (set includeSiblings to save and restore them too)`,
    details: { siblings: outside },
  };
}

/**
 * CONFIG_LOCK never refuses by itself; it decides how the restore treats the locked fields.
 * CONFIG_LOCK is RWO: once set, the RWL fields (DVSEC Control, Range Base) are read-only until a
 * conventional reset (cxl-registers.md, DVSEC Lock). CXL Reset is not a conventional reset and RWL fields
 * once locked are not affected by it (CXL r4.0 Table 8-1; QEMU's CXL Reset emulation keeps them), so after a
 * CXL Reset the lock and the locked fields are still there: restore cannot and need not write them, and
 * verify reads them back against the image — if a device did clear them anyway, verify fails and the
 * failure path quarantines; we never report them restored without reading them. SBR is a conventional
 * (hot) reset: the lock clears, restore rewrites the fields and sets CONFIG_LOCK last (reset-rules step 5).
 * FLR does not reach the DVSEC. VFIO_DEVICE_RESET leaves the method to the kernel: the agent reads the lock
 * after the reset and does whichever applies.
 */
export function configLockHandling(facts: DeviceFacts, method: ResetMethod): ConfigLockHandling {
  if (!facts.configLock) return "not-set";
  switch (method) {
    case "flr":
      return "untouched";
    case "cxl":
      return "retained";
    case "sbr":
      return "relock-last";
    case "vfio":
    case "kernel":
      return "retained-or-relock";
  }
}

export function configLockGate(facts: DeviceFacts, method: ResetMethod): GateResult {
  const handling = configLockHandling(facts, method);
  const message: Record<ConfigLockHandling, string> = {
    "not-set": "CONFIG_LOCK not set",
    untouched: "CONFIG_LOCK set; FLR does not touch the locked DVSEC fields",
    retained:
      "CONFIG_LOCK set; CXL Reset keeps the lock and the locked fields: restore leaves them, verify reads them back",
    "relock-last":
      "CONFIG_LOCK set; the reset clears it: restore rewrites the locked fields and sets CONFIG_LOCK last",
    "retained-or-relock":
      "CONFIG_LOCK set; the kernel picks the method: restore relocks if the lock cleared, else verifies the kept fields",
  };
  return pass("config-lock", message[handling], { handling });
}

export function firstRefusal(gates: GateResult[]): GateResult | undefined {
  return gates.find((g) => !g.passed);
}

export function refusalFrom(
  request: Pick<ResetRequest, "requestId" | "host" | "bdf">,
  failed: GateResult,
  gates: GateResult[],
): Refusal {
  return {
    kind: "refusal",
    requestId: request.requestId,
    host: request.host,
    bdf: request.bdf,
    reason: failed.reason ?? "bad-request",
    message: failed.message,
    details: failed.details ?? {},
    ...(failed.retryAfterMs !== undefined ? { retryAfterMs: failed.retryAfterMs } : {}),
    gates,
  };
}

/**
 * The re-check right before the device is touched, under the lease, on freshly read facts: holders may have
 * opened the device, memory may have come online, siblings may have appeared below the bridge, the request's
 * deadline may have passed while the image was saved.
 */
export function regate(plan: Plan, facts: DeviceFacts, nowMs: number): Refusal | null {
  const gates = [
    deadlineGate({ deadline: plan.startBy ?? undefined }, nowMs),
    deviceBusyGate(plan.scope, facts, plan.targets, plan.handover ?? null),
    siblingGate(plan.method, facts, plan.targets),
  ];
  const failed = firstRefusal(gates);
  return failed ? refusalFrom(plan, failed, gates) : null;
}
