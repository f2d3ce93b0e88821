import { readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createSysfsBackend } from "../../services/agent/backends/sysfs/sysfs-backend.ts";
import { chooseVfioDriver, globToRegExp } from "../../services/agent/backends/sysfs/vfio-driver.ts";
import * as ioctl from "../../services/agent/backends/sysfs/vfio-ioctl.ts";
import { realVfioSys, type VfioSys, vfioReset } from "../../services/agent/backends/sysfs/vfio-reset.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { createFakeSysfs, type FakeSysfs } from "../harness/fake-sysfs.ts";

const DEV = "0000:0d:00.0";
let fake: FakeSysfs;
beforeEach(() => {
  fake = createFakeSysfs();
  fake.addDevice({ bdf: DEV, driver: "vfio-pci", iommuGroup: 12 });
});
afterEach(() => fake.cleanup());
const roots = () => ({ sysfsRoot: fake.sysfsRoot, procRoot: fake.procRoot, devRoot: fake.devRoot });

describe("chooseVfioDriver", () => {
  const CATCH_ALL = "alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci";
  const MLX = "alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci";
  const MLX_DEVICE = "pci:v000015B3d0000101Esv000015B3sd00000001bc02sc00i00";
  const aliases = (...lines: string[]) =>
    [
      "# Aliases extracted from modules themselves.",
      "alias pci:v*d*sv*sd*bc06sc04i00* pcieport",
      ...lines,
    ].join("\n");

  it("a variant driver naming vendor and device beats the catch-all, in either order", () => {
    expect(chooseVfioDriver(MLX_DEVICE, aliases(CATCH_ALL, MLX))).toBe("mlx5_vfio_pci");
    expect(chooseVfioDriver(MLX_DEVICE, aliases(MLX, CATCH_ALL))).toBe("mlx5_vfio_pci");
  });

  it("only the catch-all matching gives the sysfs name vfio-pci", () => {
    expect(
      chooseVfioDriver("pci:v00001E98d00000D93sv00000000sd00000000bc05sc02i10\n", aliases(CATCH_ALL, MLX)),
    ).toBe("vfio-pci");
  });

  it("no vfio alias, or a modalias that is not PCI, gives null", () => {
    expect(chooseVfioDriver(MLX_DEVICE, aliases())).toBeNull();
    expect(chooseVfioDriver("acpi:PNP0A08:", aliases(CATCH_ALL))).toBeNull();
  });

  it("globs match * and ? and nothing else specially", () => {
    expect(globToRegExp("vfio_pci:v0000?5B3d*").test("vfio_pci:v000015B3d0000101E")).toBe(true);
    expect(globToRegExp("a.b").test("axb")).toBe(false);
  });
});

describe("VFIO ioctl numbers", () => {
  it("match include/uapi/linux/vfio.h (_IO(';', 100 + n))", () => {
    expect(ioctl.VFIO_GET_API_VERSION).toBe(0x3b64);
    expect(ioctl.VFIO_CHECK_EXTENSION).toBe(0x3b65);
    expect(ioctl.VFIO_SET_IOMMU).toBe(0x3b66);
    expect(ioctl.VFIO_GROUP_GET_STATUS).toBe(0x3b67);
    expect(ioctl.VFIO_GROUP_SET_CONTAINER).toBe(0x3b68);
    expect(ioctl.VFIO_GROUP_GET_DEVICE_FD).toBe(0x3b6a);
    expect(ioctl.VFIO_DEVICE_GET_INFO).toBe(0x3b6b);
    expect(ioctl.VFIO_DEVICE_RESET).toBe(0x3b6f);
    expect(ioctl.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO).toBe(0x3b70);
    expect(ioctl.VFIO_DEVICE_PCI_HOT_RESET).toBe(0x3b71);
  });
});

/** A recording stand-in for the kernel's VFIO: answers as a working vfio-pci device unless told otherwise. */
function fakeVfio(opts: { deviceFlags?: number; groupFlags?: number; failOn?: string } = {}) {
  const calls: string[] = [];
  const openFds = new Set<number>();
  let nextFd = 100;
  const sys: VfioSys = {
    open(path) {
      calls.push(`open ${path.slice(fake.devRoot.length)}`);
      const fd = nextFd++;
      openFds.add(fd);
      return fd;
    },
    close(fd) {
      calls.push(`close ${fd}`);
      openFds.delete(fd);
    },
    ioctl(fd, path, name, request, arg) {
      calls.push(`${name} ${fd}${typeof arg === "string" || typeof arg === "number" ? ` ${arg}` : ""}`);
      if (name === opts.failOn)
        throw new CxlrcError("backend", `ioctl ${name} on ${path}: EIO (5)`, { errno: 5 });
      if (request === ioctl.VFIO_CHECK_EXTENSION) return 1;
      if (request === ioctl.VFIO_GROUP_GET_STATUS && Buffer.isBuffer(arg))
        arg.writeUInt32LE(opts.groupFlags ?? 1, 4);
      if (request === ioctl.VFIO_GROUP_SET_CONTAINER && Buffer.isBuffer(arg))
        calls.push(`  container fd ${arg.readInt32LE(0)}`);
      if (request === ioctl.VFIO_GROUP_GET_DEVICE_FD) {
        openFds.add(nextFd);
        return nextFd++;
      }
      if (request === ioctl.VFIO_DEVICE_GET_INFO && Buffer.isBuffer(arg)) {
        expect(arg.readUInt32LE(0)).toBe(16); // argsz
        arg.writeUInt32LE(opts.deviceFlags ?? 0b11, 4);
        arg.writeUInt32LE(9, 8);
      }
      return 0;
    },
  };
  return { sys, calls, openFds };
}

describe("vfioReset", () => {
  it("runs container, group and device ioctls in order and closes every fd", async () => {
    const v = fakeVfio();
    await vfioReset({ roots: roots(), log: silentLogger, sys: v.sys }, DEV);
    expect(v.calls).toEqual([
      "open /vfio/vfio",
      "VFIO_GET_API_VERSION 100",
      "VFIO_CHECK_EXTENSION 100 1",
      "open /vfio/12",
      "VFIO_GROUP_GET_STATUS 101",
      "VFIO_GROUP_SET_CONTAINER 101",
      "  container fd 100",
      "VFIO_SET_IOMMU 100 1",
      `VFIO_GROUP_GET_DEVICE_FD 101 ${DEV}`,
      "VFIO_DEVICE_GET_INFO 102",
      "VFIO_DEVICE_RESET 102",
      "close 102",
      "close 101",
      "close 100",
    ]);
    expect(v.openFds.size).toBe(0);
  });

  it("a device without the RESET flag is unsupported, and nothing stays open", async () => {
    const v = fakeVfio({ deviceFlags: 0b10 });
    await expect(vfioReset({ roots: roots(), log: silentLogger, sys: v.sys }, DEV)).rejects.toMatchObject({
      kind: "unsupported",
      message: `${DEV} does not support VFIO_DEVICE_RESET (device info flags 0x2)`,
    });
    expect(v.calls).not.toContain("VFIO_DEVICE_RESET 102");
    expect(v.openFds.size).toBe(0);
  });

  it("a group that is not viable is refused before it is attached", async () => {
    const v = fakeVfio({ groupFlags: 0 });
    await expect(vfioReset({ roots: roots(), log: silentLogger, sys: v.sys }, DEV)).rejects.toThrow(
      "not viable",
    );
    expect(v.calls.some((c) => c.startsWith("VFIO_GROUP_SET_CONTAINER"))).toBe(false);
    expect(v.openFds.size).toBe(0);
  });

  for (const step of ["VFIO_GET_API_VERSION", "VFIO_GROUP_SET_CONTAINER", "VFIO_DEVICE_RESET"]) {
    it(`closes every fd when ${step} fails`, async () => {
      const v = fakeVfio({ failOn: step });
      await expect(vfioReset({ roots: roots(), log: silentLogger, sys: v.sys }, DEV)).rejects.toThrow(step);
      expect(v.openFds.size).toBe(0);
    });
  }

  it("refuses a device not bound to a vfio driver, or without an IOMMU group", async () => {
    fake.addDevice({ bdf: "0000:0e:00.0", driver: "cxl_pci", iommuGroup: 3 });
    fake.addDevice({ bdf: "0000:0f:00.0", driver: "vfio-pci" });
    const v = fakeVfio();
    const deps = { roots: roots(), log: silentLogger, sys: v.sys };
    await expect(vfioReset(deps, "0000:0e:00.0")).rejects.toThrow("is bound to cxl_pci, not a vfio driver");
    await expect(vfioReset(deps, "0000:0f:00.0")).rejects.toThrow("has no IOMMU group");
    expect(v.calls).toEqual([]);
  });
});

describe("vfioReset through real libc on the fake tree", () => {
  const ownFds = () => readdirSync("/proc/self/fd").length;

  it("fails naming the container path under devRoot when there is no VFIO there", async () => {
    const hw = createSysfsBackend(roots());
    const before = ownFds();
    await expect(hw.vfioReset!(DEV)).rejects.toThrow(`open ${join(fake.devRoot, "vfio/vfio")}: ENOENT (2)`);
    expect(ownFds()).toBe(before);
    await hw.close();
  });

  it("on regular files the first ioctl fails with ENOTTY naming the path, and every fd is closed", async () => {
    fake.addVfioNodes(12);
    const hw = createSysfsBackend(roots());
    const before = ownFds();
    await expect(hw.vfioReset!(DEV)).rejects.toThrow(
      `ioctl VFIO_GET_API_VERSION (0x3b64) on ${join(fake.devRoot, "vfio/vfio")}: ENOTTY (25)`,
    );
    expect(ownFds()).toBe(before);
    const stillOpen = readdirSync("/proc/self/fd").map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return "";
      }
    });
    expect(stillOpen.filter((p) => p.startsWith(fake.devRoot))).toEqual([]);
    await hw.close();
  });

  it("opens only paths under the given devRoot", async () => {
    fake.addVfioNodes(12);
    const opened: string[] = [];
    const sys: VfioSys = {
      ...realVfioSys,
      open: (path, flags) => {
        opened.push(path);
        return realVfioSys.open(path, flags);
      },
    };
    await expect(vfioReset({ roots: roots(), log: silentLogger, sys }, DEV)).rejects.toThrow("ENOTTY");
    expect(opened).toEqual([join(fake.devRoot, "vfio/vfio")]);
    expect(opened.every((p) => p.startsWith(`${fake.root}/`))).toBe(true);
  });
});
