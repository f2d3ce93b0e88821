import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  MAP_FAILED,
  mappedView,
  O_RDONLY,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
  sysClose,
  sysIoctl,
  sysMmap,
  sysMunmap,
  sysOpen,
  sysPread,
  sysPwrite,
} from "../../services/agent/backends/sysfs/libc.ts";
import { CxlrcError } from "../../shared/errors.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "cxlrc-libc-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function caught(f: () => unknown): CxlrcError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CxlrcError);
    return e as CxlrcError;
  }
  throw new Error("expected a throw");
}

describe("libc wrappers", () => {
  it("open of a missing file names the path, errno and its name", () => {
    const path = join(dir, "missing");
    const e = caught(() => sysOpen(path, O_RDONLY));
    expect(e.kind).toBe("backend");
    expect(e.message).toBe(`open ${path}: ENOENT (2)`);
    expect(e.details).toMatchObject({ errno: 2, path });
  });

  it("pread and pwrite move exactly the bytes asked at the offset", () => {
    const path = join(dir, "f");
    writeFileSync(path, Buffer.alloc(16));
    const fd = sysOpen(path, O_RDWR);
    expect(sysPwrite(fd, path, Buffer.from([0xaa, 0xbb]), 6)).toBe(2);
    const buf = Buffer.alloc(4);
    expect(sysPread(fd, path, buf, 5)).toBe(4);
    expect([...buf]).toEqual([0, 0xaa, 0xbb, 0]);
    expect(sysPread(fd, path, Buffer.alloc(4), 16)).toBe(0);
    sysClose(fd, path);
    expect([...readFileSync(path).subarray(6, 8)]).toEqual([0xaa, 0xbb]);
  });

  it("a failed pread reports the offset in hex", () => {
    const path = join(dir, "wo");
    writeFileSync(path, "x");
    const fd = openSync(path, "w"); // write-only: pread gives EBADF
    try {
      const e = caught(() => sysPread(fd, path, Buffer.alloc(1), 0x100));
      expect(e.message).toBe(`pread ${path} at 0x100: EBADF (9)`);
    } finally {
      closeSync(fd);
    }
  });

  it("mmap of a read-only fd for writing fails as MAP_FAILED, not null, and throws", () => {
    const path = join(dir, "m");
    writeFileSync(path, Buffer.alloc(4096));
    const fd = sysOpen(path, O_RDONLY);
    try {
      const e = caught(() => sysMmap(fd, path, 4096, PROT_READ | PROT_WRITE, 0));
      expect(e.message).toMatch(/^mmap .* \(4096 bytes at 0x0\): EACCES \(13\)$/);
      expect(MAP_FAILED).toBe(2n ** 64n - 1n);
    } finally {
      sysClose(fd, path);
    }
  });

  it("a mapped view writes through to the file", () => {
    const path = join(dir, "m");
    writeFileSync(path, Buffer.alloc(8192));
    const fd = sysOpen(path, O_RDWR);
    const ptr = sysMmap(fd, path, 8192, PROT_READ | PROT_WRITE, 4096);
    sysClose(fd, path);
    new Uint32Array(mappedView(ptr, 8192))[1] = 0x11223344;
    sysMunmap(ptr, 8192, path);
    expect(readFileSync(path).readUInt32LE(4096 + 4)).toBe(0x11223344);
  });

  it("ioctl on a regular file fails with ENOTTY naming the request and the path", () => {
    const path = join(dir, "r");
    writeFileSync(path, "");
    const fd = sysOpen(path, O_RDWR);
    try {
      const e = caught(() => sysIoctl(fd, path, "VFIO_GET_API_VERSION", 0x3b64));
      expect(e.message).toBe(`ioctl VFIO_GET_API_VERSION (0x3b64) on ${path}: ENOTTY (25)`);
      expect(caught(() => sysIoctl(fd, path, "X", 0x3b68, Buffer.alloc(4))).details.errno).toBe(25);
      expect(caught(() => sysIoctl(fd, path, "X", 0x3b66, 1)).details.errno).toBe(25);
      expect(caught(() => sysIoctl(fd, path, "X", 0x3b6a, "0000:01:00.0")).details.errno).toBe(25);
    } finally {
      sysClose(fd, path);
    }
  });

  it("close of a bad fd throws EBADF", () => {
    expect(caught(() => sysClose(987654, "nothing")).message).toBe("close nothing (fd 987654): EBADF (9)");
  });
});

describe("lazy loading", () => {
  it("importing the backend loads no native code; the first access does", () => {
    const script = `
      const m = await import("./services/agent/backends/sysfs/sysfs-backend.ts");
      const cache = (await import("node:module")).createRequire(import.meta.url).cache;
      const loaded = () => Object.keys(cache).some((k) => k.includes("koffi"));
      const before = loaded();
      const hw = m.createSysfsBackend({ sysfsRoot: "/nonexistent" });
      const absent = await hw.configRead("0000:00:00.0", 0, 4);
      console.log(JSON.stringify({ before, after: loaded(), absent }));`;
    const out = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: join(import.meta.dirname, "../.."),
      encoding: "utf8",
    });
    expect(JSON.parse(out)).toEqual({ before: false, after: true, absent: 0xffffffff });
  });
});
