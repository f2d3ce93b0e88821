// "Until the function answers": vendor id not all-ones (absent / not ready) and not 0x0001 (the value a
// Configuration Request Retry Status completion reads as with CRS Software Visibility on).

import { PCI } from "../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { readConfigReg, regHex } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { pollUntil } from "./wait.ts";

const CRS_VENDOR_ID = 0x0001;

export function answers(vendorId: number): boolean {
  return vendorId !== 0xffff && vendorId !== CRS_VENDOR_ID;
}

export function readVendorId(ctx: OpContext, bdf: string): Promise<number> {
  return readConfigReg(ctx.backend, bdf, 0, PCI.vendorId);
}

/** Polls the vendor id every readyPollMs up to timeoutMs; ok when it answered, with the last value read. */
export async function waitAnswers(
  ctx: OpContext,
  bdf: string,
  timeoutMs: number,
): Promise<{ ok: boolean; last: number }> {
  const r = await pollUntil({
    clock: ctx.backend.clock,
    read: () => readVendorId(ctx, bdf),
    done: answers,
    pollMs: ctx.timeouts.readyPollMs,
    timeoutMs,
  });
  return { ok: r.ok, last: r.value };
}

/** The function must answer now, or the operation fails with "device-absent" naming the read. */
export async function requirePresent(ctx: OpContext, bdf: string): Promise<number> {
  const v = await readVendorId(ctx, bdf);
  if (!answers(v)) {
    throw new CxlrcError(
      "device-absent",
      `${bdf} does not answer (vendor id reads ${regHex(PCI.vendorId, v)})`,
      {
        bdf,
        register: "pci.vendorId",
        value: regHex(PCI.vendorId, v),
      },
    );
  }
  return v;
}

export function notReady(
  bdf: string,
  waitedMs: number,
  last: number,
  extra: Record<string, unknown> = {},
): CxlrcError {
  return new CxlrcError("not-ready", `${bdf} did not answer within ${waitedMs} ms after the reset`, {
    bdf,
    register: "pci.vendorId",
    value: regHex(PCI.vendorId, last),
    waitedMs,
    ...extra,
  });
}
