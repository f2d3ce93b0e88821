// Secondary Bus Reset through the parent bridge (PCIe base spec §6.6.1; cxl_bus in the kernel): a CXL
// root or downstream port masks SBR unless Unmask SBR (DVSEC 3 Port Control bit 0) is set, so set it first
// and put it back afterwards. Hold SBR ≥ 1 ms, release, touch nothing for 100 ms, then poll every function
// directly below until it answers. Functions behind a bridge below lost their bus numbers with the reset:
// they answer only after that bridge is restored, so they are reported, not polled.

import { readFlag, withField } from "../../../shared/cxl/regdef.ts";
import { CXL_DVSEC_ID, CXL_PORT_EXT, PCI_BRIDGE } from "../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { readConfigReg, regHex, updateConfigReg } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { findCxlDvsec } from "./locate.ts";
import { notReady, requirePresent, waitAnswers } from "./ready.ts";
import type { ResetResult } from "./reset-result.ts";
import { below, describeFunction } from "./topology.ts";

export async function resetSbr(
  ctx: OpContext,
  bdf: string,
): Promise<Omit<ResetResult, "method" | "durationMs">> {
  const b = ctx.backend;
  const t = ctx.timeouts;
  const { me, all } = await describeFunction(b, bdf);
  const bridge = me.parent;
  if (bridge === null) {
    throw new CxlrcError("unsupported", `${bdf} has no bridge above it to reset its bus`, {
      bdf,
      reason: "no-parent-bridge",
    });
  }
  await requirePresent(ctx, bridge);
  const underneath = below(all, bridge);
  const direct = underneath.filter((f) => f.parent === bridge).map((f) => f.bdf);
  const behindBridges = underneath.filter((f) => f.parent !== bridge).map((f) => f.bdf);
  const port = await findCxlDvsec(b, bridge, CXL_DVSEC_ID.portExtensions);
  let unmaskSbrWas: boolean | null = null;
  if (port) {
    const { before } = await updateConfigReg(b, bridge, port.offset, CXL_PORT_EXT.portControl, (v) =>
      withField(CXL_PORT_EXT.portControl, v, "unmaskSbr", true),
    );
    unmaskSbrWas = readFlag(CXL_PORT_EXT.portControl, before, "unmaskSbr");
  }
  try {
    await updateConfigReg(b, bridge, 0, PCI_BRIDGE.bridgeControl, (v) =>
      withField(PCI_BRIDGE.bridgeControl, v, "secondaryBusReset", true),
    );
    ctx.emit(bdf, "reset.initiated", {
      method: "sbr",
      bridge,
      unmaskSbrWas,
      functions: underneath.map((f) => f.bdf),
    });
    await b.clock.sleep(t.sbrHoldMs);
  } finally {
    await updateConfigReg(b, bridge, 0, PCI_BRIDGE.bridgeControl, (v) =>
      withField(PCI_BRIDGE.bridgeControl, v, "secondaryBusReset", false),
    );
    if (port && unmaskSbrWas !== null) {
      await updateConfigReg(b, bridge, port.offset, CXL_PORT_EXT.portControl, (v) =>
        withField(CXL_PORT_EXT.portControl, v, "unmaskSbr", unmaskSbrWas),
      );
    }
  }
  await b.clock.sleep(t.sbrSettleMs);
  const reached: string[] = [];
  const unreached: { bdf: string; last: number }[] = [];
  const deadline = b.clock.now() + t.readyTimeoutMs;
  for (const f of direct) {
    const r = await waitAnswers(ctx, f, Math.max(0, deadline - b.clock.now()));
    if (r.ok) reached.push(f);
    else unreached.push({ bdf: f, last: r.last });
  }
  const missing = unreached.map((u) => u.bdf);
  ctx.emit(bdf, "reset.functions-answered", { bridge, reached, unreached: missing, behindBridges });
  if (unreached.length > 0) {
    const first = unreached[0]!;
    throw notReady(first.bdf, t.sbrSettleMs + t.readyTimeoutMs, first.last, {
      method: "sbr",
      bridge,
      reached,
      unreached: missing,
    });
  }
  const bc = await readConfigReg(b, bridge, 0, PCI_BRIDGE.bridgeControl);
  return {
    bdf,
    target: bridge,
    reached,
    details: {
      bridge,
      cxlPort: port !== null,
      unmaskSbrWas,
      behindBridges,
      bridgeControl: regHex(PCI_BRIDGE.bridgeControl, bc),
    },
  };
}
