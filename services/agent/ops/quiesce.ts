// quiesce: Bus Master off (both scopes); full scope on a cache-capable device with caching enabled also
// writes back and invalidates the device cache (reset-rules.md step 3 and "Cache write-back"): set Disable
// Caching, then Initiate WB+I (only if WB+I Capable), poll Cache Invalid. A failed flush leaves the device as
// it was: Disable Caching and Bus Master go back to their old values before the error is thrown.

import type { QuiesceResult } from "../../../shared/bus/agent-contract.ts";
import type { Scope } from "../../../shared/bus/agent-messages.ts";
import { readFlag, withField } from "../../../shared/cxl/regdef.ts";
import { CXL_DEVICE, CXL_DVSEC_ID, PCI } from "../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { readConfigReg, regHex, updateConfigReg, writeConfigReg } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { findCxlDvsec } from "./locate.ts";
import { requirePresent } from "./ready.ts";
import { pollUntil } from "./wait.ts";

export type { QuiesceResult };

export interface QuiesceParams {
  bdf: string;
  scope: Scope;
}

export async function quiesce(ctx: OpContext, p: QuiesceParams): Promise<QuiesceResult> {
  const b = ctx.backend;
  const start = b.clock.now();
  await requirePresent(ctx, p.bdf);
  const command = await readConfigReg(b, p.bdf, 0, PCI.command);
  await writeConfigReg(b, p.bdf, 0, PCI.command, withField(PCI.command, command, "busMaster", false));
  const busMasterWas = readFlag(PCI.command, command, "busMaster");
  ctx.emit(p.bdf, "quiesce.bus-master-off", { busMasterWas });
  let cache: QuiesceResult["cache"] = "not-needed";
  let wbInvInitiated = false;
  if (p.scope === "full") {
    const dvsec = await findCxlDvsec(b, p.bdf, CXL_DVSEC_ID.device);
    if (dvsec) {
      try {
        const r = await flushCache(ctx, p.bdf, dvsec.offset);
        cache = r.flushed ? "flushed" : "not-needed";
        wbInvInitiated = r.wbInvInitiated;
      } catch (e) {
        // Leave the device as it was: Bus Master back on if it was.
        await writeConfigReg(b, p.bdf, 0, PCI.command, command);
        throw e;
      }
    }
  }
  const durationMs = b.clock.now() - start;
  ctx.emit(p.bdf, "quiesce.completed", { scope: p.scope, cache, durationMs });
  return { bdf: p.bdf, scope: p.scope, busMasterWas, cache, wbInvInitiated, durationMs };
}

/** Cache write-back + invalidate when Cache_Capable and Cache_Enable; throws "cache-flush-timeout". */
async function flushCache(
  ctx: OpContext,
  bdf: string,
  dvsec: number,
): Promise<{ flushed: boolean; wbInvInitiated: boolean }> {
  const b = ctx.backend;
  const cap = await readConfigReg(b, bdf, dvsec, CXL_DEVICE.capability);
  const control = await readConfigReg(b, bdf, dvsec, CXL_DEVICE.control);
  if (
    !readFlag(CXL_DEVICE.capability, cap, "cacheCapable") ||
    !readFlag(CXL_DEVICE.control, control, "cacheEnable")
  ) {
    return { flushed: false, wbInvInitiated: false };
  }
  const wbInvCapable = readFlag(CXL_DEVICE.capability, cap, "cacheWbInvCapable");
  // Control2 is a command register: every write starts from the value read with the Initiate bits masked.
  const { before } = await updateConfigReg(b, bdf, dvsec, CXL_DEVICE.control2, (v) =>
    withField(CXL_DEVICE.control2, v, "disableCaching", true),
  );
  const disableCachingWas = readFlag(CXL_DEVICE.control2, before, "disableCaching");
  if (wbInvCapable) {
    await updateConfigReg(b, bdf, dvsec, CXL_DEVICE.control2, (v) =>
      withField(CXL_DEVICE.control2, v, "initiateCacheWbInv", true),
    );
  }
  ctx.emit(bdf, "cache.flush-started", { wbInvInitiated: wbInvCapable });
  // Without WB+I the device still has to report Cache Invalid once Disable Caching took effect: never
  // reset a device that may hold dirty lines.
  const r = await pollUntil({
    clock: b.clock,
    read: () => readConfigReg(b, bdf, dvsec, CXL_DEVICE.status2),
    done: (v) => v !== 0xffff && readFlag(CXL_DEVICE.status2, v, "cacheInvalid"),
    pollMs: ctx.timeouts.cacheFlushPollMs,
    timeoutMs: ctx.timeouts.cacheFlushTimeoutMs,
  });
  if (!r.ok) {
    await updateConfigReg(b, bdf, dvsec, CXL_DEVICE.control2, (v) =>
      withField(CXL_DEVICE.control2, v, "disableCaching", disableCachingWas),
    );
    ctx.emit(bdf, "cache.flush-timeout", {
      waitedMs: r.elapsedMs,
      status2: regHex(CXL_DEVICE.status2, r.value),
    });
    throw new CxlrcError(
      "cache-flush-timeout",
      `${bdf}: Cache Invalid not set ${r.elapsedMs} ms after ${wbInvCapable ? "Initiate WB+I" : "Disable Caching"}`,
      {
        bdf,
        register: "dvsec.status2",
        value: regHex(CXL_DEVICE.status2, r.value),
        timeoutMs: ctx.timeouts.cacheFlushTimeoutMs,
      },
    );
  }
  ctx.emit(bdf, "cache.flushed", { waitedMs: r.elapsedMs, reads: r.reads });
  return { flushed: true, wbInvInitiated: wbInvCapable };
}
