// BAR access through mmap of sysfs `resourceN`, 32-bit accesses only (CXL component registers allow no
// other width). A BAR is mapped once, or in windows of MMIO_WINDOW_BYTES when it is larger, so that a
// device-memory BAR of many GiB does not need one huge view.
import { statSync } from "node:fs";
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
  close(): void;
}

interface Mapping {
  path: string;
  ptr: bigint;
  start: number;
  length: number;
  words: Uint32Array;
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
    let m = mappings.get(key);
    if (!m) {
      const length = Math.min(windowBytes, size - start);
      const fd = sysOpen(path, O_RDWR);
      let ptr: bigint;
      try {
        ptr = sysMmap(fd, path, length, PROT_READ | PROT_WRITE, start);
      } finally {
        sysClose(fd, path); // the mapping outlives the fd
      }
      m = { path, ptr, start, length, words: new Uint32Array(mappedView(ptr, length)) };
      mappings.set(key, m);
      log.debug({ bdf, bar, start, length }, "mapped BAR");
    }
    return { m, index: (offset - start) / 4 };
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
    close() {
      for (const [key, m] of mappings) {
        mappings.delete(key);
        // The Uint32Array dangles after munmap; the map entry (its only holder) is already gone.
        try {
          sysMunmap(m.ptr, m.length, m.path);
        } catch (e) {
          log.warn({ err: e, path: m.path }, "munmap failed");
        }
      }
      sizes.clear();
    },
  };
}
