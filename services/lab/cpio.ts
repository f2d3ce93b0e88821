// A newc ("070701") cpio writer, gzip-compressed, for the kernel's initramfs unpacker. Written here rather
// than staged for GNU cpio so that device nodes (/dev/console) need no mknod and no root, file data is
// streamed from where it lies on the host, and the archive is byte-for-byte reproducible (mtime 0, uid 0).
// Parent directories are emitted before their entries: the kernel's unpacker does not create them.
import { createWriteStream, readFileSync } from "node:fs";
import { posix } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";

export type CpioEntry =
  | { kind: "dir"; path: string; mode?: number }
  | { kind: "file"; path: string; source: string; mode?: number }
  | { kind: "data"; path: string; data: string | Uint8Array; mode?: number }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "chardev"; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

const hex8 = (n: number) => n.toString(16).padStart(8, "0");
const pad4 = (n: number) => (4 - (n % 4)) % 4;

function header(p: {
  ino: number;
  mode: number;
  nlink: number;
  size: number;
  rdevMajor?: number;
  rdevMinor?: number;
  name: string;
}): Buffer {
  const name = Buffer.from(`${p.name}\0`, "utf8");
  const fields = [
    p.ino,
    p.mode,
    0, // uid
    0, // gid
    p.nlink,
    0, // mtime
    p.size,
    0, // devmajor
    0, // devminor
    p.rdevMajor ?? 0,
    p.rdevMinor ?? 0,
    name.length,
    0, // check
  ];
  const head = Buffer.from(`070701${fields.map(hex8).join("")}`, "ascii");
  return Buffer.concat([head, name, Buffer.alloc(pad4(head.length + name.length))]);
}

/** Archive paths are relative ("bin/busybox"); leading slashes are dropped. */
const clean = (p: string) => posix.normalize(p).replace(/^\/+/, "");

/** Writes the entries as a gzip'd newc archive; returns the number of entries written. */
export async function writeCpioGz(out: string, entries: readonly CpioEntry[], level = 1): Promise<number> {
  const chunks = generate(entries);
  const gzip = createGzip({ level });
  const sink = createWriteStream(out);
  let count = 0;
  const source = async function* () {
    for (const c of chunks) {
      count++;
      yield c;
    }
  };
  await pipeline(source, gzip, sink);
  return count;
}

function* generate(entries: readonly CpioEntry[]): Generator<Buffer> {
  const seen = new Set<string>();
  let ino = 1;
  const dir = function* (path: string, mode = 0o755): Generator<Buffer> {
    if (path === "" || path === "." || seen.has(path)) return;
    yield* dir(posix.dirname(path));
    seen.add(path);
    yield header({ ino: ino++, mode: S_IFDIR | mode, nlink: 2, size: 0, name: path });
  };
  for (const e of entries) {
    const path = clean(e.path);
    if (e.kind === "dir") {
      yield* dir(path, e.mode);
      continue;
    }
    if (seen.has(path)) throw new Error(`initramfs: ${path} added twice`);
    yield* dir(posix.dirname(path));
    seen.add(path);
    if (e.kind === "symlink") {
      const target = Buffer.from(e.target, "utf8");
      yield header({ ino: ino++, mode: S_IFLNK | 0o777, nlink: 1, size: target.length, name: path });
      yield Buffer.concat([target, Buffer.alloc(pad4(target.length))]);
    } else if (e.kind === "chardev") {
      yield header({
        ino: ino++,
        mode: S_IFCHR | (e.mode ?? 0o600),
        nlink: 1,
        size: 0,
        rdevMajor: e.major,
        rdevMinor: e.minor,
        name: path,
      });
    } else {
      const data =
        e.kind === "file"
          ? readFileSync(e.source)
          : typeof e.data === "string"
            ? Buffer.from(e.data, "utf8")
            : Buffer.from(e.data);
      yield header({
        ino: ino++,
        mode: S_IFREG | (e.mode ?? 0o644),
        nlink: 1,
        size: data.length,
        name: path,
      });
      yield data;
      const pad = pad4(data.length);
      if (pad > 0) yield Buffer.alloc(pad);
    }
  }
  yield header({ ino: 0, mode: 0, nlink: 1, size: 0, name: "TRAILER!!!" });
}
