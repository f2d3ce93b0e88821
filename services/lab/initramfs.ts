// The lab's initramfs, in two gzip'd newc archives that the kernel unpacks one after the other:
// - base: busybox, the host's node with the libraries ldd lists, the production packages the runner bundle
//   leaves external (koffi and its prebuilt binary for this platform, as installed from package-lock.json),
//   the kernel modules the lab loads (with their dependencies, in load order) and /init. Cached, keyed by
//   all of those inputs.
// - app: the guest runner bundled with the cxlrc sources it imports (bundle.ts). Keyed by the bundle's bytes.
// /init mounts proc/sysfs/devtmpfs, loads the modules, runs the runner with node and powers off.
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
} from "node:fs";
import { join, relative } from "node:path";
import { BUNDLE_EXTERNALS, bundleGuestRunner } from "./bundle.ts";
import { type CpioEntry, writeCpioGz } from "./cpio.ts";
import { hashFiles, LabSetupError, sha256, withLock } from "./host.ts";
import { type LabKernel, moduleLoadOrder } from "./kernel.ts";
import { RESULT_TTY } from "./protocol.ts";

/** Bump when the layout or /init changes in a way the inputs below do not show. */
const FORMAT = "cxlrc-kernel-lab-initramfs-5";

/** Archives of other inputs are removed once untouched this long. */
const STALE_ARCHIVE_MS = 60 * 60_000;

/**
 * Modules the lab loads; dependencies (libnvdimm, nd_btt) come from modules.dep. cxl_pmem and nd_pmem: a pmem
 * region an operator creates gets its nd region (libnvdimm), as on a host with Debian's ndctl.
 */
export const LAB_MODULES = [
  "cxl_acpi",
  "cxl_pci",
  "cxl_mem",
  "cxl_pmem",
  "nd_pmem",
  "vfio_iommu_type1",
  "vfio_pci",
] as const;

/** Where the app sits in the guest, and the runner it starts. */
export const GUEST_APP_DIR = "/app";
/** The runner's source in the project, and its bundle in the guest. */
export const RUNNER_SOURCE = "services/lab/guest/runner.ts";
const GUEST_RUNNER = "runner.mjs";

export interface LabInitramfs {
  base: string;
  app: string;
  /** Whether each was built now (false: from the cache). */
  built: { base: boolean; app: boolean };
  modules: string[];
}

/** Libraries a binary needs, as ldd resolves them on this host (empty for a static binary). */
function sharedLibraries(binary: string): string[] {
  let out: string;
  try {
    out = execFileSync("ldd", [binary], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch {
    return []; // "not a dynamic executable"
  }
  const libs: string[] = [];
  for (const line of out.split("\n")) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

function which(name: string, candidates: string[]): string {
  for (const c of candidates) if (existsSync(c)) return c;
  throw new LabSetupError(
    `${name} is needed for the kernel lab and is not installed (looked at ${candidates.join(", ")})`,
  );
}

/** Files skipped in node_modules: documentation, type declarations, source maps, native sources. */
const SKIP_FILE_RE = /(\.md|\.markdown|\.map|\.d\.ts|\.d\.mts|\.d\.cts|\.tsbuildinfo)$/i;
const SKIP_DIRS = new Set(["node_modules", "doc", "docs", "test", "tests", "__tests__", ".github"]);

function walk(dir: string, onFile: (path: string) => void, skipDirs: Set<string> = SKIP_DIRS): void {
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) {
      if (!skipDirs.has(ent.name)) walk(p, onFile, skipDirs);
    } else if (ent.isFile() || ent.isSymbolicLink()) {
      onFile(p);
    }
  }
}

interface LockPackage {
  dev?: boolean;
  devOptional?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/**
 * The installed production packages `roots` need, by their node_modules path: each root, then its dependencies
 * and optional dependencies (only those installed: optional packages for other platforms are not).
 */
export function productionClosure(projectDir: string, roots: readonly string[]): string[] {
  const lock = JSON.parse(readFileSync(join(projectDir, "package-lock.json"), "utf8")) as {
    packages?: Record<string, LockPackage>;
  };
  const packages = lock.packages ?? {};
  const out = new Set<string>();
  const visit = (name: string) => {
    const path = `node_modules/${name}`;
    const meta = packages[path];
    if (out.has(path) || !meta || meta.dev || !existsSync(join(projectDir, path, "package.json"))) return;
    out.add(path);
    for (const d of Object.keys({ ...meta.dependencies, ...meta.optionalDependencies })) visit(d);
  };
  for (const r of roots) {
    visit(r);
    if (!out.has(`node_modules/${r}`)) {
      throw new LabSetupError(`${r} is not installed in ${projectDir}/node_modules: run npm ci`);
    }
  }
  return [...out].sort();
}

function nodeModuleEntries(projectDir: string): CpioEntry[] {
  const entries: CpioEntry[] = [];
  for (const pkg of productionClosure(projectDir, BUNDLE_EXTERNALS)) {
    const dir = join(projectDir, pkg);
    // koffi ships C++ sources and vendored headers beside its loader; the prebuilt binary is all it needs.
    const skip = pkg === "node_modules/koffi" ? new Set([...SKIP_DIRS, "vendor"]) : SKIP_DIRS;
    walk(
      dir,
      (p) => {
        if (SKIP_FILE_RE.test(p) || /\.(cc|hh|c|h|cpp)$/.test(p)) return;
        const mode = statSync(p).mode & 0o777;
        entries.push({
          kind: "file",
          path: join("app", relative(projectDir, p)),
          source: realpathSync(p),
          mode,
        });
      },
      skip,
    );
  }
  return entries;
}

function initScript(kernel: LabKernel, modules: readonly string[], nodePath: string): string {
  const uptime = "$(cut -d' ' -f1 /proc/uptime)";
  return `#!/bin/busybox sh
# cxlrc kernel lab /init (generated by services/lab/initramfs.ts)
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t tmpfs tmpfs /tmp
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/sbin HOME=/root
ip link set lo up
echo "cxlrc-lab: init on $(uname -r) at ${uptime}s"
for m in ${modules.join(" ")}; do
  insmod /lib/modules/${kernel.release}/$m || echo "cxlrc-lab: insmod $m failed"
done
echo "cxlrc-lab: modules loaded at ${uptime}s"
stty -F ${RESULT_TTY} raw -echo 2>/dev/null
cd ${GUEST_APP_DIR}
${nodePath} ${GUEST_RUNNER}
echo "cxlrc-lab: runner exited with $? at ${uptime}s"
poweroff -f
`;
}

function baseInputs(projectDir: string, kernel: LabKernel) {
  const node = process.execPath;
  const busybox = which("busybox (package busybox-static)", ["/bin/busybox", "/usr/bin/busybox"]);
  // nats-server (the bus checks run the whole product in the guest); without it those checks say so.
  const nats = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => existsSync(p)) ?? null;
  const libs = [
    ...new Set([
      ...sharedLibraries(node),
      ...sharedLibraries(busybox),
      ...(nats ? sharedLibraries(nats) : []),
    ]),
  ];
  const modules = moduleLoadOrder(kernel, LAB_MODULES);
  for (const m of modules) {
    if (!m.endsWith(".ko"))
      throw new LabSetupError(`compressed kernel module ${m}: not supported by the lab yet`);
  }
  const guestNode = "/usr/bin/node";
  const init = initScript(kernel, modules, guestNode);
  const stamp = (p: string) => {
    const s = statSync(p);
    return `${p}:${s.size}:${s.mtimeMs}`;
  };
  const key = sha256(
    [
      FORMAT,
      kernel.package,
      kernel.version,
      process.version,
      stamp(node),
      stamp(busybox),
      nats ? stamp(nats) : "no nats-server",
      ...libs.map(stamp),
      init,
      hashFiles([join(projectDir, "package-lock.json")]),
    ].join("\n"),
  ).slice(0, 24);
  return { node, guestNode, busybox, nats, libs, modules, init, key };
}

async function buildBase(
  out: string,
  kernel: LabKernel,
  inputs: ReturnType<typeof baseInputs>,
  projectDir: string,
) {
  const entries: CpioEntry[] = [
    { kind: "dir", path: "proc" },
    { kind: "dir", path: "sys" },
    { kind: "dir", path: "tmp", mode: 0o1777 },
    { kind: "dir", path: "run" },
    { kind: "dir", path: "root", mode: 0o700 },
    { kind: "dir", path: "etc" },
    { kind: "chardev", path: "dev/console", major: 5, minor: 1 },
    { kind: "chardev", path: "dev/null", major: 1, minor: 3, mode: 0o666 },
    { kind: "data", path: "init", data: inputs.init, mode: 0o755 },
    { kind: "file", path: "bin/busybox", source: inputs.busybox, mode: 0o755 },
    { kind: "file", path: inputs.guestNode, source: inputs.node, mode: 0o755 },
    ...(inputs.nats
      ? [{ kind: "file" as const, path: "/usr/sbin/nats-server", source: inputs.nats, mode: 0o755 }]
      : []),
    { kind: "data", path: "etc/passwd", data: "root:x:0:0:root:/root:/bin/sh\n" },
  ];
  for (const lib of inputs.libs)
    entries.push({ kind: "file", path: lib, source: realpathSync(lib), mode: 0o755 });
  for (const m of inputs.modules) {
    entries.push({
      kind: "file",
      path: join("lib/modules", kernel.release, m),
      source: join(kernel.modulesDir, m),
    });
  }
  for (const f of ["modules.dep", "modules.alias", "modules.builtin"]) {
    const src = join(kernel.modulesDir, f);
    if (existsSync(src))
      entries.push({ kind: "file", path: join("lib/modules", kernel.release, f), source: src });
  }
  entries.push(...nodeModuleEntries(projectDir));
  await writeAtomically(out, entries);
}

async function writeAtomically(out: string, entries: CpioEntry[]): Promise<void> {
  const tmp = `${out}.tmp-${process.pid}`;
  await writeCpioGz(tmp, entries);
  renameSync(tmp, out);
}

/** Both archives, from the cache when their inputs are unchanged. */
export async function ensureInitramfs(
  cacheDir: string,
  projectDir: string,
  kernel: LabKernel,
): Promise<LabInitramfs> {
  const dir = join(cacheDir, "initramfs");
  mkdirSync(dir, { recursive: true });
  const inputs = baseInputs(projectDir, kernel);
  const base = join(dir, `base-${inputs.key}.cpio.gz`);
  const bundle = await bundleGuestRunner(projectDir, RUNNER_SOURCE);
  const appKey = sha256(`${FORMAT}\n${bundle}`).slice(0, 24);
  const app = join(dir, `app-${appKey}.cpio.gz`);
  const built = { base: false, app: false };
  await withLock(join(cacheDir, "initramfs.lock"), async () => {
    if (!existsSync(base)) {
      await buildBase(base, kernel, inputs, projectDir);
      built.base = true;
    }
    if (!existsSync(app)) {
      await writeAtomically(app, [{ kind: "data", path: join("app", GUEST_RUNNER), data: bundle }]);
      built.app = true;
    }
    const now = new Date();
    for (const p of [base, app]) utimesSync(p, now, now); // in use: not stale for other checkouts' clean-up
    // Keep the cache small: archives not in use now and not touched for a while (another checkout may be
    // booting one of its own) go.
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (p === base || p === app || !/^(base|app)-/.test(f)) continue;
      if (Date.now() - statSync(p).mtimeMs > STALE_ARCHIVE_MS) rmSync(p, { force: true });
    }
  });
  return { base, app, built, modules: inputs.modules };
}
