// Config space through sysfs `config`: pread/pwrite of exactly the access width at the offset (the kernel
// turns an aligned 1/2/4-byte access into a config cycle of that width). One read-only fd per device,
// opened on first read; a read-write fd is opened only on the first write, so a reader never writes.
import { fstatSync } from "node:fs";
import { PCI_CFG_SPACE_EXP_SIZE } from "../../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../../shared/errors.ts";
import type { Width } from "../../../../shared/hw/backend.ts";
import type { Logger } from "../../../../shared/log.ts";
import { O_RDONLY, O_RDWR, sysClose, sysOpen, sysPread, sysPwrite } from "./libc.ts";

const ENOENT = 2;
const ENODEV = 19;
/** Unprivileged readers of sysfs `config` see only the first 64 bytes (the kernel checks CAP_SYS_ADMIN). */
const UNPRIVILEGED_CONFIG_BYTES = 64;

export interface ConfigSpace {
  read(bdf: string, offset: number, width: Width): Promise<number>;
  write(bdf: string, offset: number, width: Width, value: number): Promise<void>;
  readAll(bdf: string): Promise<Uint8Array>;
  close(): void;
}

interface DeviceFds {
  path: string;
  ro?: number;
  rw?: number;
  /** File size: 256 (conventional) or 4096 (extended config space). */
  size: number;
}

const allOnes = (width: Width) => (width === 4 ? 0xffffffff : (1 << (width * 8)) - 1);

const errnoOf = (e: unknown) => (e instanceof CxlrcError ? e.details.errno : undefined);

export function checkConfigAccess(bdf: string, offset: number, width: Width): void {
  if (width !== 1 && width !== 2 && width !== 4) {
    throw new CxlrcError("bad-input", `config access width must be 1, 2 or 4, not ${width}`, { bdf });
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + width > PCI_CFG_SPACE_EXP_SIZE) {
    throw new CxlrcError(
      "bad-input",
      `config offset ${offset} (width ${width}) is outside config space (0..0x${PCI_CFG_SPACE_EXP_SIZE.toString(16)})`,
      { bdf, offset },
    );
  }
  if (offset % width !== 0) {
    throw new CxlrcError(
      "bad-input",
      `config offset 0x${offset.toString(16)} is not aligned to its width ${width}`,
      { bdf, offset },
    );
  }
}

export function createConfigSpace(configPath: (bdf: string) => string, log: Logger): ConfigSpace {
  const devices = new Map<string, DeviceFds>();

  function closeDevice(bdf: string): void {
    const d = devices.get(bdf);
    if (!d) return;
    devices.delete(bdf);
    for (const fd of [d.ro, d.rw]) {
      if (fd === undefined) continue;
      try {
        sysClose(fd, d.path);
      } catch (e) {
        log.warn({ err: e, bdf }, "closing config fd failed");
      }
    }
  }

  /** fd for reading (the read-write one when open), or null when the device is absent. */
  function fdFor(bdf: string, mode: "read" | "write"): { fd: number; d: DeviceFds } | null {
    let d = devices.get(bdf);
    if (mode === "read" && d) return { fd: (d.rw ?? d.ro)!, d };
    if (mode === "write" && d?.rw !== undefined) return { fd: d.rw, d };
    const path = configPath(bdf);
    let fd: number;
    try {
      fd = sysOpen(path, mode === "write" ? O_RDWR : O_RDONLY);
    } catch (e) {
      if (errnoOf(e) === ENOENT) return null;
      throw e;
    }
    if (!d) {
      d = { path, size: fstatSync(fd).size };
      devices.set(bdf, d);
    }
    if (mode === "write") d.rw = fd;
    else d.ro = fd;
    return { fd, d };
  }

  return {
    async read(bdf, offset, width) {
      checkConfigAccess(bdf, offset, width);
      const open = fdFor(bdf, "read");
      // An absent function reads all-ones, as it would on the bus; so does space past the file's end.
      if (!open || offset >= open.d.size) return allOnes(width);
      const buf = Buffer.alloc(width);
      let n: number;
      try {
        n = sysPread(open.fd, open.d.path, buf, offset);
      } catch (e) {
        if (errnoOf(e) !== ENODEV && errnoOf(e) !== ENOENT) throw e;
        closeDevice(bdf); // removed under us (hot reset, surprise removal): reopen next time
        return allOnes(width);
      }
      if (n !== width) {
        const hint = offset >= UNPRIVILEGED_CONFIG_BYTES ? " (beyond 64 bytes needs CAP_SYS_ADMIN)" : "";
        throw new CxlrcError(
          "backend",
          `short read of ${open.d.path} at 0x${offset.toString(16)}: ${n} of ${width} bytes${hint}`,
          { bdf, path: open.d.path, offset },
        );
      }
      return buf.readUIntLE(0, width);
    },

    async write(bdf, offset, width, value) {
      checkConfigAccess(bdf, offset, width);
      if (!Number.isInteger(value) || value < 0 || value > allOnes(width)) {
        throw new CxlrcError("bad-input", `value ${value} does not fit in ${width} byte(s)`, { bdf, offset });
      }
      const open = fdFor(bdf, "write");
      if (!open) {
        throw new CxlrcError("device-absent", `${configPath(bdf)} does not exist: no such PCI function`, {
          bdf,
        });
      }
      if (offset + width > open.d.size) {
        throw new CxlrcError(
          "bad-input",
          `config offset 0x${offset.toString(16)} is beyond ${bdf}'s config space (${open.d.size} bytes)`,
          { bdf, offset },
        );
      }
      const buf = Buffer.alloc(width);
      buf.writeUIntLE(value, 0, width);
      const n = sysPwrite(open.fd, open.d.path, buf, offset);
      if (n !== width) {
        throw new CxlrcError(
          "backend",
          `short write to ${open.d.path} at 0x${offset.toString(16)}: ${n} of ${width} bytes`,
          { bdf, path: open.d.path, offset },
        );
      }
    },

    async readAll(bdf) {
      const open = fdFor(bdf, "read");
      if (!open) throw new CxlrcError("device-absent", `${configPath(bdf)} does not exist`, { bdf });
      const buf = Buffer.alloc(Math.min(open.d.size, PCI_CFG_SPACE_EXP_SIZE));
      let done = 0;
      while (done < buf.length) {
        const n = sysPread(open.fd, open.d.path, buf.subarray(done), done);
        if (n === 0) break; // an unprivileged reader stops at 64 bytes
        done += n;
      }
      return new Uint8Array(buf.subarray(0, done));
    },

    close() {
      for (const bdf of [...devices.keys()]) closeDevice(bdf);
    },
  };
}
