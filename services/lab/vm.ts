// One boot of the lab: QEMU (TCG) with a CXL topology and the emulated IOMMU, Debian's kernel and the lab's
// initramfs. The console (ttyS0) is collected for diagnostics; the guest runner writes one JSON object per
// line to the second serial port (ttyS1), read back here after the guest powers off (and, for a caller that
// wants them live, as they arrive: the file QEMU writes is followed while it runs). The VM never outlives
// its owner: SIGKILL on the deadline, on kill(), on this process's exit, and from the kernel (setpriv
// --pdeathsig KILL) if this process dies without running its exit hooks.
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import { dieWithParent, killOnExit, removeOnExit } from "../../shared/children.ts";
import { buildTopology, type TopologyName } from "../agent/backends/qemu/topology.ts";
import { LabSetupError } from "./host.ts";

export const QEMU_BINARY = "qemu-system-x86_64";
/** Guest RAM: node under TCG plus a ~150 MB unpacked initramfs. */
const GUEST_MEMORY = "2G,maxmem=4G,slots=4";
const CONSOLE_KEEP_CHARS = 256 * 1024;
/** How often the result file is read while the guest runs, for onResultLine. */
const RESULT_POLL_MS = 100;

export interface BootOptions {
  kernel: string;
  /** Archives concatenated into one initrd, unpacked by the kernel in this order. */
  initrds: readonly string[];
  topology: TopologyName;
  /** Words appended to the kernel command line (the guest runner reads its scenario from there). */
  append: readonly string[];
  /** Kill the VM after this long. */
  timeoutMs: number;
  /** Called with each console line as it arrives. */
  onConsole?: (line: string) => void;
  /** Called with each result line (ttyS1, \r stripped, empty lines dropped) as it arrives, in order. */
  onResultLine?: (line: string) => void;
}

export interface BootResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Console (ttyS0) output, the last CONSOLE_KEEP_CHARS. */
  console: string;
  /** Lines the guest wrote to ttyS1, \r stripped, empty lines dropped. */
  resultLines: string[];
  /** QEMU start to exit, host clock. */
  wallMs: number;
  args: string[];
}

/** The QEMU command line of a lab boot (backing files are created in dir). */
export function labQemuArgs(
  opts: Pick<BootOptions, "kernel" | "topology" | "append">,
  dir: string,
  initrd: string,
) {
  const plan = buildTopology(opts.topology, dir);
  const args = [...plan.args];
  const at = (flag: string) => {
    const i = args.indexOf(flag);
    if (i < 0 || i + 1 >= args.length) throw new Error(`topology args lack ${flag}`);
    return i + 1;
  };
  // The emulated IOMMU needs a split irqchip for interrupt remapping; VFIO needs the IOMMU.
  args[at("-machine")] = `${args[at("-machine")]},kernel-irqchip=split`;
  args[at("-m")] = GUEST_MEMORY;
  const cmdline = ["console=ttyS0", "quiet", "panic=-1", "intel_iommu=on", ...opts.append].join(" ");
  return {
    backingFiles: plan.backingFiles,
    args: [
      "-device",
      "intel-iommu,intremap=on",
      ...args,
      "-smp",
      "1",
      "-accel",
      "tcg",
      "-display",
      "none",
      "-nodefaults",
      "-no-reboot",
      "-serial",
      "stdio",
      "-serial",
      `file:${join(dir, "results.txt")}`,
      "-kernel",
      opts.kernel,
      "-initrd",
      initrd,
      "-append",
      cmdline,
    ],
  };
}

export interface RunningVm {
  pid: number;
  done: Promise<BootResult>;
  /** SIGKILL now (idempotent); done still resolves. */
  kill(): void;
}

/** The executable's path on PATH, or a LabSetupError naming the package to install. */
export function requireExecutable(name: string, pkg: string): string {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const p = join(dir, name);
    if (dir !== "" && existsSync(p)) return p;
  }
  throw new LabSetupError(`${name} is not installed: the kernel lab needs the Debian package ${pkg}`);
}

export function bootVm(opts: BootOptions): RunningVm {
  requireExecutable(QEMU_BINARY, "qemu-system-x86");
  const dir = mkdtempSync(join(tmpdir(), "cxlrc-lab-vm-"));
  // The VM and its temp dir (initrd, backing files, results) go with this process, however it ends.
  const forgetDir = removeOnExit(dir);
  const initrd = join(dir, "initrd.cpio.gz");
  writeFileSync(initrd, Buffer.concat(opts.initrds.map((p) => readFileSync(p))));
  const { args, backingFiles } = labQemuArgs(opts, dir, initrd);
  // Sparse backing files: nothing is written to disk.
  for (const f of backingFiles) {
    writeFileSync(f.path, "");
    truncateSync(f.path, f.sizeBytes);
  }
  const [file, argv] = dieWithParent(QEMU_BINARY, args);
  const start = performance.now();
  const child = spawn(file, argv as string[], { stdio: ["ignore", "pipe", "pipe"] });
  const forgetChild = killOnExit(child);
  let consoleText = "";
  let partial = "";
  const keep = (s: string) => {
    consoleText += s;
    if (consoleText.length > CONSOLE_KEEP_CHARS) consoleText = consoleText.slice(-CONSOLE_KEEP_CHARS);
  };
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (s: string) => {
    keep(s);
    if (!opts.onConsole) return;
    partial += s;
    const lines = partial.split("\n");
    partial = lines.pop()!;
    for (const l of lines) opts.onConsole(l.replace(/\r$/, ""));
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (s: string) => {
    stderr = (stderr + s).slice(-8192);
  });
  const follow = opts.onResultLine ? followFile(join(dir, "results.txt"), opts.onResultLine) : null;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, opts.timeoutMs);
  const done = new Promise<BootResult>((resolve, reject) => {
    child.on("error", (e) => {
      clearTimeout(timer);
      follow?.stop();
      forgetChild();
      rmSync(dir, { recursive: true, force: true });
      forgetDir();
      const missing = (e as NodeJS.ErrnoException).code === "ENOENT";
      reject(
        missing
          ? new LabSetupError(
              `${file} is not installed: the kernel lab needs qemu-system-x86 (and util-linux)`,
            )
          : e,
      );
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      follow?.stop(); // reads what is left first: every line is seen before done resolves
      const resultsPath = join(dir, "results.txt");
      const raw = existsSync(resultsPath) ? readFileSync(resultsPath, "utf8") : "";
      rmSync(dir, { recursive: true, force: true });
      forgetDir();
      if (stderr.trim() !== "") keep(`\n[qemu stderr] ${stderr.trim()}\n`);
      resolve({
        exitCode: code,
        signal,
        timedOut,
        console: consoleText,
        resultLines: raw
          .split("\n")
          .map((l) => l.replace(/\r$/, ""))
          .filter((l) => l.trim() !== ""),
        wallMs: performance.now() - start,
        args: [QEMU_BINARY, ...args],
      });
    });
  });
  return {
    pid: child.pid ?? -1,
    done,
    kill() {
      try {
        child.kill("SIGKILL");
      } catch {}
    },
  };
}

/**
 * Follows a file another process appends to: every complete line (\r stripped, empty ones dropped) goes to
 * onLine in order. stop() reads what is left, passes a last unterminated line too, and stops.
 */
function followFile(path: string, onLine: (line: string) => void): { stop(): void } {
  let offset = 0;
  let partial = "";
  const buf = Buffer.alloc(64 * 1024);
  const utf8 = new StringDecoder("utf8"); // a character split between two reads stays whole
  const emit = (l: string) => {
    const line = l.replace(/\r$/, "");
    if (line.trim() === "") return;
    try {
      onLine(line);
    } catch {
      // A caller's rendering problem must not stop the VM's bookkeeping.
    }
  };
  const poll = () => {
    if (!existsSync(path)) return;
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      return;
    }
    try {
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, offset);
        if (n <= 0) break;
        offset += n;
        partial += utf8.write(buf.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
    const lines = partial.split("\n");
    partial = lines.pop()!;
    for (const l of lines) emit(l);
  };
  const timer = setInterval(poll, RESULT_POLL_MS);
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      poll();
      emit(partial + utf8.end());
      partial = "";
    },
  };
}
