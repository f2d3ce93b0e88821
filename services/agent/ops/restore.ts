// restore: put a function back from its image.
// io scope: PCI config state only, as the kernel's pci_restore_state (PCIe control registers, BARs, then
//   Command last with its saved value).
// full scope (reset-rules.md "Restore order on the function"): PCI config first with Bus Master off, INTx
//   disabled and Memory Space on (the component registers sit behind a BAR) → DVSEC Control and Range Bases →
//   HDM Global Control → decoders 0..n−1 (restore-decoders.ts) → CONFIG_LOCK if it was set → Disable Caching
//   back → read back and compare every CXL field → only then the saved Command (Bus Master). On any failure
//   Command = INTx Disable only (the device stays disabled) and the error is thrown for the coordinator.
import type { DecoderOutcome, RestoreResult } from "../../../shared/bus/agent-contract.ts";
import type { Scope } from "../../../shared/bus/agent-messages.ts";
import { PCI } from "../../../shared/cxl/registers.ts";
import { CxlrcError, isCxlrcError } from "../../../shared/errors.ts";
import type { Image } from "../../../shared/image/schema.ts";
import { withoutDriver } from "../../../shared/image/without-driver.ts";
import { readConfigReg, writeConfigReg } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { hdmAtFromImage } from "./cxl-state.ts";
import { loadImage, pciStateOf } from "./image-input.ts";
import { DISABLED_COMMAND, restoreCommand, restorePciState, savedCommand } from "./pci-state.ts";
import { requirePresent } from "./ready.ts";
import { restoreDecoders } from "./restore-decoders.ts";
import { finishDvsec, restoreDvsec, restoreHdmGlobal } from "./restore-dvsec.ts";
import { verifyCxl } from "./verify.ts";

export type { DecoderOutcome, RestoreResult };

export interface RestoreParams {
  bdf: string;
  scope: Scope;
  image: unknown;
}

export async function restore(ctx: OpContext, p: RestoreParams): Promise<RestoreResult> {
  const image = loadImage(p.image, p.bdf);
  const b = ctx.backend;
  const start = b.clock.now();
  await requirePresent(ctx, p.bdf);
  await checkIdentity(ctx, p.bdf, image);
  ctx.emit(p.bdf, "restore.started", { scope: p.scope, checksum: image.checksum });
  // Restored as the driver left it (when the image was saved under one): the driver sets its own bits again.
  const pci = pciStateOf(withoutDriver(image));
  if (p.scope === "io") {
    await restorePciState(b, p.bdf, pci, savedCommand(pci));
    return done(ctx, p, image, [], start);
  }
  try {
    await restorePciState(b, p.bdf, pci, restoreCommand(savedCommand(pci)));
    let decoders: DecoderOutcome[] = [];
    const cxl = withoutDriver(image).cxl;
    if (cxl) {
      await restoreDvsec(ctx, p.bdf, cxl);
      const hdm = hdmAtFromImage(cxl);
      if (hdm && cxl.hdm) {
        await restoreHdmGlobal(ctx, p.bdf, hdm.at, cxl);
        decoders = await restoreDecoders(ctx, p.bdf, hdm, cxl.hdm);
      }
      await finishDvsec(ctx, p.bdf, cxl);
      const check = await verifyCxl(b, p.bdf, cxl);
      if (check.mismatches.length > 0) {
        const first = check.mismatches[0]!;
        throw new CxlrcError(
          "verify-mismatch",
          `${p.bdf}: ${check.mismatches.length} field(s) read back different after the restore, first ${first.register}.${first.field}`,
          { bdf: p.bdf, register: first.register, mismatches: check.mismatches },
        );
      }
    }
    // Every decoder verified: Bus Master and the rest of the saved Command last.
    await writeConfigReg(b, p.bdf, 0, PCI.command, savedCommand(pci));
    return done(ctx, p, image, decoders, start);
  } catch (e) {
    await disable(ctx, p.bdf);
    const err = isCxlrcError(e)
      ? e
      : new CxlrcError("backend", `restore of ${p.bdf} failed`, { bdf: p.bdf }, { cause: e });
    ctx.emit(p.bdf, "restore.failed", { scope: p.scope, kind: err.kind, ...err.details });
    throw err;
  }
}

/** The image must be of this device: same vendor and device id. */
async function checkIdentity(ctx: OpContext, bdf: string, image: Image): Promise<void> {
  const vendorId = await readConfigReg(ctx.backend, bdf, 0, PCI.vendorId);
  const deviceId = await readConfigReg(ctx.backend, bdf, 0, PCI.deviceId);
  if (vendorId !== image.identity.vendorId || deviceId !== image.identity.deviceId) {
    throw new CxlrcError(
      "bad-input",
      `${bdf} is ${hexId(vendorId, deviceId)}, the image is of ${hexId(image.identity.vendorId, image.identity.deviceId)}`,
      {
        bdf,
        register: "pci.vendorId",
        value: hexId(vendorId, deviceId),
      },
    );
  }
}

const hexId = (v: number, d: number) =>
  `${v.toString(16).padStart(4, "0")}:${d.toString(16).padStart(4, "0")}`;

/** After a failure: Command = INTx Disable only. A failure to write it is logged, the original error wins. */
async function disable(ctx: OpContext, bdf: string): Promise<void> {
  try {
    await writeConfigReg(ctx.backend, bdf, 0, PCI.command, DISABLED_COMMAND);
  } catch (e) {
    ctx.log.error({ bdf, err: e }, "could not disable the device after a failed restore");
  }
}

function done(
  ctx: OpContext,
  p: RestoreParams,
  image: Image,
  decoders: DecoderOutcome[],
  start: number,
): RestoreResult {
  const durationMs = ctx.backend.clock.now() - start;
  const configLock = p.scope === "full" && (image.cxl?.configLock ?? false);
  ctx.emit(p.bdf, "restore.completed", { scope: p.scope, durationMs, decoders: decoders.length });
  return { bdf: p.bdf, scope: p.scope, checksum: image.checksum, decoders, configLock, durationMs };
}
