// Kernel reset through sysfs: select the method in `reset_method`, write "1" to `reset`, then put the
// old method list back. The kernel saves and restores the PCI config state around it, not the CXL state.
import { CxlrcError, describeError } from "../../../../shared/errors.ts";
import type { Logger } from "../../../../shared/log.ts";
import type { AttrIo } from "./sysfs-attr.ts";
import { deviceFile, type SysfsRoots } from "./sysfs-paths.ts";

export interface KernelResetDeps {
  roots: SysfsRoots;
  io: AttrIo;
  log: Logger;
}

const splitMethods = (text: string) => text.split(/\s+/).filter((m) => m !== "");

export async function kernelReset(deps: KernelResetDeps, bdf: string, method: string): Promise<void> {
  const { roots, io, log } = deps;
  const methodPath = deviceFile(roots, bdf, "reset_method");
  const resetPath = deviceFile(roots, bdf, "reset");
  if (!/^[a-z_]+$/.test(method)) {
    throw new CxlrcError("bad-input", `not a kernel reset method name: ${JSON.stringify(method)}`, { bdf });
  }
  const before = await io.readAttr(methodPath);
  if (before === null) {
    throw new CxlrcError(
      "unsupported",
      `${methodPath} does not exist (kernel older than 5.15?): cannot choose reset method "${method}"`,
      { bdf, method },
    );
  }
  const methods = splitMethods(before);
  if (!methods.includes(method)) {
    throw new CxlrcError(
      "unsupported",
      `reset method "${method}" is not available for ${bdf} (reset_method: ${before.trim() || "none"})`,
      { bdf, method, available: methods },
    );
  }

  let selected = false;
  try {
    await io.writeAttr(methodPath, method, log);
    selected = true;
  } catch (e) {
    if (!(e instanceof CxlrcError) || e.kind !== "backend") throw e;
    // Without a writable reset_method the kernel tries its list in order: only the first one is certain.
    if (methods[0] !== method) {
      throw new CxlrcError(
        "unsupported",
        `cannot select reset method "${method}" for ${bdf} (${describeError(e)}), and the kernel would try "${methods[0]}" first`,
        { bdf, method, available: methods },
        { cause: e },
      );
    }
    log.warn({ bdf, method, err: e }, "reset_method not writable; the method is the kernel's first choice");
  }

  let failure: unknown;
  try {
    await io.writeAttr(resetPath, "1", log);
  } catch (e) {
    failure = new CxlrcError(
      "reset-error",
      `kernel reset of ${bdf} by "${method}" failed: ${describeError(e)}`,
      { bdf, method },
      { cause: e },
    );
  }
  if (selected) {
    try {
      await io.writeAttr(methodPath, before, log);
    } catch (e) {
      log.error({ bdf, err: e, previous: before }, "could not restore reset_method");
      failure ??= new CxlrcError(
        "backend",
        `reset of ${bdf} done, but restoring reset_method to "${before}" failed: ${describeError(e)}`,
        { bdf, method },
        { cause: e },
      );
    }
  }
  if (failure) throw failure;
}
