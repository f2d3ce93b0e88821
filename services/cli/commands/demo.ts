// `cxlrc demo`: the first thing to run. Starts its own bus, coordinator and simulated hosts, shows a set of
// resets with live progress, prints a summary and stops everything it started. `--backend kernel` runs it on
// a real Linux kernel under QEMU instead (services/demo/kernel.ts).
import { existsSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { siblingModule } from "../../../shared/module-file.ts";
import { checkLogLevel, parseDuration, parseFlags, takePositionals } from "../args.ts";
import { COMMANDS } from "../command-table.ts";
import { EXIT, UsageError } from "../exit.ts";
import { coloursFor } from "../format/colour.ts";

export const usage = `Usage: cxlrc demo [--json] [--keep-running] [--backend sim|qemu|kernel] [--pace DURATION]
       cxlrc demo --backend kernel [--topology single|switch] [--json]

A whole cxlrc on this machine in about ten seconds: its own nats-server (JetStream in a temp dir, random
port), a coordinator, and one agent per simulated host of the bundled fleet (shared/sim/fleets/default.json).
Then it sends a mix of reset requests and shows each device's progress:
  - io reset by FLR, full resets by CXL Reset (one on a 3-function device) and by secondary bus reset
  - an SBR refused because a sibling below the same bridge is busy
  - an FLR that wrongly clears HDM decoders (injected fault): the scope violation is detected and repaired
  - a decoder that will not commit (injected fault): retried once, then the device is quarantined
It ends with a summary (scope, method, outcome, time per phase) and where to look next.

Needs nats-server (Debian/Ubuntu: apt-get install nats-server; run as root there, the demo installs it).
Ctrl-C stops everything the demo started.

Options:
  --json              print only the summary, as JSON
  --keep-running      keep the bus, coordinator and agents up after the summary and print the bus URL, so
                      \`cxlrc watch --server URL\` and \`cxlrc status --server URL\` work; Ctrl-C stops
  --backend sim       simulated devices (default)
  --backend qemu      QEMU's CXL model instead (needs qemu-system-x86_64 7.2+): a CXL switch with two
                      Type-3 memory devices; shows io refused (no FLR on the model), SBR, escalation
  --backend kernel    cxlrc's real hardware path without CXL hardware: Debian's kernel (fetched with
                      apt-get download, cached in $XDG_CACHE_HOME/cxlrc/kernel-lab) boots under QEMU with
                      CXL devices and an emulated IOMMU. First the kernel's own reset (echo 1 > reset): PCI
                      state restored, HDM decoders wiped (read back). Then nats-server, an agent (sysfs
                      backend) and a coordinator inside the guest: a full reset over the bus (plan, image
                      persisted, reset, decoder committed, verified; decoders read back Committed) and an io
                      reset the gates refuse. Progress streams from the guest as it happens; the summary adds
                      the kernel version and the topology. About 30 s warm under TCG (the first run fetches
                      the kernel, ~70 MB, and builds the initramfs). Needs apt (Debian), qemu-system-x86,
                      busybox-static, kmod and nats-server; --keep-running and --pace do not apply
  --topology T        with --backend kernel: single (default) or switch (a CXL switch, a device on each of
                      its two downstream ports; a full reset per device)
  --pace DURATION     pause between two resets on one host (default 2s on a terminal, 200ms otherwise)
  --no-install        never install nats-server, only say how
  --log-level LEVEL   show the embedded services' logs on stderr (info, debug...; default silent)
  -h, --help          this text

Exit codes: 0 every scenario ended as expected, 1 one did not (or interrupted), 2 bad input,
3 nats-server missing or the bus could not start (--backend kernel: the kernel package, QEMU or another
host tool the lab needs cannot be had; the line names it).`;

/** The QEMU backend (services/agent/backends/qemu, createQemuBackend) is part of this build. */
async function qemuBackendAvailable(): Promise<boolean> {
  const file = siblingModule("../../agent/backends/qemu/qemu-backend", import.meta.url);
  if (!existsSync(file)) return false;
  try {
    const mod = (await import(pathToFileURL(file).href)) as { createQemuBackend?: unknown };
    return typeof mod.createQemuBackend === "function";
  } catch {
    return false;
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("demo", argv, COMMANDS.demo.options);
  takePositionals("demo", positionals, []);
  const backend = values.backend ?? "sim";
  if (backend === "kernel") return runKernel(values);
  if (values.topology !== undefined) throw new UsageError("--topology goes with --backend kernel");
  if (backend === "qemu" && !(await qemuBackendAvailable())) {
    process.stderr.write(
      "cxlrc demo: --backend qemu is not available yet in this build (use --backend sim)\n",
    );
    return EXIT.usage;
  }
  if (backend !== "sim" && backend !== "qemu")
    throw new UsageError(`bad --backend ${JSON.stringify(backend)}: sim, qemu or kernel`);
  const logLevel = checkLogLevel(values["log-level"] ?? "silent");
  const live = process.stdout.isTTY === true;
  const paceMs = values.pace !== undefined ? parseDuration("--pace", values.pace, true) : live ? 2000 : 200;

  const { runDemo } = await import("../../demo/run.ts");
  return runDemo({
    backend,
    json: values.json === true,
    keepRunning: values["keep-running"] === true,
    install: values["no-install"] !== true,
    logLevel,
    paceMs,
    scenarioTimeoutMs: 30_000,
    out: process.stdout,
    err: process.stderr,
    colours: coloursFor(process.stdout),
    live,
  });
}

/** --backend kernel: the bus lives inside the VM, so there is nothing to keep running or pace. */
async function runKernel(values: {
  json?: boolean;
  "keep-running"?: boolean;
  pace?: string;
  "no-install"?: boolean;
  "log-level"?: string;
  topology?: string;
}): Promise<number> {
  if (values["keep-running"]) {
    throw new UsageError("--keep-running does not go with --backend kernel (the bus lives inside the VM)");
  }
  if (values.pace !== undefined) throw new UsageError("--pace does not go with --backend kernel");
  if (values["log-level"] !== undefined)
    throw new UsageError("--log-level does not go with --backend kernel");
  const topology = values.topology ?? "single";
  if (topology !== "single" && topology !== "switch")
    throw new UsageError(`bad --topology ${JSON.stringify(topology)}: single or switch`);
  const { runKernelDemo } = await import("../../demo/kernel.ts");
  return runKernelDemo({
    topology,
    json: values.json === true,
    install: values["no-install"] !== true,
    out: process.stdout,
    err: process.stderr,
    colours: coloursFor(process.stdout),
    live: process.stdout.isTTY === true,
  });
}
