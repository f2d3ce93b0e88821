// Function Level Reset (PCIe base spec §6.6.2; as the kernel's pcie_flr): gate on FLR capable, wait for
// Transactions Pending to clear (then go on anyway, as the kernel does), Initiate FLR, touch nothing for
// 100 ms, then poll until the function answers.

import { readFlag, withField } from "../../../shared/cxl/regdef.ts";
import { PCIE } from "../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { readConfigReg, regHex, updateConfigReg } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { findPcieCap } from "./locate.ts";
import { notReady, requirePresent, waitAnswers } from "./ready.ts";
import type { ResetResult } from "./reset-result.ts";
import { pollUntil } from "./wait.ts";

/** The PCIe capability offset when the function advertises FLR, else null. */
export async function flrCapability(
  ctx: OpContext,
  bdf: string,
): Promise<{ pcie: number | null; devCap: number }> {
  const pcie = await findPcieCap(ctx.backend, bdf);
  if (pcie === null) return { pcie: null, devCap: 0 };
  const devCap = await readConfigReg(ctx.backend, bdf, pcie, PCIE.devCap);
  return { pcie: readFlag(PCIE.devCap, devCap, "flrCapable") ? pcie : null, devCap };
}

export async function resetFlr(
  ctx: OpContext,
  bdf: string,
): Promise<Omit<ResetResult, "method" | "durationMs">> {
  const b = ctx.backend;
  const t = ctx.timeouts;
  await requirePresent(ctx, bdf);
  const { pcie, devCap } = await flrCapability(ctx, bdf);
  if (pcie === null) {
    throw new CxlrcError("unsupported", `${bdf} does not advertise Function Level Reset`, {
      bdf,
      reason: "flr-unsupported",
      register: "pcie.devCap",
      value: regHex(PCIE.devCap, devCap),
    });
  }
  const pending = await pollUntil({
    clock: b.clock,
    read: () => readConfigReg(b, bdf, pcie, PCIE.devStatus),
    done: (v) => !readFlag(PCIE.devStatus, v, "transactionsPending"),
    pollMs: t.flrPendingPollMs,
    timeoutMs: t.flrPendingTimeoutMs,
  });
  if (!pending.ok) ctx.emit(bdf, "reset.transactions-pending", { waitedMs: pending.elapsedMs });
  await updateConfigReg(b, bdf, pcie, PCIE.devCtl, (v) => withField(PCIE.devCtl, v, "initiateFlr", true));
  ctx.emit(bdf, "reset.initiated", { method: "flr" });
  await b.clock.sleep(t.flrWaitMs);
  const r = await waitAnswers(ctx, bdf, t.readyTimeoutMs);
  if (!r.ok) throw notReady(bdf, t.flrWaitMs + t.readyTimeoutMs, r.last, { method: "flr" });
  return { bdf, target: bdf, reached: [bdf], details: { transactionsPendingCleared: pending.ok } };
}
