// The driver hand-over of a full reset (issue #17): the device is saved under the driver the kernel bound,
// then taken from it, and given back once the reset is over. What is never done: unbind a driver under a
// user. Memory of the device that is online (or a CXL region of it in use) refuses the hand-over with the
// range or region named; the kernel itself would let the unbind pull the memory from under its users.
import type { Mismatch } from "../../../shared/bus/agent-contract.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { type BarDecoder, crossCheck } from "../../../shared/hw/kernel-cxl.ts";
import type { Image, ImageCxl } from "../../../shared/image/schema.ts";
import type { OpContext } from "./context.ts";
import { describeFunction } from "./topology.ts";

/** How long the kernel gets to probe the device's CXL endpoint again after the driver is bound (async probe). */
export const KERNEL_SETTLE_MS = 3000;

/** The driver found bound and its driver_override, as the image records them. */
export interface DriverRecord {
  name: string;
  override: string | null;
}

/** Refuse ("device-busy") when memory of the device is in use: the driver stays bound. */
export async function refuseIfMemoryInUse(ctx: OpContext, bdf: string, driver: string): Promise<void> {
  const inUse = (await ctx.backend.holders(bdf)).filter((h) => h.kind === "memory-online");
  if (inUse.length === 0) return;
  const what = inUse.map((h) => h.detail).join("; ");
  throw new CxlrcError(
    "device-busy",
    `${bdf}: memory of the device is in use (${what}); driver ${driver} stays bound: take the memory offline (or the region down) first`,
    { bdf, driver, inUse: inUse.map((h) => h.detail) },
  );
}

/** Unbind `expected` (the plan's driver): the device must be bound to it, or already to none (a repeat). */
export async function takeDriver(
  ctx: OpContext,
  bdf: string,
  expected: string,
): Promise<DriverRecord | null> {
  const b = ctx.backend;
  if (!b.capabilities.bind || !b.bindDriver) {
    throw new CxlrcError("unsupported", `the ${b.kind} backend cannot unbind drivers`, {
      bdf,
      reason: "bind-unsupported",
    });
  }
  const { me } = await describeFunction(b, bdf);
  if (me.driver === null) return null; // handed over already (the operation repeated after a crash)
  if (me.driver !== expected) {
    throw new CxlrcError(
      "device-busy",
      `${bdf} is bound to ${me.driver}, not ${expected} as planned: not taken from a driver the plan did not name`,
      { bdf, expected, actual: me.driver },
    );
  }
  await refuseIfMemoryInUse(ctx, bdf, me.driver);
  const override = b.driverOverride ? await b.driverOverride(bdf) : null;
  // The override is cleared while the device is ours, so that no probe binds a driver mid-reset.
  await b.bindDriver(bdf, null, { override: null });
  const after = await describeFunction(b, bdf);
  if (after.me.driver !== null) {
    throw new CxlrcError("backend", `${bdf}: still bound to ${after.me.driver} after unbind`, {
      bdf,
      driver: after.me.driver,
    });
  }
  ctx.emit(bdf, "driver.unbound", { driver: me.driver, override });
  return { name: me.driver, override };
}

/** Bind `driver` again and put its driver_override back; the driver bound afterwards is read back. */
export async function giveDriverBack(ctx: OpContext, bdf: string, rec: DriverRecord): Promise<string | null> {
  const b = ctx.backend;
  if (!b.bindDriver) {
    throw new CxlrcError("unsupported", `the ${b.kind} backend cannot bind drivers`, { bdf });
  }
  try {
    await b.bindDriver(bdf, rec.name, { override: rec.override });
  } catch (cause) {
    throw new CxlrcError(
      "driver-rebind",
      `${bdf}: driver ${rec.name} could not be bound again: ${(cause as Error).message}`,
      { bdf, driver: rec.name },
      { cause },
    );
  }
  const { me } = await describeFunction(b, bdf);
  if (me.driver !== rec.name) {
    throw new CxlrcError(
      "driver-rebind",
      `${bdf}: driver ${rec.name} did not bind again (bound: ${me.driver ?? "none"})`,
      { bdf, driver: rec.name, bound: me.driver },
    );
  }
  ctx.emit(bdf, "driver.rebound", { driver: me.driver, override: rec.override });
  return me.driver;
}

/** The HDM decoders of an image as the kernel view's cross-check takes them. */
export function barDecoders(cxl: ImageCxl): BarDecoder[] {
  return (cxl.hdm?.decoders ?? []).map((d) => {
    const r = (name: string) => BigInt(d.registers[name]?.raw ?? "0x0");
    return {
      index: d.index,
      base: (r("baseHigh") << 32n) | r("baseLow"),
      size: (r("sizeHigh") << 32n) | r("sizeLow"),
      committed: d.registers.control?.committed === true,
    };
  });
}

const asValue = (field: string, v: string): boolean | number =>
  field === "present" ? v !== "absent" : field === "committed" ? v === "committed" : Number(BigInt(v));

/**
 * The second half of "verify twice" (issue #17): with the driver back, the kernel's own view of the device
 * (/sys/bus/cxl) must show its endpoint again with the decoders of the image. Only where the kernel had the
 * endpoint when the image was taken (image.driver.kernelView.endpoint). Waits up to KERNEL_SETTLE_MS for its
 * probe.
 */
export async function kernelViewMismatches(ctx: OpContext, bdf: string, image: Image): Promise<Mismatch[]> {
  const b = ctx.backend;
  // Compared only where the kernel had the device's endpoint when the image was taken: no endpoint then
  // (its probe had failed), none expected now.
  if (!b.cxlView || !image.driver?.kernelView?.endpoint || !image.cxl?.hdm) return [];
  const deadline = b.clock.now() + KERNEL_SETTLE_MS;
  let view = await b.cxlView(bdf).catch(() => null);
  while (!view?.endpoint && b.clock.now() < deadline) {
    await b.clock.sleep(100);
    view = await b.cxlView(bdf).catch(() => null);
  }
  if (!view?.endpoint) {
    return [{ register: "kernel.endpoint", field: "present", expected: true, actual: false, domain: "cxl" }];
  }
  return crossCheck(view, barDecoders(image.cxl)).map((d) => ({
    register: `kernel.decoder${d.decoder}`,
    field: d.field,
    expected: asValue(d.field, d.bar),
    actual: asValue(d.field, d.kernel),
    domain: "cxl" as const,
  }));
}
