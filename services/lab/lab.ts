// The kernel lab, host side, in one call: Debian's current kernel (cached), the initramfs (cached), one boot
// of a topology running one scenario of guest checks, and what came back: the checks' JSON, the console,
// the kernel version and the time each phase took.
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { findPackageJson } from "../../shared/version.ts";
import type { TopologyName } from "../agent/backends/qemu/topology.ts";
import { labCacheDir } from "./host.ts";
import { ensureInitramfs } from "./initramfs.ts";
import { ensureKernel, type LabKernel } from "./kernel.ts";
import {
  type LabCheckLine,
  type LabLine,
  type LabScenario,
  parseLabLines,
  SCENARIO_PARAM,
} from "./protocol.ts";
import { type BootResult, bootVm, type RunningVm } from "./vm.ts";

/**
 * The project root: the directory of cxlrc's package.json, found by walking up (services/lab/ in the sources,
 * dist/services/lab/ compiled). The lab bundles the guest runner from the TypeScript sources there, so it needs
 * a checkout; the published package has none (bundleGuestRunner says so).
 */
export const PROJECT_DIR = dirname(
  findPackageJson(dirname(fileURLToPath(import.meta.url)))?.path ??
    fileURLToPath(new URL("../../", import.meta.url)),
);

/** Each scenario runs on one topology. */
export const SCENARIO_TOPOLOGY: Record<LabScenario, TopologyName> = {
  single: "single",
  switch: "switch",
  demo: "single",
  "demo-switch": "switch",
};

/** A boot that has not powered off by then is killed (TCG on 2 busy cores: ~30-60 s is usual). */
export const DEFAULT_BOOT_TIMEOUT_MS = 240_000;

export interface LabTimings {
  /** Host: finding (or fetching and unpacking) the kernel package. */
  kernelMs: number;
  kernelCached: boolean;
  /** Host: the initramfs archives (built, or found in the cache). */
  initramfsMs: number;
  initramfsBuilt: { base: boolean; app: boolean };
  /** Guest uptime at /init, after the modules, when the runner said hello, when it was done. */
  initS: number | null;
  modulesS: number | null;
  runnerS: number | null;
  doneS: number | null;
  /** Per check, guest clock. */
  checksMs: Record<string, number>;
  /** Host: QEMU start to exit. */
  bootWallMs: number;
}

export interface LabRun {
  scenario: LabScenario;
  topology: TopologyName;
  kernel: Pick<LabKernel, "package" | "version" | "release">;
  /** The guest's `uname -r` as the runner saw it. */
  guestRelease: string | null;
  checks: Map<string, LabCheckLine>;
  lines: LabLine[];
  /** Result lines that were not JSON (a crash mid-line, noise). */
  garbage: string[];
  boot: Omit<BootResult, "resultLines">;
  timings: LabTimings;
  /** The guest runner said "done": every check of the scenario ran. */
  completed: boolean;
}

export interface StartOptions {
  projectDir?: string;
  cacheDir?: string;
  timeoutMs?: number;
  /** Extra kernel command-line words (e.g. loglevel=7 while investigating). */
  append?: readonly string[];
  onConsole?: (line: string) => void;
  /** Each result line of the guest as it arrives (parsed; lines that are not JSON are left out). */
  onLine?: (line: LabLine) => void;
  /** Each host step as it completes: the kernel, the initramfs, QEMU started. */
  onStage?: (stage: LabStage) => void;
}

export type LabStage =
  | {
      stage: "kernel";
      kernel: Pick<LabKernel, "package" | "version" | "release">;
      cached: boolean;
      ms: number;
    }
  | { stage: "initramfs"; built: { base: boolean; app: boolean }; ms: number }
  | { stage: "boot"; pid: number; topology: TopologyName };

export interface LabHandle {
  done: Promise<LabRun>;
  /** Kills the VM if it is running (idempotent); done still settles. */
  kill(): void;
}

const uptimeAt = (console: string, what: RegExp): number | null => {
  const m = what.exec(console);
  return m ? Number(m[1]) : null;
};

/** Prepares and boots; the VM can be killed at any time through the handle. */
export function startLabScenario(scenario: LabScenario, opts: StartOptions = {}): LabHandle {
  let vm: RunningVm | null = null;
  let killed = false;
  const done = (async (): Promise<LabRun> => {
    const projectDir = opts.projectDir ?? PROJECT_DIR;
    const cacheDir = opts.cacheDir ?? labCacheDir();
    const t0 = performance.now();
    const kernel = await ensureKernel(cacheDir);
    const t1 = performance.now();
    const { package: pkg, version, release } = kernel;
    opts.onStage?.({
      stage: "kernel",
      kernel: { package: pkg, version, release },
      cached: !kernel.fetched,
      ms: t1 - t0,
    });
    if (killed) throw new Error("kernel lab run cancelled before boot");
    const initramfs = await ensureInitramfs(cacheDir, projectDir, kernel);
    const t2 = performance.now();
    opts.onStage?.({ stage: "initramfs", built: initramfs.built, ms: t2 - t1 });
    if (killed) throw new Error("kernel lab run cancelled before boot");
    const topology = SCENARIO_TOPOLOGY[scenario];
    const onLine = opts.onLine;
    vm = bootVm({
      kernel: kernel.vmlinuz,
      initrds: [initramfs.base, initramfs.app],
      topology,
      append: [`${SCENARIO_PARAM}=${scenario}`, ...(opts.append ?? [])],
      timeoutMs: opts.timeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS,
      ...(opts.onConsole ? { onConsole: opts.onConsole } : {}),
      ...(onLine
        ? {
            onResultLine: (raw: string) => {
              for (const l of parseLabLines([raw]).lines) onLine(l);
            },
          }
        : {}),
    });
    opts.onStage?.({ stage: "boot", pid: vm.pid, topology });
    const boot = await vm.done;
    const { lines, garbage } = parseLabLines(boot.resultLines);
    const checks = new Map<string, LabCheckLine>();
    for (const l of lines) if (l.t === "check") checks.set(l.name, l);
    const hello = lines.find((l) => l.t === "hello");
    const doneLine = lines.find((l) => l.t === "done");
    const { resultLines: _raw, ...bootInfo } = boot;
    return {
      scenario,
      topology,
      kernel: { package: kernel.package, version: kernel.version, release: kernel.release },
      guestRelease: hello?.t === "hello" ? hello.release : null,
      checks,
      lines,
      garbage,
      boot: bootInfo,
      completed: doneLine !== undefined,
      timings: {
        kernelMs: t1 - t0,
        kernelCached: !kernel.fetched,
        initramfsMs: t2 - t1,
        initramfsBuilt: initramfs.built,
        initS: uptimeAt(boot.console, /cxlrc-lab: init on \S+ at ([\d.]+)s/),
        modulesS: uptimeAt(boot.console, /cxlrc-lab: modules loaded at ([\d.]+)s/),
        runnerS: hello?.t === "hello" ? hello.uptimeS : null,
        doneS: doneLine?.t === "done" ? doneLine.uptimeS : null,
        checksMs: Object.fromEntries([...checks.values()].map((c) => [c.name, Math.round(c.ms)])),
        bootWallMs: boot.wallMs,
      },
    };
  })();
  return {
    done,
    kill() {
      killed = true;
      vm?.kill();
    },
  };
}

/** One line per phase, for test output and logs. */
export function describeRun(run: LabRun): string {
  const t = run.timings;
  const s = (v: number | null) => (v === null ? "?" : `${v.toFixed(1)}s`);
  const checks = Object.entries(t.checksMs)
    .map(([name, ms]) => `${name} ${(ms / 1000).toFixed(1)}s`)
    .join(", ");
  return [
    `kernel lab: ${run.kernel.package} ${run.kernel.version} (uname -r ${run.guestRelease ?? "?"}), topology ${run.topology}, scenario ${run.scenario}`,
    `  host: kernel ${(t.kernelMs / 1000).toFixed(1)}s, initramfs ${(t.initramfsMs / 1000).toFixed(1)}s (built: base ${t.initramfsBuilt.base}, app ${t.initramfsBuilt.app}), boot to power-off ${(t.bootWallMs / 1000).toFixed(1)}s wall`,
    `  guest uptime: /init ${s(t.initS)}, modules ${s(t.modulesS)}, runner ${s(t.runnerS)}, done ${s(t.doneS)}`,
    `  checks: ${checks}`,
  ].join("\n");
}
