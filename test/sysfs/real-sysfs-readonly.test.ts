// Read-only checks against this machine's real /sys/bus/pci. Only read methods are called: the PCI
// functions here are the machine's own disks and network.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { basename, dirname } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSysfsBackend } from "../../services/agent/backends/sysfs/sysfs-backend.ts";
import { BDF_RE, type PciFunctionInfo } from "../../shared/hw/backend.ts";

const DEVICES = "/sys/bus/pci/devices";
const hw = createSysfsBackend();
afterAll(() => hw.close());

const listed = readdirSync(DEVICES).sort();
const configFile = (bdf: string) => readFileSync(`${DEVICES}/${bdf}/config`);
let functions: PciFunctionInfo[] = [];
beforeAll(async () => {
  functions = await hw.listFunctions();
});

describe("sysfs backend on this machine's /sys (read-only)", () => {
  it("lists every entry of /sys/bus/pci/devices", async () => {
    expect(listed.length).toBeGreaterThan(0);
    expect(functions.map((f) => f.bdf)).toEqual(listed);
  });

  it("parents agree with readlink -f, and ids, driver, group and reset methods with the files", async () => {
    for (const f of functions) {
      const real = execFileSync("readlink", ["-f", `${DEVICES}/${f.bdf}`], { encoding: "utf8" }).trim();
      const above = basename(dirname(real));
      expect(f.parent, f.bdf).toBe(BDF_RE.test(above) ? above : null);
      const cfg = configFile(f.bdf);
      expect(f.vendorId).toBe(cfg.readUInt16LE(0));
      expect(f.deviceId).toBe(cfg.readUInt16LE(2));
      expect(f.classCode).toBe(cfg.readUIntLE(9, 3));
      expect(f.headerType).toBe((cfg[0x0e]! & 0x7f) === 1 ? 1 : 0);
      const link = (name: string) => {
        try {
          return basename(readlinkSync(`${DEVICES}/${f.bdf}/${name}`));
        } catch {
          return null;
        }
      };
      expect(f.driver).toBe(link("driver"));
      expect(f.iommuGroup).toBe(link("iommu_group") === null ? null : Number(link("iommu_group")));
      let methods: string[] = [];
      try {
        methods = readFileSync(`${DEVICES}/${f.bdf}/reset_method`, "utf8").split(/\s+/).filter(Boolean);
      } catch {}
      expect(f.resetMethods).toEqual(methods);
    }
  });

  it("configRead at offset 0 (width 2 and 4) and configReadAll equal a plain read of config", async () => {
    for (const bdf of listed) {
      const file = configFile(bdf);
      expect(await hw.configRead(bdf, 0, 2)).toBe(file.readUInt16LE(0));
      expect(await hw.configRead(bdf, 0, 4)).toBe(file.readUInt32LE(0));
      expect(await hw.configRead(bdf, 0x0e, 1)).toBe(file[0x0e]);
      const all = await hw.configReadAll(bdf);
      expect(all.length).toBe(file.length);
      expect(Buffer.from(all).equals(file)).toBe(true);
    }
  });

  it("holders() runs on the real /proc without throwing", async () => {
    for (const f of functions) {
      const holders = await hw.holders(f.bdf);
      if (f.driver) expect(holders).toContainEqual({ kind: "driver", detail: f.driver });
      // The backend's own config fds are open right now; our own pid is never reported.
      expect(holders.some((h) => h.pid === process.pid)).toBe(false);
    }
  });

  it("opened the real config files read-only (O_ACCMODE 0 in fdinfo)", () => {
    const configFds = readdirSync("/proc/self/fd").filter((fd) => {
      try {
        return /^\/sys\/devices\/.*\/config$/.test(readlinkSync(`/proc/self/fd/${fd}`));
      } catch {
        return false;
      }
    });
    expect(configFds.length).toBe(listed.length);
    for (const fd of configFds) {
      const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))![1]!;
      expect(Number.parseInt(flags, 8) & 0o3, `fd ${fd}`).toBe(0);
    }
  });
});
