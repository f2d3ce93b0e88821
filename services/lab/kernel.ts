// Debian's current kernel for the lab, fetched with `apt-get download` and unpacked with `dpkg-deb -x`
// (never installed). The package name comes from linux-image-amd64's dependency and the version from apt's
// candidate: nothing is hard-coded, and a security update moves the lab to the new kernel by itself. The
// unpacked tree is cached per package name and version; older versions are removed from the cache.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LabSetupError, run, withLock } from "./host.ts";

export interface LabKernel {
  /** Debian package name, e.g. linux-image-6.1.0-56-amd64. */
  package: string;
  /** Debian package version, e.g. 6.1.192-2. */
  version: string;
  /** `uname -r` of the guest, the directory name under lib/modules. */
  release: string;
  /** Root of the unpacked package. */
  root: string;
  vmlinuz: string;
  /** lib/modules/RELEASE inside root. */
  modulesDir: string;
  /** Fetched by this call (false: from the cache). */
  fetched: boolean;
}

const META_PACKAGE = "linux-image-amd64";
const READY = "ready.json";

async function aptCache(args: string[]): Promise<string> {
  try {
    return (await run("apt-cache", args)).stdout;
  } catch (e) {
    throw new LabSetupError(
      `the kernel lab needs apt (Debian) to fetch ${META_PACKAGE}: ${(e as Error).message}`,
    );
  }
}

async function aptUpdate(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new LabSetupError(`apt's package lists lack ${META_PACKAGE}: run "apt-get update" as root first`);
  }
  try {
    await run("apt-get", ["update", "-qq"], { timeoutMs: 300_000 });
  } catch (e) {
    throw new LabSetupError(`the kernel lab cannot fetch ${META_PACKAGE}: ${(e as Error).message}`);
  }
}

/** The kernel package linux-image-amd64 depends on now, and its candidate version. */
async function currentKernelPackage(): Promise<{ name: string; version: string }> {
  await aptCache(["--version"]); // apt itself must be there: a clear message if it is not
  const find = async () => {
    const deps = await aptCache(["depends", META_PACKAGE]).catch(() => "");
    const name = /Depends: (linux-image-[^\s<>]+)/.exec(deps)?.[1];
    if (!name) return null;
    const show = await aptCache(["show", "--no-all-versions", name]).catch(() => "");
    const version = /^Version: (\S+)$/m.exec(show)?.[1];
    return version ? { name, version } : null;
  };
  const first = await find();
  if (first) return first;
  await aptUpdate();
  const second = await find();
  if (!second) {
    throw new LabSetupError(
      `apt knows no ${META_PACKAGE} even after apt-get update: the kernel package cannot be had here`,
    );
  }
  return second;
}

function describe(root: string, name: string, version: string, fetched = false): LabKernel {
  const modulesBase = join(root, "lib/modules");
  const releases = existsSync(modulesBase) ? readdirSync(modulesBase) : [];
  if (releases.length !== 1) {
    throw new LabSetupError(
      `${name} ${version}: expected one lib/modules/RELEASE, found ${releases.join(", ")}`,
    );
  }
  const release = releases[0]!;
  const vmlinuz = join(root, "boot", `vmlinuz-${release}`);
  if (!existsSync(vmlinuz)) throw new LabSetupError(`${name} ${version}: no boot/vmlinuz-${release}`);
  return { package: name, version, release, root, vmlinuz, modulesDir: join(modulesBase, release), fetched };
}

/** The unpacked current kernel, from the cache or fetched now (under the cache lock). */
export async function ensureKernel(cacheDir: string): Promise<LabKernel> {
  const { name, version } = await currentKernelPackage();
  const kernelsDir = join(cacheDir, "kernel");
  const key = `${name}_${version}`;
  const dir = join(kernelsDir, key);
  const root = join(dir, "root");
  if (existsSync(join(dir, READY))) return describe(root, name, version);
  mkdirSync(kernelsDir, { recursive: true });
  return withLock(join(cacheDir, "kernel.lock"), async () => {
    if (existsSync(join(dir, READY))) return describe(root, name, version);
    const tmp = join(kernelsDir, `.tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    try {
      const download = () =>
        run("apt-get", ["download", `${name}=${version}`], { cwd: tmp, timeoutMs: 600_000 });
      await download().catch(async () => {
        await aptUpdate(); // the lists may name a version the mirror no longer has
        await download();
      });
      const deb = readdirSync(tmp).find((f) => f.endsWith(".deb"));
      if (!deb) throw new LabSetupError(`apt-get download ${name} left no .deb in ${tmp}`);
      await run("dpkg-deb", ["-x", join(tmp, deb), join(tmp, "root")]);
      rmSync(join(tmp, deb));
      const k = describe(join(tmp, "root"), name, version);
      // modules.dep and modules.alias are made at install time, which never happens here.
      await run("depmod", ["-b", join(tmp, "root"), k.release]).catch((e) => {
        throw new LabSetupError(
          `depmod (package kmod) is needed for the kernel lab: ${(e as Error).message}`,
        );
      });
      writeFileSync(join(tmp, READY), JSON.stringify({ package: name, version, release: k.release }));
      for (const old of readdirSync(kernelsDir)) {
        if (old !== key && !old.startsWith("."))
          rmSync(join(kernelsDir, old), { recursive: true, force: true });
      }
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    return describe(root, name, version, true);
  });
}

/** Modules to load, in dependency order (each after everything it depends on), from modules.dep. */
export function moduleLoadOrder(kernel: LabKernel, wanted: readonly string[]): string[] {
  const depText = readFileSync(join(kernel.modulesDir, "modules.dep"), "utf8");
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  const modName = (path: string) =>
    path
      .split("/")
      .pop()!
      .replace(/\.ko(\.[a-z]+)?$/, "")
      .replaceAll("-", "_");
  for (const line of depText.split("\n")) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    deps.set(m[1]!, m[2]!.split(/\s+/).filter(Boolean));
    byName.set(modName(m[1]!), m[1]!);
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (path: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    for (const d of deps.get(path) ?? []) visit(d);
    order.push(path);
  };
  for (const w of wanted) {
    const path = byName.get(w.replaceAll("-", "_"));
    if (!path) throw new LabSetupError(`${kernel.package}: no module ${w} in modules.dep`);
    visit(path);
  }
  return order;
}
