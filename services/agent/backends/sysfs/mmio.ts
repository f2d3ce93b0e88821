// BAR access through mmap of sysfs `resourceN`, 32-bit accesses only (CXL component registers allow no
// other width). A BAR is mapped once, or in windows of MMIO_WINDOW_BYTES when it is larger, so that a
// device-memory BAR of many GiB does not need one huge view.
// A driver that binds claims its BARs, and with CONFIG_IO_STRICT_DEVMEM the kernel then revokes user
// mappings of them (a later access is SIGBUS) and refuses new ones (EINVAL). So a mapping is kept only while
// the device's driver is the one it was made under, and a refused mmap under a driver is "device-busy".
import { readlinkSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { PCI_BAR_COUNT } from "../../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../../shared/errors.ts";
import type { Logger } from "../../../../shared/log.ts";
import { mappedView, O_RDWR, PROT_READ, PROT_WRITE, sysClose, sysMmap, sysMunmap, sysOpen } from "./libc.ts";
import { fsError } from "./sysfs-attr.ts";

/** Largest single mapping; a power of two, so windows stay page-aligned. */
export const MMIO_WINDOW_BYTES = 16 * 1024 * 1024;

export interface Mmio {
  read32(bdf: string, bar: number, offset: number): number;
  write32(bdf: string, bar: number, offset: number, value: number): void;
  /** Unmap every BAR of a device (before its driver changes). */
  forget(bdf: string): void;
  close(): void;
}

interface Mapping {
  path: string;
  ptr: bigint;
  start: number;
  length: number;
  words: Uint32Array;
  /** Driver bound when the mapping was made. */
  driver: string | null;
}

const EINVAL = 22;

/** The driver bound to the device whose sysfs file `path` is (null when none or unknown). */
function boundDriver(path: string): string | null {
  try {
    return basename(readlinkSync(join(dirname(path), "driver")));
  } catch {
    return null;
  }
}

export function createMmio(resourcePath: (bdf: string, bar: number) => string, log: Logger): Mmio {
  const sizes = new Map<string, number>();
  const mappings = new Map<string, Mapping>();

  function barSize(bdf: string, bar: number, path: string): number {
    const key = `${bdf}/${bar}`;
    let size = sizes.get(key);
    if (size === undefined) {
      try {
        size = statSync(path).size;
      } catch (e) {
        throw fsError(`BAR ${bar} of ${bdf}: cannot stat`, path, e);
      }
      if (size === 0) {
        throw new CxlrcError("backend", `BAR ${bar} of ${bdf} is empty: ${path} has size 0`, { bdf, path });
      }
      sizes.set(key, size);
    }
    return size;
  }

  function mappingFor(bdf: string, bar: number, offset: number): { m: Mapping; index: number } {
    if (!Number.isInteger(bar) || bar < 0 || bar >= PCI_BAR_COUNT) {
      throw new CxlrcError("bad-input", `BAR number must be 0..${PCI_BAR_COUNT - 1}, not ${bar}`, { bdf });
    }
    const path = resourcePath(bdf, bar);
    const size = barSize(bdf, bar, path);
    if (!Number.isInteger(offset) || offset < 0 || offset % 4 !== 0 || offset + 4 > size) {
      throw new CxlrcError(
        "bad-input",
        `MMIO offset ${offset} of BAR ${bar} of ${bdf} must be 4-byte aligned and inside the BAR (${size} bytes, ${path})`,
        { bdf, path, offset },
      );
    }
    const windowBytes = Math.min(size, MMIO_WINDOW_BYTES);
    const start = Math.floor(offset / windowBytes) * windowBytes;
    const key = `${bdf}/${bar}/${start}`;
    const driver = boundDriver(path);
    let m = mappings.get(key);
    if (m && m.driver !== driver) {
      // Bound or unbound since it was made: the kernel may have revoked it.
      mappings.delete(key);
      unmap(m);
      m = undefined;
    }
    if (!m) {
      const length = Math.min(windowBytes, size - start);
      const fd = sysOpen(path, O_RDWR);
      let ptr: bigint;
      try {
        ptr = sysMmap(fd, path, length, PROT_READ | PROT_WRITE, start);
      } catch (e) {
        if (driver !== null && e instanceof CxlrcError && e.details.errno === EINVAL) {
          throw new CxlrcError(
            "device-busy",
            `BAR ${bar} of ${bdf} is claimed by driver ${driver}: the kernel refuses to map it (CONFIG_IO_STRICT_DEVMEM); unbind the driver first`,
            { bdf, path, driver, errno: EINVAL },
            { cause: e },
          );
        }
        throw e;
      } finally {
        sysClose(fd, path); // the mapping outlives the fd
      }
      m = { path, ptr, start, length, words: new Uint32Array(mappedView(ptr, length)), driver };
      mappings.set(key, m);
      log.debug({ bdf, bar, start, length }, "mapped BAR");
    }
    return { m, index: (offset - start) / 4 };
  }

  function unmap(m: Mapping): void {
    // The Uint32Array dangles after munmap; the map entry (its only holder) is already gone.
    try {
      sysMunmap(m.ptr, m.length, m.path);
    } catch (e) {
      log.warn({ err: e, path: m.path }, "munmap failed");
    }
  }

  return {
    read32(bdf, bar, offset) {
      const { m, index } = mappingFor(bdf, bar, offset);
      return m.words[index]!;
    },
    write32(bdf, bar, offset, value) {
      if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
        throw new CxlrcError("bad-input", `MMIO value ${value} is not a 32-bit unsigned integer`, { bdf });
      }
      const { m, index } = mappingFor(bdf, bar, offset);
      m.words[index] = value;
    },
    forget(bdf) {
      for (const [key, m] of mappings) {
        if (!key.startsWith(`${bdf}/`)) continue;
        mappings.delete(key);
        unmap(m);
      }
    },
    close() {
      for (const [key, m] of mappings) {
        mappings.delete(key);
        unmap(m);
      }
      sizes.clear();
    },
  };
}
