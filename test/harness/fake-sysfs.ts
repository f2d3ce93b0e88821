// A temp-dir tree of regular files and symlinks shaped like sysfs, /proc and /dev, for the sysfs backend.
// Regular files do not act like the kernel (writing `reset` resets nothing): tests read back what the
// backend wrote. `kernelLikeIo` adds the few kernel reactions a test may need (unbind, drivers_probe).
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { type AttrIo, realAttrIo } from "../../services/agent/backends/sysfs/sysfs-attr.ts";
import type { Logger } from "../../shared/log.ts";

export const FAKE_RESOURCE_BYTES = 64 * 1024;

export interface ConfigFields {
  vendorId?: number;
  deviceId?: number;
  classCode?: number;
  /** 0 endpoint, 1 bridge. */
  headerType?: 0 | 1;
  multiFunction?: boolean;
  secondaryBus?: number;
  subordinateBus?: number;
  /** Total size: 4096 (extended) or 256. */
  size?: number;
}

/** A config space image with the given header fields, little-endian; the rest is zero. */
export function configSpace(f: ConfigFields = {}): Buffer {
  const b = Buffer.alloc(f.size ?? 4096);
  b.writeUInt16LE(f.vendorId ?? 0x1e98, 0x00);
  b.writeUInt16LE(f.deviceId ?? 0x0d93, 0x02);
  b.writeUIntLE(f.classCode ?? 0x050210, 0x09, 3);
  b.writeUInt8((f.headerType ?? 0) | (f.multiFunction ? 0x80 : 0), 0x0e);
  if (f.headerType === 1) {
    b.writeUInt8(f.secondaryBus ?? 0, 0x19);
    b.writeUInt8(f.subordinateBus ?? 0, 0x1a);
  }
  return b;
}

export interface FakeDeviceSpec extends ConfigFields {
  bdf: string;
  /** BDF of the bridge above (added earlier); none: directly below the host bridge. */
  parent?: string;
  /** Config bytes; default configSpace(this spec). */
  config?: Buffer;
  /** Size of resource0; 0 for none. */
  resourceBytes?: number;
  /** reset_method contents; null: no such file. */
  resetMethod?: string | null;
  driver?: string | null;
  iommuGroup?: number | null;
  modalias?: string;
}

export interface FakeProcess {
  pid: number;
  comm: string;
  /** fd symlink targets, fd numbers from 3. */
  fds?: string[];
  /** pathnames that appear in maps. */
  maps?: string[];
}

export interface FakeSysfs {
  root: string;
  sysfsRoot: string;
  procRoot: string;
  devRoot: string;
  addDevice(spec: FakeDeviceSpec): string;
  addDriver(name: string): string;
  addProcess(p: FakeProcess): void;
  /** Regular files standing in for /dev/vfio/vfio and /dev/vfio/N (ioctls on them fail with ENOTTY). */
  addVfioNodes(group: number): void;
  /** Path of a device's attribute (through bus/pci/devices, like the backend). */
  file(bdf: string, name: string): string;
  read(path: string): string;
  realDir(bdf: string): string;
  cleanup(): void;
}

export function createFakeSysfs(): FakeSysfs {
  const root = mkdtempSync(join(tmpdir(), "cxlrc-fake-sysfs-"));
  const sysfsRoot = join(root, "sys");
  const procRoot = join(root, "proc");
  const devRoot = join(root, "dev");
  for (const d of [
    procRoot,
    devRoot,
    join(sysfsRoot, "bus/pci/devices"),
    join(sysfsRoot, "bus/pci/drivers"),
  ]) {
    mkdirSync(d, { recursive: true });
  }
  writeFileSync(join(sysfsRoot, "bus/pci/drivers_probe"), "");
  const realDirs = new Map<string, string>();

  const link = (target: string, at: string) => symlinkSync(relative(dirname(at), target), at);

  const fake: FakeSysfs = {
    root,
    sysfsRoot,
    procRoot,
    devRoot,

    addDriver(name) {
      const dir = join(sysfsRoot, "bus/pci/drivers", name);
      mkdirSync(dir, { recursive: true });
      for (const f of ["bind", "unbind", "new_id"]) writeFileSync(join(dir, f), "");
      return dir;
    },

    addDevice(spec) {
      const above = spec.parent
        ? realDirs.get(spec.parent)
        : join(sysfsRoot, "devices", `pci${spec.bdf.slice(0, 7)}`);
      if (!above) throw new Error(`fake sysfs: parent ${spec.parent} not added yet`);
      const dir = join(above, spec.bdf);
      mkdirSync(dir, { recursive: true });
      realDirs.set(spec.bdf, dir);
      const cfg = spec.config ?? configSpace(spec);
      writeFileSync(join(dir, "config"), cfg);
      const hex = (v: number, digits: number) => `0x${v.toString(16).padStart(digits, "0")}\n`;
      writeFileSync(join(dir, "vendor"), hex(cfg.readUInt16LE(0), 4));
      writeFileSync(join(dir, "device"), hex(cfg.readUInt16LE(2), 4));
      writeFileSync(join(dir, "class"), hex(cfg.readUIntLE(0x09, 3), 6));
      if ((spec.resourceBytes ?? FAKE_RESOURCE_BYTES) > 0) {
        writeFileSync(join(dir, "resource0"), Buffer.alloc(spec.resourceBytes ?? FAKE_RESOURCE_BYTES));
      }
      if (spec.resetMethod !== null)
        writeFileSync(join(dir, "reset_method"), `${spec.resetMethod ?? "flr bus"}\n`);
      writeFileSync(join(dir, "reset"), "");
      writeFileSync(join(dir, "driver_override"), "(null)\n");
      writeFileSync(
        join(dir, "modalias"),
        `${spec.modalias ?? "pci:v00001E98d00000D93sv00000000sd00000000bc05sc02i10"}\n`,
      );
      if (spec.driver) link(fake.addDriver(spec.driver), join(dir, "driver"));
      if (spec.iommuGroup !== undefined && spec.iommuGroup !== null) {
        const group = join(sysfsRoot, "kernel/iommu_groups", String(spec.iommuGroup));
        mkdirSync(group, { recursive: true });
        link(group, join(dir, "iommu_group"));
      }
      link(dir, join(sysfsRoot, "bus/pci/devices", spec.bdf));
      return dir;
    },

    addProcess(p) {
      const dir = join(procRoot, String(p.pid));
      mkdirSync(join(dir, "fd"), { recursive: true });
      writeFileSync(join(dir, "comm"), `${p.comm}\n`);
      for (const [i, target] of (p.fds ?? []).entries()) symlinkSync(target, join(dir, "fd", String(i + 3)));
      const maps = (p.maps ?? []).map(
        (path, i) => `7f00000${i}0000-7f00000${i}1000 rw-s 00000000 00:15 ${1000 + i}   ${path}`,
      );
      writeFileSync(join(dir, "maps"), maps.length ? `${maps.join("\n")}\n` : "");
    },

    addVfioNodes(group) {
      mkdirSync(join(devRoot, "vfio"), { recursive: true });
      writeFileSync(join(devRoot, "vfio/vfio"), "");
      writeFileSync(join(devRoot, "vfio", String(group)), "");
    },

    file: (bdf, name) => join(sysfsRoot, "bus/pci/devices", bdf, name),
    read: (path) => readFileSync(path, "utf8"),
    realDir: (bdf) => realDirs.get(bdf) ?? "",
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
  return fake;
}

/**
 * Attribute I/O that writes the files like the real one, then plays the kernel's part for driver
 * binding: `driver/unbind` removes the device's driver link; `drivers_probe` links the device to the
 * driver named in its driver_override when that driver exists.
 */
export function kernelLikeIo(fake: FakeSysfs): AttrIo {
  return {
    readAttr: realAttrIo.readAttr,
    async writeAttr(path: string, text: string, log: Logger) {
      await realAttrIo.writeAttr(path, text, log);
      if (basename(path) === "unbind" && basename(dirname(path)) === "driver") {
        unlinkSync(dirname(path));
      }
      if (path === join(fake.sysfsRoot, "bus/pci/drivers_probe")) {
        const bdf = text.trim();
        const override = fake.read(fake.file(bdf, "driver_override")).trim();
        const driverDir = join(fake.sysfsRoot, "bus/pci/drivers", override);
        try {
          readFileSync(join(driverDir, "bind"));
        } catch {
          return; // no such driver: nothing binds
        }
        symlinkSync(relative(fake.realDir(bdf), driverDir), join(fake.realDir(bdf), "driver"));
      }
    },
  };
}
