// bind: driver_override + drivers_probe through the backend (null = unbind only). With `verify` it is the
// hand-back of a reset (issue #17): the driver the save took is bound again, its driver_override put back,
// and the device read back against its image with the driver in place.
import type { BindResult } from "../../../shared/bus/agent-contract.ts";
import type { Scope } from "../../../shared/bus/agent-messages.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import type { OpContext } from "./context.ts";
import { giveDriverBack, kernelViewMismatches } from "./handover.ts";
import { loadImage } from "./image-input.ts";
import { describeFunction } from "./topology.ts";
import { verify } from "./verify.ts";

export type { BindResult };

export interface BindParams {
  bdf: string;
  driver: string | null;
  /** driver_override to leave behind (null clears it); absent: the driver bound, none when unbinding. */
  override?: string | null;
  verify?: { scope: Scope; image: unknown };
}

export async function bind(ctx: OpContext, p: BindParams): Promise<BindResult> {
  const b = ctx.backend;
  if (!b.capabilities.bind || !b.bindDriver) {
    throw new CxlrcError("unsupported", `the ${b.kind} backend cannot bind drivers`, {
      bdf: p.bdf,
      reason: "bind-unsupported",
    });
  }
  const { me: before } = await describeFunction(b, p.bdf);
  if (p.verify && p.driver !== null) {
    await giveDriverBack(ctx, p.bdf, { name: p.driver, override: p.override ?? null });
    const verified = await verify(ctx, {
      bdf: p.bdf,
      scope: p.verify.scope,
      image: p.verify.image,
      driverMayClaimBar: true,
    });
    // And the kernel's view: its endpoint back, with the image's decoders.
    const kernel = await kernelViewMismatches(ctx, p.bdf, loadImage(p.verify.image, p.bdf));
    if (kernel.length > 0) ctx.emit(p.bdf, "kernel-view.differs", { mismatches: kernel });
    const all = [...verified.mismatches, ...kernel];
    return {
      bdf: p.bdf,
      driver: p.driver,
      previous: before.driver,
      verify: { ...verified, mismatches: all, passed: all.length === 0 },
    };
  }
  const previous = await b.bindDriver(
    p.bdf,
    p.driver,
    p.override === undefined ? {} : { override: p.override },
  );
  const { me } = await describeFunction(b, p.bdf);
  if (me.driver !== p.driver) {
    throw new CxlrcError(
      "backend",
      `${p.bdf}: asked for driver ${p.driver ?? "none"}, now bound to ${me.driver ?? "none"}`,
      {
        bdf: p.bdf,
        expected: p.driver,
        actual: me.driver,
      },
    );
  }
  ctx.emit(p.bdf, "driver.bound", { driver: me.driver, previous });
  return { bdf: p.bdf, driver: me.driver, previous };
}
