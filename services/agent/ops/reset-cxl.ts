// CXL Reset (CXL r2.0 §9.7, DVSEC Control2 bit 2) on function 0, which resets CXL.cache/CXL.mem of every
// function of the device. Every rule of reset-rules.md "CXL Reset wait" is here: Control2 is written with
// its Initiate bits masked off, Mem Clr Enable only when asked and capable, nothing touched for 100 ms, then
// only Status2 is read until Complete, Error or max(declared timeout, 100 ms), with one read after the
// deadline; Disable Caching is cleared afterwards, also on failure.

import { readField, readFlag, withField } from "../../../shared/cxl/regdef.ts";
import {
  CXL_DEVICE,
  CXL_DVSEC_ID,
  CXL_RESET_TIMEOUT_MS,
  CXL_RESET_TIMEOUT_RESERVED_FALLBACK_MS,
} from "../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { readConfigReg, regHex, updateConfigReg, volatileMask, writeConfigReg } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { findCxlDvsec } from "./locate.ts";
import { requirePresent } from "./ready.ts";
import type { ResetResult } from "./reset-result.ts";
import { function0 } from "./topology.ts";
import { pollUntil } from "./wait.ts";

/** Declared CXL Reset Timeout; reserved encodings 5–7 fall back to 100 s and say so. */
export function cxlResetTimeout(capability: number): { ms: number; code: number; reserved: boolean } {
  const code = readField(CXL_DEVICE.capability, capability, "cxlResetTimeout");
  const ms = CXL_RESET_TIMEOUT_MS[code];
  return ms === undefined
    ? { ms: CXL_RESET_TIMEOUT_RESERVED_FALLBACK_MS, code, reserved: true }
    : { ms, code, reserved: false };
}

export async function resetCxl(
  ctx: OpContext,
  bdf: string,
  memClear: boolean,
): Promise<Omit<ResetResult, "method" | "durationMs">> {
  const b = ctx.backend;
  const t = ctx.timeouts;
  const fn0 = function0(bdf);
  await requirePresent(ctx, fn0);
  const dvsec = (await findCxlDvsec(b, fn0, CXL_DVSEC_ID.device))?.offset;
  if (dvsec === undefined) {
    throw new CxlrcError("unsupported", `${fn0} has no PCIe DVSEC for CXL Devices`, {
      bdf: fn0,
      reason: "not-cxl",
    });
  }
  const cap = await readConfigReg(b, fn0, dvsec, CXL_DEVICE.capability);
  const capHex = regHex(CXL_DEVICE.capability, cap);
  if (!readFlag(CXL_DEVICE.capability, cap, "cxlResetCapable")) {
    throw new CxlrcError("unsupported", `${fn0} is not CXL Reset Capable`, {
      bdf: fn0,
      reason: "cxl-reset-unsupported",
      register: "dvsec.capability",
      value: capHex,
      field: "cxlResetCapable",
    });
  }
  // Asked to clear memory on a device that cannot: refuse rather than reset without the clear the caller
  // relies on (e.g. before handing the device to another tenant).
  if (memClear && !readFlag(CXL_DEVICE.capability, cap, "cxlResetMemClrCapable")) {
    throw new CxlrcError("unsupported", `${fn0} is not CXL Reset Mem Clr Capable`, {
      bdf: fn0,
      reason: "mem-clr-unsupported",
      register: "dvsec.capability",
      value: capHex,
      field: "cxlResetMemClrCapable",
    });
  }
  const timeout = cxlResetTimeout(cap);
  if (timeout.reserved) {
    ctx.emit(fn0, "reset.timeout-reserved", {
      register: "dvsec.capability",
      value: capHex,
      code: timeout.code,
      usingMs: timeout.ms,
    });
  }
  const deadlineMs = Math.max(timeout.ms, t.cxlResetMinTimeoutMs);
  // Read-modify-write with Initiate WB+I / Initiate CXL Reset masked off (updateConfigReg drops CMD bits).
  await updateConfigReg(b, fn0, dvsec, CXL_DEVICE.control2, (v) => {
    const c = withField(CXL_DEVICE.control2, v, "cxlResetMemClrEnable", memClear);
    return withField(CXL_DEVICE.control2, c, "initiateCxlReset", true);
  });
  const initiatedAt = b.clock.now();
  ctx.emit(fn0, "reset.initiated", { method: "cxl", memClear, declaredTimeoutMs: timeout.ms, deadlineMs });
  let outcome: "complete" | "error" | "timeout" = "timeout";
  let status2 = 0xffff;
  try {
    // Config access is undefined for the first 100 ms: touch nothing.
    await b.clock.sleep(t.cxlResetNoTouchMs);
    const r = await pollUntil({
      clock: b.clock,
      read: () => readConfigReg(b, fn0, dvsec, CXL_DEVICE.status2),
      done: (v) =>
        v !== 0xffff &&
        (readFlag(CXL_DEVICE.status2, v, "cxlResetError") ||
          readFlag(CXL_DEVICE.status2, v, "cxlResetComplete")),
      pollMs: t.cxlResetPollMs,
      deadline: initiatedAt + deadlineMs,
    });
    status2 = r.value;
    if (r.ok) outcome = readFlag(CXL_DEVICE.status2, status2, "cxlResetError") ? "error" : "complete";
  } finally {
    await clearDisableCaching(ctx, fn0, dvsec);
  }
  const waitedMs = b.clock.now() - initiatedAt;
  const details = {
    bdf: fn0,
    register: "dvsec.status2",
    value: regHex(CXL_DEVICE.status2, status2),
    waitedMs,
    deadlineMs,
  };
  if (outcome === "error")
    throw new CxlrcError("reset-error", `${fn0}: CXL Reset reported Reset Error`, details);
  if (outcome === "timeout") {
    throw new CxlrcError(
      "reset-timeout",
      `${fn0}: CXL Reset neither completed nor failed within ${deadlineMs} ms`,
      details,
    );
  }
  return {
    bdf,
    target: fn0,
    reached: [fn0],
    details: {
      memClear,
      declaredTimeoutMs: timeout.ms,
      timeoutReserved: timeout.reserved,
      deadlineMs,
      waitedMs,
      status2: regHex(CXL_DEVICE.status2, status2),
    },
  };
}

/** Disable Caching off after a CXL Reset (also after a failed one); a device that reads all-ones is left alone. */
async function clearDisableCaching(ctx: OpContext, bdf: string, dvsec: number): Promise<void> {
  const b = ctx.backend;
  const cur = await readConfigReg(b, bdf, dvsec, CXL_DEVICE.control2);
  if (cur === 0xffff) {
    ctx.emit(bdf, "reset.disable-caching-unreachable", { register: "dvsec.control2", value: "0xffff" });
    return;
  }
  if (!readFlag(CXL_DEVICE.control2, cur, "disableCaching")) return;
  const clean = (cur & ~volatileMask(CXL_DEVICE.control2)) >>> 0;
  await writeConfigReg(
    b,
    bdf,
    dvsec,
    CXL_DEVICE.control2,
    withField(CXL_DEVICE.control2, clean, "disableCaching", false),
  );
}
