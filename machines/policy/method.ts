// Scope → method (reset-rules "Two scopes"): io is FLR; full is the narrowest of CXL Reset, SBR through the
// bridge, VFIO_DEVICE_RESET. Escalation from io to full only when the request opts in, and the plan says so.
import type { ResetMethod, Scope } from "../../shared/bus/agent-messages.ts";
import type { DeviceFacts, FullResetMethod, ResetRequest } from "../facts.ts";
import type { RefusalReason } from "./types.ts";

export type MethodChoice =
  | { ok: true; scope: Scope; method: ResetMethod; escalated: boolean; escalationReason: string | null }
  | { ok: false; reason: RefusalReason; message: string; details: Record<string, unknown> };

/** Why a full-scope method is not available on this device, or null when it is. */
function unavailable(method: FullResetMethod, facts: DeviceFacts): string | null {
  switch (method) {
    case "cxl":
      return facts.cxlResetCapable
        ? null
        : "the device does not advertise CXL Reset Capable (DVSEC Capability bit 7)";
    case "sbr":
      return facts.bridge ? null : "no bridge above the device to issue a secondary bus reset through";
    case "vfio":
      return facts.vfioBound
        ? null
        : "the device is not bound to vfio-pci, so VFIO_DEVICE_RESET is not available";
  }
}

/** Narrowest first: CXL Reset touches only this device, SBR everything below the bridge, VFIO leaves the choice to the kernel. */
const FULL_PREFERENCE: FullResetMethod[] = ["cxl", "sbr", "vfio"];

function chooseFull(
  request: ResetRequest,
  facts: DeviceFacts,
  escalationReason: string | null,
): MethodChoice {
  const escalated = escalationReason !== null;
  if (request.method) {
    const why = unavailable(request.method, facts);
    if (why) {
      return {
        ok: false,
        reason: "method-unsupported",
        message: `requested method ${request.method} cannot be used on ${facts.bdf}: ${why}`,
        details: { method: request.method },
      };
    }
    return { ok: true, scope: "full", method: request.method, escalated, escalationReason };
  }
  const method = FULL_PREFERENCE.find((m) => unavailable(m, facts) === null);
  if (!method) {
    return {
      ok: false,
      reason: "no-full-reset-method",
      message:
        `${facts.bdf} has no full-scope reset: no CXL Reset capability, no bridge for a secondary bus reset, not bound to vfio-pci` +
        (escalated ? " (escalation from io scope was allowed, but there is nothing to escalate to)" : ""),
      details: { escalated },
    };
  }
  return { ok: true, scope: "full", method, escalated, escalationReason };
}

export function chooseMethod(request: ResetRequest, facts: DeviceFacts): MethodChoice {
  if (request.scope === "full") return chooseFull(request, facts, null);

  if (facts.flrCapable) {
    if (request.method) {
      return {
        ok: false,
        reason: "bad-request",
        message: `method ${request.method} is a full-scope method, but the request asks for io scope (FLR)`,
        details: { method: request.method },
      };
    }
    return { ok: true, scope: "io", method: "flr", escalated: false, escalationReason: null };
  }
  if (request.allowEscalation !== true) {
    return {
      ok: false,
      reason: "flr-unsupported",
      message: `${facts.bdf} does not advertise FLR (Device Capabilities bit 28); io scope is impossible and the request does not allow escalation to full scope`,
      details: {},
    };
  }
  return chooseFull(
    request,
    facts,
    `${facts.bdf} does not advertise FLR; escalated to full scope because the request allows it (allowEscalation: true)`,
  );
}
