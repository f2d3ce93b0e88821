// bind: driver_override + drivers_probe through the backend (null = unbind only).
import type { BindResult } from "../../../shared/bus/agent-contract.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import type { OpContext } from "./context.ts";
import { describeFunction } from "./topology.ts";

export type { BindResult };

export interface BindParams {
  bdf: string;
  driver: string | null;
}

export async function bind(ctx: OpContext, p: BindParams): Promise<BindResult> {
  const b = ctx.backend;
  if (!b.capabilities.bind || !b.bindDriver) {
    throw new CxlrcError("unsupported", `the ${b.kind} backend cannot bind drivers`, {
      bdf: p.bdf,
      reason: "bind-unsupported",
    });
  }
  await describeFunction(b, p.bdf);
  const previous = await b.bindDriver(p.bdf, p.driver);
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
