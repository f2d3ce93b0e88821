// The fleet file: schema, topology checks with readable paths, the bundled default fleet, simpleHost.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createSimHost, defaultFleet, loadFleet, SIMPLE_DEVICE, simpleHost } from "../../shared/sim/index.ts";

const host = (over: Record<string, unknown> = {}) => ({
  name: "h",
  bridges: [{ bdf: "0000:00:01.0", kind: "root-port", secondaryBus: 1 }],
  devices: [{ bdf: "0000:01:00.0", parent: "0000:00:01.0" }],
  ...over,
});
const message = (input: unknown) => {
  try {
    loadFleet(input);
  } catch (e) {
    return (e as Error).message;
  }
  return "loaded";
};

describe("fleet schema", () => {
  it("names the path of a bad key", () => {
    const m = message({
      hosts: [
        host(),
        host({ name: "b", devices: [{ bdf: "0000:01:00.0", parent: "0000:00:01.0", decoderCount: 3 }] }),
      ],
    });
    expect(m).toMatch(
      /^invalid fleet: fleet\.hosts\[1\]\.devices\[0\]\.decoderCount: HDM decoder count must be/,
    );
  });

  it("rejects unknown keys", () => {
    expect(message({ hosts: [host({ colour: "red" })] })).toMatch(/fleet\.hosts\[0\]/);
  });

  it("rejects a device whose parent bridge does not exist or whose bus is wrong", () => {
    expect(
      message({ hosts: [host({ devices: [{ bdf: "0000:01:00.0", parent: "0000:00:09.0" }] })] }),
    ).toMatch(/fleet\.hosts\[0\]\.devices\[0\]\.parent: no bridge 0000:00:09.0/);
    expect(
      message({ hosts: [host({ devices: [{ bdf: "0000:02:00.0", parent: "0000:00:01.0" }] })] }),
    ).toMatch(/devices\[0\]\.bdf: bus must be the parent's secondary bus 1/);
  });

  it("rejects firmware decoders that break the commit rules", () => {
    const dev = (decoders: unknown[]) => ({
      bdf: "0000:01:00.0",
      parent: "0000:00:01.0",
      firmware: { decoders },
    });
    expect(
      message({ hosts: [host({ devices: [dev([{ base: "0x8000000", size: "0x10000000" }])] })] }),
    ).toMatch(/firmware\.decoders\[0\]\.base: must be a multiple of 256 MiB/);
    expect(
      message({
        hosts: [
          host({
            devices: [
              dev([
                { base: "0x200000000", size: "0x10000000" },
                { base: "0x100000000", size: "0x10000000" },
              ]),
            ],
          }),
        ],
      }),
    ).toMatch(/decoders\[1\]\.base: below the previous decoder's end/);
    expect(message({ hosts: [host({ devices: [dev([{ base: 0, size: 0 }])] })] })).toMatch(
      /size: must be non-zero/,
    );
  });

  it("rejects duplicate addresses and host names, and a BDF that is not lowercase sysfs form", () => {
    expect(message({ hosts: [host(), host()] })).toMatch(/duplicate host h/);
    expect(
      message({
        hosts: [
          host({
            devices: [
              { bdf: "0000:01:00.0", parent: "0000:00:01.0" },
              { bdf: "0000:01:00.0", parent: "0000:00:01.0" },
            ],
          }),
        ],
      }),
    ).toMatch(/duplicate PCI address/);
    expect(
      message({ hosts: [host({ devices: [{ bdf: "0000:01:0A.0", parent: "0000:00:01.0" }] })] }),
    ).toMatch(/devices\[0\]\.bdf/);
  });

  it("loads from a file path, and names an unreadable file", () => {
    const dir = mkdtempSync(join(tmpdir(), "fleet-"));
    const file = join(dir, "f.json");
    writeFileSync(file, JSON.stringify({ hosts: [host()] }));
    expect(loadFleet(file).hosts[0]!.devices[0]!.decoderCount).toBe(2);
    expect(() => loadFleet(join(dir, "missing.json"))).toThrow(/cannot read fleet file/);
  });
});

describe("default fleet", () => {
  it("loads, validates and builds every host", async () => {
    const fleet = defaultFleet();
    expect(fleet.hosts.length).toBeGreaterThanOrEqual(3);
    for (const spec of fleet.hosts) {
      const h = createSimHost(spec);
      const fns = await h.listFunctions();
      for (const f of fns)
        expect(await h.configRead(f.bdf, 0, 2), f.bdf).toBe(
          spec.bridges.find((b) => b.bdf === f.bdf)?.vendorId ?? 0x8086,
        );
    }
  });

  it("has devices with and without FLR and CXL Reset, a multi-function device and a shared bridge", () => {
    const devices = defaultFleet().hosts.flatMap((h) => h.devices);
    expect(devices.some((d) => d.flr) && devices.some((d) => !d.flr)).toBe(true);
    expect(devices.some((d) => d.cxlResetCapable) && devices.some((d) => !d.cxlResetCapable)).toBe(true);
    expect(devices.some((d) => d.functions.length > 0)).toBe(true);
    expect(
      defaultFleet().hosts.some((h) => new Set(h.devices.map((d) => d.parent)).size < h.devices.length),
    ).toBe(true);
  });
});

describe("simpleHost", () => {
  it("one root port and one Type-2 device with the documented defaults", async () => {
    const spec = simpleHost();
    const d = spec.devices[0]!;
    expect(d.bdf).toBe(SIMPLE_DEVICE);
    expect(d).toMatchObject({
      flr: true,
      cxlResetCapable: true,
      cxlResetTimeout: 1,
      cacheCapable: true,
      memCapable: true,
    });
    expect(d.decoderCount).toBe(2);
    expect(d.firmware.decoders).toEqual([
      { base: 0x1_0000_0000n, size: 0x1000_0000n, dpaSkip: 0n, lockOnCommit: false },
    ]);
    const fns = await createSimHost(spec).listFunctions();
    expect(fns.map((f) => [f.bdf, f.parent])).toEqual([
      ["0000:00:01.0", null],
      ["0000:01:00.0", "0000:00:01.0"],
    ]);
  });
});
