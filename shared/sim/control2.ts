// DVSEC Control2 actions (CXL r2.0 §8.1.3.4, §9.7): cache write-back + invalidate, and CXL Reset of every
// function of the device, started from function 0; results appear in Status2 after their delays.
import { CXL_RESET_TIMEOUT_MS, CXL_RESET_TIMEOUT_RESERVED_FALLBACK_MS } from "../cxl/registers.ts";
import { BIT } from "./bits.ts";
import type { SimFunction } from "./function.ts";

/** A write to DVSEC Control2 (old/new value after access semantics, cmd = CMD bits written as 1). */
export function control2Written(f: SimFunction, old: number, value: number, cmd: number): void {
  if (old & BIT.disableCaching && !(value & BIT.disableCaching)) {
    // Cache Invalid reads 0 while caching is enabled.
    f.update("dvsec.status2", 0, BIT.cacheInvalid);
    f.cancel("flush");
  }
  const d = f.model.kind === "endpoint" ? f.model.device : undefined;
  if (cmd & BIT.initiateCacheWbInv && d?.cacheWbInvCapable && value & BIT.disableCaching) {
    f.update("dvsec.status2", 0, BIT.cacheInvalid);
    if (!f.fault("cache-invalid-stuck"))
      f.schedule("flush", f.model.timings.cacheFlushDelayMs, () => {
        if (f.get("dvsec.control2") & BIT.disableCaching) f.update("dvsec.status2", BIT.cacheInvalid);
        f.counters.cacheFlushes++;
      });
  }
  if (cmd & BIT.initiateCxlReset && f.model.kind === "endpoint" && f.model.cxlResetOwner) cxlReset(f, value);
}

/** CXL Reset (CXL r2.0 §9.7), started on function 0 for every function of the device. */
function cxlReset(f: SimFunction, control2: number): void {
  if (f.model.kind !== "endpoint") return;
  const d = f.model.device;
  const t = f.model.timings;
  f.update("dvsec.status2", 0, BIT.cxlResetComplete | BIT.cxlResetError);
  const declaredMs = CXL_RESET_TIMEOUT_MS[d.cxlResetTimeout] ?? CXL_RESET_TIMEOUT_RESERVED_FALLBACK_MS;
  const cacheDirty =
    d.cacheCapable &&
    f.get("dvsec.control") & BIT.cacheEnable &&
    !(control2 & BIT.disableCaching && f.get("dvsec.status2") & BIT.cacheInvalid);
  const outcome = f.fault("cxl-reset-stuck")
    ? "stuck"
    : f.fault("cxl-reset-error") || cacheDirty
      ? "error"
      : "ok";
  const memClear = outcome === "ok" && (control2 & BIT.cxlResetMemClrEnable) !== 0 && d.memClrCapable;
  for (const g of f.siblings) {
    if (outcome === "ok") g.cxlStateReset(false);
    g.notReadyFor(t.cxlResetNoTouchMs);
  }
  if (outcome === "stuck") {
    f.cancel("cxlReset");
    return;
  }
  f.schedule("cxlReset", Math.min(t.cxlResetDurationMs, declaredMs), () => {
    if (outcome === "error") {
      f.update("dvsec.status2", BIT.cxlResetError);
      return;
    }
    f.update("dvsec.status2", BIT.cxlResetComplete);
    for (const g of f.siblings) g.counters.cxlReset++;
    if (memClear) f.counters.memCleared++;
  });
}
