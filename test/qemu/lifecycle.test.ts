// The agent's real operations against QEMU's CXL model: probe, save, quiesce, SBR, full restore, verify —
// everything read back from a device model nobody on this project wrote. The ops must cope with the model's
// deviations (deviations.test.ts) without depending on them.
import { afterEach, describe, expect, it } from "vitest";
import { createQemuBackend, type QemuBackend } from "../../services/agent/backends/qemu/qemu-backend.ts";
import { agentTimeouts, type OpContext, operations } from "../../services/agent/ops/index.ts";
import { readFlag } from "../../shared/cxl/regdef.ts";
import { CXL_DEVICE, HDM_DECODER, PCI, PCI_BAR0 } from "../../shared/cxl/registers.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import {
  commitDecoder0,
  committed,
  DECODER0_BASE,
  DECODER0_SIZE,
  decoderReg,
  dvsecReg,
  enableCxlMem,
  locate,
  readDecoder0,
} from "./helpers.ts";

let b: QemuBackend | undefined;
afterEach(async () => {
  await b?.close();
  b = undefined;
});

function context(backend: QemuBackend) {
  const events: { bdf: string; kind: string; data?: Record<string, unknown> }[] = [];
  const ctx: OpContext = {
    backend,
    host: "qemu-test",
    log: silentLogger,
    emit: (bdf, kind, data) => {
      events.push({ bdf, kind, ...(data ? { data } : {}) });
    },
    timeouts: agentTimeouts(),
    agentVersion: "test",
  };
  return { ctx, events };
}

/** Firmware's work on a device: CXL.mem on, decoder 0 committed; returns what to expect back. */
async function firmwareSetup(be: QemuBackend, bdf: string) {
  const loc = await locate(be, bdf);
  const dvsecControl = await enableCxlMem(be, loc);
  await commitDecoder0(be, loc);
  return { loc, dvsecControl };
}

describe("lifecycle on QEMU with the real operations", () => {
  it("probe, save, quiesce, SBR, full restore, verify: Committed, base and size read back", async () => {
    b = await createQemuBackend({ topology: "single" });
    const dev = "0000:0d:00.0";
    const { ctx, events } = context(b);
    const { loc, dvsecControl } = await firmwareSetup(b, dev);

    const probe = await operations.probe(ctx, { bdf: dev });
    expect(probe.flrCapable).toBe(false);
    expect(probe.bridge).toMatchObject({ bdf: "0000:0c:00.0", cxlPort: true, unmaskSbr: false });
    expect(probe.siblings).toEqual([]);
    expect(probe.cxl).toMatchObject({
      memCapable: true,
      memEnabled: true,
      cxlResetCapable: false,
      decoderCount: 1,
    });
    expect(probe.decoders).toHaveLength(1);
    expect(probe.decoders[0]).toMatchObject({ index: 0, committed: true });
    expect(BigInt(probe.decoders[0]!.base)).toBe(DECODER0_BASE);
    expect(BigInt(probe.decoders[0]!.size)).toBe(DECODER0_SIZE);

    const image = await operations.save(ctx, { bdf: dev });
    const bar0 = await b.configRead(dev, PCI_BAR0, 4);
    const command = await b.configRead(dev, PCI.command.offset, 2);

    await operations.quiesce(ctx, { bdf: dev, scope: "full" });
    const reset = await operations.reset(ctx, { bdf: dev, method: "sbr" });
    expect(reset).toMatchObject({ target: "0000:0c:00.0", reached: [dev] });
    // The reset reached the device: BARs, command and decoders are gone.
    expect((await b.configRead(dev, PCI_BAR0, 4)) & ~0xf).toBe(0);
    expect(await b.configRead(dev, PCI.command.offset, 2)).toBe(0);

    const restored = await operations.restore(ctx, { bdf: dev, scope: "full", image });
    expect(restored.decoders.map((d) => [d.index, d.action])).toEqual([[0, "committed"]]);

    const verified = await operations.verify(ctx, { bdf: dev, scope: "full", image });
    expect(verified.mismatches).toEqual([]);
    expect(verified.passed).toBe(true);

    // Read back ourselves, not trusting the ops' word.
    const d = await readDecoder0(b, loc);
    expect(committed(d.control)).toBe(true);
    expect(readFlag(HDM_DECODER.control, d.control, "errorNotCommitted")).toBe(false);
    expect(d.base).toBe(DECODER0_BASE);
    expect(d.size).toBe(DECODER0_SIZE);
    expect(await b.configRead(dev, PCI_BAR0, 4)).toBe(bar0);
    expect(await b.configRead(dev, PCI.command.offset, 2)).toBe(command);
    expect(await b.configRead(dev, dvsecReg(loc, CXL_DEVICE.control), 2)).toBe(dvsecControl);
    expect(events.map((e) => e.kind)).toEqual(
      expect.arrayContaining(["image.saved", "reset.completed", "restore.completed", "verify.completed"]),
    );
  });

  it("an io-scope plan is impossible: an FLR is refused as unsupported and nothing is touched", async () => {
    b = await createQemuBackend({ topology: "single" });
    const dev = "0000:0d:00.0";
    const { ctx } = context(b);
    const { loc } = await firmwareSetup(b, dev);
    const err = await operations.reset(ctx, { bdf: dev, method: "flr" }).catch((e) => e);
    expect(err).toBeInstanceOf(CxlrcError);
    expect(err.kind).toBe("unsupported");
    expect(err.details.reason).toBe("flr-unsupported");
    expect(committed((await readDecoder0(b, loc)).control)).toBe(true);
    expect(await b.configRead(dev, PCI.command.offset, 2)).toBe(0x0002);
  });

  it("a committed decoder QEMU cannot decommit makes a restore without reset fail cleanly, device disabled", async () => {
    b = await createQemuBackend({ topology: "single" });
    const dev = "0000:0d:00.0";
    const { ctx } = context(b);
    const { loc } = await firmwareSetup(b, dev);
    const image = await operations.save(ctx, { bdf: dev });
    // Another size while committed (QEMU accepts it): the restore must decommit first, which 7.2 never does.
    await b.mmioWrite32(dev, loc.bar, decoderReg(loc, 0, HDM_DECODER.sizeLow), Number(DECODER0_SIZE * 2n));
    const err = await operations.restore(ctx, { bdf: dev, scope: "full", image }).catch((e) => e);
    expect(err).toBeInstanceOf(CxlrcError);
    expect(err.kind).toBe("commit-timeout");
    expect(err.details).toMatchObject({ decoder: 0, operation: "decommit" });
    // Command = INTx Disable only: Memory Space and Bus Master off.
    expect(await b.configRead(dev, PCI.command.offset, 2)).toBe(0x0400);
  });

  it("behind a CXL switch: SBR at the downstream port, full restore and verify pass, the other device untouched", async () => {
    b = await createQemuBackend({ topology: "switch" });
    const [dev, other] = b.describe().memoryDevices as [string, string];
    const { ctx } = context(b);
    const { loc } = await firmwareSetup(b, dev);
    const otherSetup = await firmwareSetup(b, other);

    const image = await operations.save(ctx, { bdf: dev });
    await operations.quiesce(ctx, { bdf: dev, scope: "full" });
    const reset = await operations.reset(ctx, { bdf: dev, method: "sbr" });
    expect(reset).toMatchObject({ target: "0000:0e:00.0", reached: [dev] });
    expect(committed((await readDecoder0(b, loc)).control)).toBe(false);

    await operations.restore(ctx, { bdf: dev, scope: "full", image });
    const verified = await operations.verify(ctx, { bdf: dev, scope: "full", image });
    expect(verified.mismatches).toEqual([]);
    expect(committed((await readDecoder0(b, loc)).control)).toBe(true);
    expect(committed((await readDecoder0(b, otherSetup.loc)).control)).toBe(true);
  });
});
