// koffi bindings to the few libc calls the sysfs backend needs (open, close, pread, pwrite, mmap, munmap,
// ioctl), each wrapped so that a -1 becomes a CxlrcError naming the call, the path, errno and its name.
// koffi and libc.so.6 are loaded on first use: importing this module never touches native code.
import { createRequire } from "node:module";
import { CxlrcError } from "../../../../shared/errors.ts";

type Koffi = typeof import("koffi").default;
type NativeFn = (...args: unknown[]) => unknown;

// Linux x86-64/arm64 values (asm-generic); the backend only runs on Linux.
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x1;
/** mmap's failure value: (void *)-1, which koffi hands back as an unsigned 64-bit BigInt. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
const EINTR = 4;
const EINTR_RETRY_LIMIT = 8;

interface Bindings {
  koffi: Koffi;
  errnoNames: Map<number, string>;
  open: NativeFn;
  close: NativeFn;
  pread: NativeFn;
  pwrite: NativeFn;
  mmap: NativeFn;
  munmap: NativeFn;
  ioctlNoArg: NativeFn;
  ioctlInt: NativeFn;
  ioctlPtr: NativeFn;
  ioctlStr: NativeFn;
}

let bindings: Bindings | undefined;

function libc(): Bindings {
  if (bindings) return bindings;
  let koffi: Koffi;
  let lib: ReturnType<Koffi["load"]>;
  try {
    koffi = createRequire(import.meta.url)("koffi") as Koffi;
    lib = koffi.load("libc.so.6");
  } catch (cause) {
    throw new CxlrcError(
      "backend",
      `cannot load libc.so.6 through koffi: ${(cause as Error).message}`,
      {},
      { cause },
    );
  }
  const errnoNames = new Map<number, string>();
  for (const [name, value] of Object.entries(koffi.os.errno)) {
    if (!errnoNames.has(value)) errnoNames.set(value, name);
  }
  bindings = {
    koffi,
    errnoNames,
    open: lib.func("int open(const char *path, int flags, uint32_t mode)"),
    close: lib.func("int close(int fd)"),
    pread: lib.func("int64_t pread(int fd, void *buf, size_t count, int64_t offset)"),
    pwrite: lib.func("int64_t pwrite(int fd, const void *buf, size_t count, int64_t offset)"),
    mmap: lib.func("void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)"),
    munmap: lib.func("int munmap(void *addr, size_t length)"),
    // ioctl is variadic: one fixed-arity prototype per argument shape (koffi accepts the symbol twice).
    ioctlNoArg: lib.func("int ioctl(int fd, unsigned long request)"),
    ioctlInt: lib.func("int ioctl(int fd, unsigned long request, int arg)"),
    ioctlPtr: lib.func("int ioctl(int fd, unsigned long request, void *arg)"),
    ioctlStr: lib.func("int ioctl(int fd, unsigned long request, const char *arg)"),
  };
  return bindings;
}

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

/** errno right after a failed call, turned into the error every wrapper throws. */
function fail(b: Bindings, what: string, path: string, extra: Record<string, unknown> = {}): never {
  const errno = b.koffi.errno();
  const name = b.errnoNames.get(errno) ?? "E?";
  throw new CxlrcError("backend", `${what}: ${name} (${errno})`, { errno, errnoName: name, path, ...extra });
}

function retryOnEintr(b: Bindings, call: () => number): number {
  for (let attempt = 0; ; attempt++) {
    const r = call();
    if (r !== -1 || b.koffi.errno() !== EINTR || attempt >= EINTR_RETRY_LIMIT) return r;
  }
}

export function sysOpen(path: string, flags: number): number {
  const b = libc();
  const fd = b.open(path, flags | O_CLOEXEC, 0) as number;
  if (fd === -1) fail(b, `open ${path}`, path, { flags });
  return fd;
}

export function sysClose(fd: number, path: string): void {
  const b = libc();
  if ((b.close(fd) as number) === -1) fail(b, `close ${path} (fd ${fd})`, path);
}

/** pread into buf at offset; returns the byte count (0 at end of file). */
export function sysPread(fd: number, path: string, buf: Buffer, offset: number): number {
  const b = libc();
  const n = retryOnEintr(b, () => Number(b.pread(fd, buf, buf.length, offset)));
  if (n === -1) fail(b, `pread ${path} at ${hex(offset)}`, path, { offset });
  return n;
}

export function sysPwrite(fd: number, path: string, buf: Buffer, offset: number): number {
  const b = libc();
  const n = retryOnEintr(b, () => Number(b.pwrite(fd, buf, buf.length, offset)));
  if (n === -1) fail(b, `pwrite ${path} at ${hex(offset)}`, path, { offset });
  return n;
}

/** mmap(MAP_SHARED) of length bytes of fd at offset; returns the address. */
export function sysMmap(fd: number, path: string, length: number, prot: number, offset: number): bigint {
  const b = libc();
  const ptr = b.mmap(null, length, prot, MAP_SHARED, fd, offset) as bigint | null;
  if (ptr === null || BigInt(ptr) === MAP_FAILED) {
    fail(b, `mmap ${path} (${length} bytes at ${hex(offset)})`, path, { offset, length });
  }
  return BigInt(ptr);
}

export function sysMunmap(ptr: bigint, length: number, path: string): void {
  const b = libc();
  if ((b.munmap(ptr, length) as number) === -1) fail(b, `munmap ${path}`, path);
}

/** An ArrayBuffer over mapped memory (no copy). It dangles after munmap: drop it first. */
export function mappedView(ptr: bigint, length: number): ArrayBuffer {
  return libc().koffi.view(ptr, length);
}

/**
 * ioctl with no argument, an int, a buffer (passed as a pointer to its bytes, in and out) or a C string.
 * `name` is the request's name for the message ("VFIO_DEVICE_RESET").
 */
export function sysIoctl(
  fd: number,
  path: string,
  name: string,
  request: number,
  arg?: number | Buffer | string,
): number {
  const b = libc();
  let r: number;
  if (arg === undefined) r = b.ioctlNoArg(fd, request) as number;
  else if (typeof arg === "number") r = b.ioctlInt(fd, request, arg) as number;
  else if (typeof arg === "string") r = b.ioctlStr(fd, request, arg) as number;
  else r = b.ioctlPtr(fd, request, arg) as number;
  if (r === -1) fail(b, `ioctl ${name} (${hex(request)}) on ${path}`, path, { request: hex(request) });
  return r;
}
