// Larger topologies: two root ports, and a CXL switch. Enumeration (parent chain, bus ranges) and the reach
// of a secondary bus reset at each level, read back on the devices.
import { afterEach, describe, expect, it } from "vitest";
import { createQemuBackend, type QemuBackend } from "../../services/agent/backends/qemu/qemu-backend.ts";
import { decodeConfigSpace } from "../../shared/cxl/decode.ts";
import type { PciFunctionInfo } from "../../shared/hw/backend.ts";
import { commitDecoder0, committed, locate, readDecoder0, secondaryBusReset } from "./helpers.ts";

let b: QemuBackend | undefined;
afterEach(async () => {
  await b?.close();
  b = undefined;
});

const CXL_TYPE3 = [0x8086, 0x0d93];
const CXL_ROOT_PORT = [0x8086, 0x7075];
const CXL_SWITCH_UP = [0x19e5, 0xa128];
const CXL_SWITCH_DOWN = [0x19e5, 0xa129];

const ids = (f: PciFunctionInfo) => [f.vendorId, f.deviceId];
function chain(fns: readonly PciFunctionInfo[], bdf: string): string[] {
  const out: string[] = [];
  let cur = fns.find((f) => f.bdf === bdf)?.parent ?? null;
  while (cur !== null) {
    out.push(cur);
    cur = fns.find((f) => f.bdf === cur)?.parent ?? null;
  }
  return out;
}

/** Commit decoder 0 on each device; returns a reader of "is it still committed" per device. */
async function commitAll(be: QemuBackend, devices: readonly string[]) {
  const locs = await Promise.all(devices.map((d) => locate(be, d)));
  for (const loc of locs) await commitDecoder0(be, loc);
  return async () => {
    const out: Record<string, boolean> = {};
    for (const loc of locs) out[loc.bdf] = committed((await readDecoder0(be, loc)).control);
    return out;
  };
}

describe("two root ports", () => {
  it("enumerates a Type-3 below each root port, each probed on its own", async () => {
    b = await createQemuBackend({ topology: "two-root-ports" });
    const fns = await b.listFunctions();
    expect(fns.map((f) => [f.bdf, ids(f), f.parent])).toEqual([
      ["0000:0c:00.0", CXL_ROOT_PORT, null],
      ["0000:0d:00.0", CXL_TYPE3, "0000:0c:00.0"],
      ["0000:0c:01.0", CXL_ROOT_PORT, null],
      ["0000:0e:00.0", CXL_TYPE3, "0000:0c:01.0"],
    ]);
    expect(b.describe().memoryDevices).toEqual(["0000:0d:00.0", "0000:0e:00.0"]);
    for (const dev of b.describe().memoryDevices) {
      const d = decodeConfigSpace(await b.configReadAll(dev), { bdf: dev });
      expect(d.cxlDevice?.capability.memCapable).toBe(true);
      expect(d.registerLocator?.blocks.some((x) => x.blockId === 1)).toBe(true);
    }
    // Their component blocks are distinct: a decoder committed on one is not seen on the other.
    const loc0 = await locate(b, "0000:0d:00.0");
    const loc1 = await locate(b, "0000:0e:00.0");
    await commitDecoder0(b, loc0);
    expect(committed((await readDecoder0(b, loc0)).control)).toBe(true);
    expect(committed((await readDecoder0(b, loc1)).control)).toBe(false);
  });

  it("an SBR at one root port resets only the device below it", async () => {
    b = await createQemuBackend({ topology: "two-root-ports" });
    const state = await commitAll(b, ["0000:0d:00.0", "0000:0e:00.0"]);
    await secondaryBusReset(b, "0000:0c:01.0");
    // The reset device's BARs are gone: write them back as a restore would, via the backend's firmware.
    await b.reapplyFirmware("0000:0e:00.0");
    expect(await state()).toEqual({ "0000:0d:00.0": true, "0000:0e:00.0": false });
  });
});

describe("CXL switch (root port → upstream → two downstream → a Type-3 on each)", () => {
  it("enumerates the devices behind cxl-downstream with the right parent chain and bus ranges", async () => {
    b = await createQemuBackend({ topology: "switch" });
    const fns = await b.listFunctions();
    expect(fns.map((f) => [f.bdf, ids(f), f.parent, f.secondaryBus, f.subordinateBus])).toEqual([
      ["0000:0c:00.0", CXL_ROOT_PORT, null, 0x0d, 0x10],
      ["0000:0d:00.0", CXL_SWITCH_UP, "0000:0c:00.0", 0x0e, 0x10],
      ["0000:0e:00.0", CXL_SWITCH_DOWN, "0000:0d:00.0", 0x0f, 0x0f],
      ["0000:0f:00.0", CXL_TYPE3, "0000:0e:00.0", undefined, undefined],
      ["0000:0e:01.0", CXL_SWITCH_DOWN, "0000:0d:00.0", 0x10, 0x10],
      ["0000:10:00.0", CXL_TYPE3, "0000:0e:01.0", undefined, undefined],
    ]);
    expect(chain(fns, "0000:0f:00.0")).toEqual(["0000:0e:00.0", "0000:0d:00.0", "0000:0c:00.0"]);
    expect(chain(fns, "0000:10:00.0")).toEqual(["0000:0e:01.0", "0000:0d:00.0", "0000:0c:00.0"]);
    // Bus numbers are in the hardware, not only in our table: the upstream port reads them back.
    expect(await b.configRead("0000:0d:00.0", 0x18, 4)).toBe(0x00100e0d);
    // MMIO reaches both devices through three levels of bridge windows.
    for (const dev of ["0000:0f:00.0", "0000:10:00.0"]) {
      expect((await b.mmioRead32(dev, 0, 0x1000)) & 0xffff).toBe(1);
    }
  });

  it("an SBR at a downstream port reaches only its device", async () => {
    b = await createQemuBackend({ topology: "switch" });
    const state = await commitAll(b, ["0000:0f:00.0", "0000:10:00.0"]);
    // (Unlike below a root port, the device keeps answering config reads while this SBR is held.)
    await secondaryBusReset(b, "0000:0e:00.0");
    await b.reapplyFirmware("0000:0f:00.0");
    expect(await state()).toEqual({ "0000:0f:00.0": false, "0000:10:00.0": true });
    // The switch itself kept its configuration.
    expect(await b.configRead("0000:0d:00.0", 0x18, 4)).toBe(0x00100e0d);
  });

  it("an SBR at the root port reaches both devices, and resets the switch ports in between", async () => {
    b = await createQemuBackend({ topology: "switch" });
    const state = await commitAll(b, ["0000:0f:00.0", "0000:10:00.0"]);
    await secondaryBusReset(b, "0000:0c:00.0");
    // The upstream port lost its bus numbers: nothing below it answers until they are restored.
    expect(await b.configRead("0000:0d:00.0", 0x18, 4)).toBe(0);
    expect(await b.configRead("0000:0f:00.0", 0, 2)).toBe(0xffff);
    // Restore the switch and the devices' BARs as the kernel / the ops would, top-down.
    for (const f of await b.listFunctions()) if (f.parent !== null) await b.reapplyFirmware(f.bdf);
    expect(await state()).toEqual({ "0000:0f:00.0": false, "0000:10:00.0": false });
  });
});
