// Secondary bus reset (Bridge Control bit 6): everything below the bridge back to power-on defaults,
// recursively through switches; held while the bit is set; not ready for notReadyMs after release.
// A CXL root or downstream port masks it unless Unmask SBR (DVSEC 3 Port Control bit 0) is set.
import { describe, expect, it } from "vitest";
import { encodeRegister, readFlag } from "../../shared/cxl/regdef.ts";
import { CXL_DEVICE, CXL_PORT_EXT, PCI, PCI_BRIDGE } from "../../shared/cxl/registers.ts";
import type { HostSpecInput, SimHost } from "../../shared/sim/index.ts";
import { DEV, findDvsec, PORT, regs, rig, rigFor } from "./helpers.ts";

const SBR = encodeRegister(PCI_BRIDGE.bridgeControl, { secondaryBusReset: true });
const setSbr = (h: SimHost, bridge: string, on: boolean) =>
  h.configWrite(bridge, PCI_BRIDGE.bridgeControl.offset, 2, on ? SBR : 0);
async function pulse(h: SimHost, bridge: string, holdMs = 2) {
  await setSbr(h, bridge, true);
  await h.clock.sleep(holdMs);
  await setSbr(h, bridge, false);
}
async function unmask(h: SimHost, port: string) {
  const d3 = await findDvsec(h, port, 3);
  await h.configWrite(port, d3 + CXL_PORT_EXT.portControl.offset, 2, 1);
}

describe("secondary bus reset", () => {
  it("is masked on a CXL port without Unmask SBR: the device below keeps its state", async () => {
    const { h, clock } = rig();
    await pulse(h, PORT);
    await clock.sleep(100);
    const r = await regs(h, DEV);
    expect((await r.decoder(0)).committed).toBe(true);
    expect(h.counters(DEV).conventionalReset).toBe(0);
  });

  it("with Unmask SBR: PCI config, DVSEC state, CONFIG_LOCK and decoders back to defaults", async () => {
    const { h, clock } = rig({
      device: { firmware: { decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }], configLock: true } },
    });
    const dvsec = await findDvsec(h, DEV, 0);
    await unmask(h, PORT);
    await pulse(h, PORT);
    await clock.sleep(100);
    expect(await h.configRead(DEV, PCI.command.offset, 2)).toBe(0);
    expect((await h.configRead(DEV, 0x10, 4)) & ~0xf).toBe(0);
    expect(await h.configRead(DEV, dvsec + CXL_DEVICE.control.offset, 2)).toBe(
      encodeRegister(CXL_DEVICE.control, { ioEnable: true }),
    );
    expect(
      readFlag(CXL_DEVICE.lock, await h.configRead(DEV, dvsec + CXL_DEVICE.lock.offset, 2), "configLock"),
    ).toBe(false);
    expect(h.snapshot(DEV).component.some((b, i) => i >= 0x1110 && b !== 0)).toBe(false);
    expect(h.counters(DEV).conventionalReset).toBe(1);
  });

  it("the power-on state after SBR is reset defaults, not the firmware configuration", async () => {
    const { h, clock } = rig({ rootPort: { unmaskSbr: true } });
    await pulse(h, PORT);
    await clock.sleep(100);
    const bar = [0x10, 0x14].map((o) => h.configRead(DEV, o, 4));
    expect((await Promise.all(bar)).map((v) => v & ~0xf)).toEqual([0, 0]);
    h.boot(); // only a host boot applies firmware again
    const r = await regs(h, DEV);
    expect((await r.decoder(0)).committed).toBe(true);
  });

  it("the devices read all-ones while the bit is held and for notReadyMs after release", async () => {
    const { h, clock } = rig({ rootPort: { unmaskSbr: true } });
    await setSbr(h, PORT, true);
    await clock.sleep(50);
    expect(await h.configRead(DEV, 0, 4)).toBe(0xffff_ffff);
    await setSbr(h, PORT, false);
    await clock.sleep(99);
    expect(await h.configRead(DEV, 0, 2)).toBe(0xffff);
    await clock.sleep(1);
    expect(await h.configRead(DEV, 0, 2)).toBe(0x8086);
  });

  it("a non-CXL bridge does not mask SBR", async () => {
    const { h, clock } = rig({ rootPort: { cxl: false } });
    await pulse(h, PORT);
    await clock.sleep(100);
    expect(h.counters(DEV).conventionalReset).toBe(1);
  });

  it("the bridge itself is not reset by its own SBR", async () => {
    const { h, clock } = rig({ rootPort: { unmaskSbr: true } });
    const cmd = await h.configRead(PORT, PCI.command.offset, 2);
    await pulse(h, PORT);
    await clock.sleep(100);
    expect(await h.configRead(PORT, PCI.command.offset, 2)).toBe(cmd);
    expect(h.counters(PORT).conventionalReset).toBe(0);
  });
});

describe("secondary bus reset through a switch", () => {
  // Root port 00:01.0 → switch upstream 01:00.0 → downstream 02:00.0 (device 03:00.0), 02:01.0 (device 04:00.0).
  const spec = {
    name: "sw",
    bridges: [
      { bdf: "0000:00:01.0", kind: "root-port", secondaryBus: 1, unmaskSbr: true },
      { bdf: "0000:01:00.0", kind: "switch-upstream", parent: "0000:00:01.0", secondaryBus: 2 },
      {
        bdf: "0000:02:00.0",
        kind: "switch-downstream",
        parent: "0000:01:00.0",
        secondaryBus: 3,
        unmaskSbr: true,
      },
      {
        bdf: "0000:02:01.0",
        kind: "switch-downstream",
        parent: "0000:01:00.0",
        secondaryBus: 4,
        unmaskSbr: true,
      },
    ],
    devices: [
      { bdf: "0000:03:00.0", parent: "0000:02:00.0" },
      { bdf: "0000:04:00.0", parent: "0000:02:01.0" },
    ],
  } satisfies HostSpecInput;

  it("at the root port it reaches every switch port and both devices", async () => {
    const { h, clock } = rigFor(spec);
    await pulse(h, "0000:00:01.0");
    await clock.sleep(100);
    for (const bdf of ["0000:01:00.0", "0000:02:00.0", "0000:02:01.0", "0000:03:00.0", "0000:04:00.0"])
      expect(h.counters(bdf).conventionalReset, bdf).toBe(1);
    // The downstream ports' Unmask SBR went back to its default (masked).
    const d3 = await findDvsec(h, "0000:02:00.0", 3);
    expect(await h.configRead("0000:02:00.0", d3 + CXL_PORT_EXT.portControl.offset, 2)).toBe(0);
  });

  it("at a downstream port it reaches only the device below that port", async () => {
    const { h, clock } = rigFor(spec);
    await pulse(h, "0000:02:00.0");
    await clock.sleep(100);
    expect(h.counters("0000:03:00.0").conventionalReset).toBe(1);
    expect(h.counters("0000:04:00.0").conventionalReset).toBe(0);
    expect(h.counters("0000:01:00.0").conventionalReset).toBe(0);
  });

  it("sibling devices below one bridge are both reset", async () => {
    const { h, clock } = rigFor({
      name: "shared",
      bridges: [{ bdf: "0000:00:02.0", kind: "root-port", secondaryBus: 5, unmaskSbr: true }],
      devices: [
        { bdf: "0000:05:00.0", parent: "0000:00:02.0" },
        { bdf: "0000:05:01.0", parent: "0000:00:02.0" },
      ],
    });
    await pulse(h, "0000:00:02.0");
    await clock.sleep(100);
    expect(h.counters("0000:05:00.0").conventionalReset).toBe(1);
    expect(h.counters("0000:05:01.0").conventionalReset).toBe(1);
  });
});
