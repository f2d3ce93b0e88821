import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { kernelReset } from "../../services/agent/backends/sysfs/kernel-reset.ts";
import { realAttrIo } from "../../services/agent/backends/sysfs/sysfs-attr.ts";
import { createSysfsBackend } from "../../services/agent/backends/sysfs/sysfs-backend.ts";
import { CxlrcError } from "../../shared/errors.ts";
import type { HardwareBackend } from "../../shared/hw/backend.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import { createFakeSysfs, type FakeSysfs, kernelLikeIo } from "../harness/fake-sysfs.ts";

const DEV = "0000:0d:00.0";
let fake: FakeSysfs;
let writes: { path: string; value: string }[];
let log: Logger;

/** A debug logger that records the backend's "sysfs write" lines, in order. */
function recordingLogger(): Logger {
  writes = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      const line = JSON.parse(String(chunk));
      if (line.msg === "sysfs write") writes.push({ path: line.path, value: line.value });
      done();
    },
  });
  return createLogger("test", { level: "debug", destination: sink });
}

let opened: HardwareBackend[] = [];
const backend = (kernelLike = false): HardwareBackend => {
  const hw = createSysfsBackend({
    sysfsRoot: fake.sysfsRoot,
    procRoot: fake.procRoot,
    devRoot: fake.devRoot,
    log,
    ...(kernelLike ? { attrIo: kernelLikeIo(fake) } : {}),
  });
  opened.push(hw);
  return hw;
};

beforeEach(() => {
  fake = createFakeSysfs();
  fake.addDevice({ bdf: DEV, driver: "cxl_pci", iommuGroup: 7, resetMethod: "flr bus" });
  log = recordingLogger();
});
afterEach(async () => {
  for (const hw of opened) await hw.close();
  opened = [];
  fake.cleanup();
});

const rel = (w: { path: string; value: string }) => ({
  path: w.path.slice(fake.sysfsRoot.length),
  value: w.value,
});

describe("kernelReset on the fake tree", () => {
  it("selects the method, writes 1 to reset, then restores reset_method", async () => {
    await backend().kernelReset!(DEV, "bus");
    expect(writes.map(rel)).toEqual([
      { path: `/bus/pci/devices/${DEV}/reset_method`, value: "bus" },
      { path: `/bus/pci/devices/${DEV}/reset`, value: "1" },
      { path: `/bus/pci/devices/${DEV}/reset_method`, value: "flr bus" },
    ]);
    expect(fake.read(fake.file(DEV, "reset"))).toBe("1");
    expect(fake.read(fake.file(DEV, "reset_method"))).toBe("flr bus");
  });

  it("refuses a method the device does not list, writing nothing", async () => {
    await expect(backend().kernelReset!(DEV, "cxl_bus")).rejects.toMatchObject({
      kind: "unsupported",
      message: `reset method "cxl_bus" is not available for ${DEV} (reset_method: flr bus)`,
    });
    expect(writes).toEqual([]);
    expect(fake.read(fake.file(DEV, "reset"))).toBe("");
  });

  it("refuses when there is no reset_method file, and names it", async () => {
    fake.addDevice({ bdf: "0000:0e:00.0", resetMethod: null });
    await expect(backend().kernelReset!("0000:0e:00.0", "flr")).rejects.toThrow(
      `${fake.file("0000:0e:00.0", "reset_method")} does not exist`,
    );
  });

  const failingMethodWrites = {
    readAttr: realAttrIo.readAttr,
    async writeAttr(path: string, text: string, l: Logger) {
      if (path.endsWith("reset_method"))
        throw new CxlrcError("backend", `write ${path}: EINVAL (22)`, { errno: 22 });
      await realAttrIo.writeAttr(path, text, l);
    },
  };
  const roots = () => ({ sysfsRoot: fake.sysfsRoot, procRoot: fake.procRoot, devRoot: fake.devRoot });

  it("when reset_method cannot be written, resets only if the method is the kernel's first choice", async () => {
    await kernelReset({ roots: roots(), io: failingMethodWrites, log }, DEV, "flr");
    expect(fake.read(fake.file(DEV, "reset"))).toBe("1");
  });

  it("when reset_method cannot be written and the method is not first, refuses without resetting", async () => {
    await expect(kernelReset({ roots: roots(), io: failingMethodWrites, log }, DEV, "bus")).rejects.toThrow(
      /cannot select reset method "bus".*the kernel would try "flr" first/,
    );
    expect(fake.read(fake.file(DEV, "reset"))).toBe("");
  });

  it("a failing reset write is a reset-error, and reset_method is still restored", async () => {
    const io = {
      readAttr: realAttrIo.readAttr,
      async writeAttr(path: string, text: string, l: Logger) {
        if (path.endsWith("/reset"))
          throw new CxlrcError("backend", `write ${path}: ENOTTY (25)`, { errno: 25 });
        await realAttrIo.writeAttr(path, text, l);
      },
    };
    await expect(kernelReset({ roots: roots(), io, log }, DEV, "bus")).rejects.toMatchObject({
      kind: "reset-error",
    });
    expect(fake.read(fake.file(DEV, "reset_method"))).toBe("flr bus");
  });
});

describe("bindDriver on the fake tree", () => {
  it("unbinds the current driver, sets driver_override, probes, and returns the previous driver", async () => {
    fake.addDriver("vfio-pci");
    const previous = await backend(true).bindDriver!(DEV, "vfio-pci");
    expect(previous).toBe("cxl_pci");
    expect(writes.map(rel)).toEqual([
      { path: `/bus/pci/devices/${DEV}/driver/unbind`, value: DEV },
      { path: `/bus/pci/devices/${DEV}/driver_override`, value: "vfio-pci" },
      { path: "/bus/pci/drivers_probe", value: DEV },
    ]);
    expect(fake.read(`${fake.sysfsRoot}/bus/pci/drivers/cxl_pci/unbind`)).toBe(DEV);
    expect(fake.read(fake.file(DEV, "driver_override"))).toBe("vfio-pci");
    expect(fake.read(`${fake.sysfsRoot}/bus/pci/drivers_probe`)).toBe(DEV);
    const fn = (await backend(true).listFunctions()).find((f) => f.bdf === DEV);
    expect(fn?.driver).toBe("vfio-pci");
  });

  it("unbinding only clears driver_override and does not probe", async () => {
    const previous = await backend().bindDriver!(DEV, null);
    expect(previous).toBe("cxl_pci");
    expect(writes.map(rel)).toEqual([
      { path: `/bus/pci/devices/${DEV}/driver/unbind`, value: DEV },
      { path: `/bus/pci/devices/${DEV}/driver_override`, value: "\n" },
    ]);
    expect(fake.read(`${fake.sysfsRoot}/bus/pci/drivers_probe`)).toBe("");
  });

  it("reports a probe that binds nothing (driver not loaded)", async () => {
    await expect(backend(true).bindDriver!(DEV, "mlx5_vfio_pci")).rejects.toThrow(
      `${DEV} is bound to no driver after drivers_probe, not mlx5_vfio_pci`,
    );
  });

  it("binding an unbound device skips unbind; a bad driver name writes nothing", async () => {
    fake.addDevice({ bdf: "0000:0f:00.0" });
    fake.addDriver("vfio-pci");
    expect(await backend(true).bindDriver!("0000:0f:00.0", "vfio-pci")).toBeNull();
    expect(writes.map((w) => w.path.split("/").pop())).toEqual(["driver_override", "drivers_probe"]);
    writes.length = 0;
    await expect(backend().bindDriver!(DEV, "../evil")).rejects.toMatchObject({ kind: "bad-input" });
    expect(writes).toEqual([]);
  });
});
