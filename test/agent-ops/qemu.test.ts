// The same operations against QEMU's CXL Type-3 model (a device model nobody on this project wrote): probe,
// save, secondary bus reset through the CXL root port, full restore, verify. QEMU clears Commit once a
// decoder is committed, so this also proves restore and verify never rely on the Commit bit.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createQemuBackend, type QemuBackend } from "../../services/agent/backends/qemu/qemu-backend.ts";
import { agentTimeouts, type OpContext, operations } from "../../services/agent/ops/index.ts";
import { silentLogger } from "../../shared/log.ts";
import { VirtualClock } from "../../shared/sim/index.ts";
import {
  commitDecoder0,
  committed,
  DECODER0_BASE,
  enableCxlMem,
  locate,
  readDecoder0,
} from "../qemu/helpers.ts";

const ROOT_PORT = "0000:0c:00.0";
const DEVICE = "0000:0d:00.0";

let b: QemuBackend;
let ctx: OpContext;
const events: string[] = [];
beforeEach(async () => {
  b = await createQemuBackend({ topology: "single", clock: new VirtualClock() });
  events.length = 0;
  ctx = {
    backend: b,
    host: "qemu",
    log: silentLogger,
    emit: (_bdf, kind) => events.push(kind),
    timeouts: agentTimeouts(),
    agentVersion: "test",
  };
});
afterEach(async () => {
  await b.close();
});

describe("agent operations on QEMU's CXL Type-3", () => {
  it("probe → save → SBR → restore full → verify full, decoder 0 committed again (read back)", async () => {
    const loc = await locate(b, DEVICE);
    await enableCxlMem(b, loc);
    await commitDecoder0(b, loc);
    const p = await operations.probe(ctx, { bdf: DEVICE });
    expect(p.flrCapable).toBe(false);
    expect(p.cxl).toMatchObject({
      memCapable: true,
      cacheCapable: false,
      cxlResetCapable: false,
      decoderCount: 1,
    });
    expect(p.decoders[0]).toMatchObject({ committed: true, base: `0x${DECODER0_BASE.toString(16)}` });
    expect(p.bridge).toMatchObject({ bdf: ROOT_PORT, cxlPort: true });

    const image = await operations.save(ctx, { bdf: DEVICE });
    const r = await operations.reset(ctx, { bdf: DEVICE, method: "sbr" });
    expect(r.reached).toEqual([DEVICE]);
    expect(await b.configRead(DEVICE, 4, 2)).toBe(0); // Command reset, read back
    const res = await operations.restore(ctx, { bdf: DEVICE, scope: "full", image });
    expect(res.decoders).toEqual([{ index: 0, action: "committed", decommitted: false }]);
    const d = await readDecoder0(b, loc);
    expect(committed(d.control)).toBe(true);
    expect(d.base).toBe(DECODER0_BASE);
    const v = await operations.verify(ctx, { bdf: DEVICE, scope: "full", image });
    expect(v.mismatches).toEqual([]);
    expect(events).toContain("decoder.committed");
  });

  it("refuses FLR and CXL Reset the model does not advertise", async () => {
    await expect(operations.reset(ctx, { bdf: DEVICE, method: "flr" })).rejects.toMatchObject({
      kind: "unsupported",
      details: { reason: "flr-unsupported" },
    });
    await expect(operations.reset(ctx, { bdf: DEVICE, method: "cxl" })).rejects.toMatchObject({
      kind: "unsupported",
      details: { reason: "cxl-reset-unsupported" },
    });
  });
});
