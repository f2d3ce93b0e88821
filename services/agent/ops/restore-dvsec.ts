// The DVSEC and HDM Global Control part of a full-scope restore: DVSEC Control and Range Base registers
// (RWL: refused with "locked" when CONFIG_LOCK is set and they differ), Control2's configuration bits
// (Disable Caching left as it is until the end), HDM Global Control; and the tail: CONFIG_LOCK last if it
// was set, then Disable Caching back to the image's value.

import { configMask, field, fieldMaskInPlace, readFlag, withField } from "../../../shared/cxl/regdef.ts";
import { CXL_DEVICE, HDM } from "../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import type { ImageCxl } from "../../../shared/image/schema.ts";
import { type MmioAt, readConfigReg, regHex, writeConfigReg, writeMmioReg } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { RANGE_BASES, rawOf, regName } from "./cxl-regs.ts";

const DISABLE_CACHING = fieldMaskInPlace(field(CXL_DEVICE.control2, "disableCaching"));

export async function restoreDvsec(ctx: OpContext, bdf: string, cxl: ImageCxl): Promise<void> {
  const b = ctx.backend;
  const base = cxl.dvsec.offset;
  const regs = cxl.dvsec.registers;
  const lock = await readConfigReg(b, bdf, base, CXL_DEVICE.lock);
  const locked = readFlag(CXL_DEVICE.lock, lock, "configLock");
  for (const def of [CXL_DEVICE.control, ...RANGE_BASES]) {
    const name = regName.dvsec(def);
    const want = rawOf(regs[def.name], name) & configMask(def);
    if (locked) {
      const cur = await readConfigReg(b, bdf, base, def);
      if ((cur & configMask(def)) !== want) {
        throw new CxlrcError("locked", `${bdf}: ${name} differs from the image and CONFIG_LOCK is set`, {
          bdf,
          register: name,
          value: regHex(def, cur),
          expected: regHex(def, want),
          reason: "config-lock",
        });
      }
      continue;
    }
    await writeConfigReg(b, bdf, base, def, want);
  }
  // Control2: configuration bits from the image, Initiate bits never, Disable Caching as it stands.
  const c2 = CXL_DEVICE.control2;
  const cur2 = await readConfigReg(b, bdf, base, c2);
  const want2 = rawOf(regs[c2.name], regName.dvsec(c2)) & configMask(c2) & ~DISABLE_CACHING;
  await writeConfigReg(b, bdf, base, c2, (want2 | (cur2 & DISABLE_CACHING)) >>> 0);
  ctx.emit(bdf, "restore.dvsec", { configLocked: locked });
}

export async function restoreHdmGlobal(
  ctx: OpContext,
  bdf: string,
  at: MmioAt,
  cxl: ImageCxl,
): Promise<void> {
  if (!cxl.hdm) return;
  const want = rawOf(cxl.hdm.globalControl, "hdm.hdmGlobalControl") & configMask(HDM.globalControl);
  await writeMmioReg(ctx.backend, bdf, at, HDM.globalControl, want);
}

/** CONFIG_LOCK last if the image had it, then Disable Caching to the image's value (clear, normally). */
export async function finishDvsec(ctx: OpContext, bdf: string, cxl: ImageCxl): Promise<void> {
  const b = ctx.backend;
  const base = cxl.dvsec.offset;
  if (cxl.configLock) {
    const cur = await readConfigReg(b, bdf, base, CXL_DEVICE.lock);
    if (!readFlag(CXL_DEVICE.lock, cur, "configLock")) {
      await writeConfigReg(b, bdf, base, CXL_DEVICE.lock, withField(CXL_DEVICE.lock, 0, "configLock", true));
    }
  }
  const c2 = CXL_DEVICE.control2;
  const saved = rawOf(cxl.dvsec.registers[c2.name], regName.dvsec(c2));
  const cur = await readConfigReg(b, bdf, base, c2);
  if (((cur ^ saved) & DISABLE_CACHING) !== 0) {
    await writeConfigReg(
      b,
      bdf,
      base,
      c2,
      ((cur & configMask(c2) & ~DISABLE_CACHING) | (saved & DISABLE_CACHING)) >>> 0,
    );
  }
}
