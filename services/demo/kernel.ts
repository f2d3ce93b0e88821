// `cxlrc demo --backend kernel`: cxlrc's real hardware path without CXL hardware. Debian's kernel boots under
// QEMU (TCG) with CXL devices and an emulated IOMMU (the kernel lab, services/lab), every device on the driver
// the kernel chose; inside the guest nats-server, the agent on the sysfs backend and the coordinator run the
// demo's requests, with what an operator and a VM do to the devices in between (a pmem region created and
// taken down, a device handed to vfio-pci), and the kernel's own reset shows the seed's bug (HDM decoders
// wiped). The guest streams what happens as JSON lines on its second serial port; this side renders them
// live (the same board and event lines as the other demos) and ends with the same summary table, plus the
// kernel and the topology. QEMU never outlives the demo: killed on Ctrl-C, on errors, on exit (vm.ts).
import { existsSync } from "node:fs";
import { feedEvent } from "../../client/feed-event.ts";
import { applyEvent, newTracked, type TrackedRequest } from "../../client/track.ts";
import { EventEnvelope } from "../../shared/bus/codec.ts";
import { exitOnSignals } from "../../shared/children.ts";
import { describeError } from "../../shared/errors.ts";
import { EXIT } from "../cli/exit.ts";
import { type BoardRow, LiveBoard } from "../cli/format/board.ts";
import type { Colours } from "../cli/format/colour.ts";
import { formatMs } from "../cli/format/duration.ts";
import { eventLine } from "../cli/format/event.ts";
import type { DeviceState } from "../lab/guest/device-state.ts";
import { LabSetupError } from "../lab/host.ts";
import type { LabRun, LabStage } from "../lab/lab.ts";
import type { LabDemoLine, LabLine, LabScenario } from "../lab/protocol.ts";
import { QEMU_BINARY, requireExecutable } from "../lab/vm.ts";
import { ensureNatsServer, NatsServerMissing } from "./nats-server.ts";
import { asExpected, decoderText, type ScenarioResult, summaryJson, summaryTable } from "./summary.ts";

export type KernelTopology = "single" | "switch";

export interface KernelDemoOptions {
  topology: KernelTopology;
  json: boolean;
  /** May install nats-server with apt-get (root on Debian/Ubuntu): the guest runs the host's binary. */
  install: boolean;
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
  colours: Colours;
  /** Redraw progress in place (a terminal). */
  live: boolean;
}

const LAB_SCENARIO: Record<KernelTopology, LabScenario> = { single: "demo", switch: "demo-switch" };

const TOPOLOGY_TEXT: Record<KernelTopology, string> = {
  single: "one CXL Type-3 memory device below a CXL root port",
  switch: "a CXL switch below a root port, a Type-3 memory device on each of its two downstream ports",
};

/** Where the initramfs takes nats-server from (services/lab/initramfs.ts). */
const GUEST_NATS = ["/usr/sbin/nats-server", "/usr/bin/nats-server"];

/** What the host needs before anything is fetched or built; a LabSetupError or NatsServerMissing if not. */
function preflight(opts: KernelDemoOptions): void {
  requireExecutable(QEMU_BINARY, "qemu-system-x86");
  if (GUEST_NATS.some((p) => existsSync(p))) return;
  if (!process.env.NATS_SERVER_BIN) {
    ensureNatsServer({ install: opts.install, say: (l) => opts.err.write(`${l}\n`) });
  }
  if (!GUEST_NATS.some((p) => existsSync(p))) {
    throw new NatsServerMissing(
      `nats-server is not installed where the guest takes it from (${GUEST_NATS.join(" or ")}): apt-get install nats-server`,
    );
  }
}

/** The seed-bug row: the kernel's reset through sysfs, judged by what the decoders read back. */
function seedBugResult(line: Extract<LabDemoLine, { kind: "seed-bug" }>): ScenarioResult {
  const s = line.scenario;
  const t = newTracked(`sysfs-${s.id}`, s.host, s.bdf);
  t.scope = s.request.scope;
  t.method = `kernel:${line.resetMethod}`;
  t.startMs = line.startMs;
  t.endMs = line.endMs;
  t.phases = [{ phase: "resetting", startMs: line.startMs, endMs: line.endMs }];
  const dec = (d: typeof line.before) => (Array.isArray(d.decoders) ? d.decoders[0] : undefined);
  const before = dec(line.before);
  const after = dec(line.after);
  if (!before?.committed) {
    t.outcome = "failed";
    t.reason = "decoder 0 was not committed before the reset";
  } else if (!after) {
    t.outcome = "failed";
    t.reason = "decoder 0 unreadable after the reset";
  } else {
    t.outcome = after.committed && after.size === before.size ? "decoders-kept" : "decoders-wiped";
    t.reason =
      t.outcome === "decoders-wiped"
        ? `PCI state restored by the kernel (Command ${line.after.command}), decoder 0 not committed`
        : `PCI Command ${line.before.command} before, ${line.after.command} after`;
  }
  t.phase = t.outcome;
  return { scenario: s, tracked: t, readback: { before: line.before, after: line.after } };
}

function seedBugText(line: Extract<LabDemoLine, { kind: "seed-bug" }>, c: Colours): string {
  const wiped = seedBugResult(line).tracked.outcome === "decoders-wiped";
  return [
    `${c.bold("the seed's bug")} on ${line.scenario.bdf} (${line.before.driver ?? "no driver"}): decoder 0 ${decoderText(line.before)}; ` +
      `echo 1 > reset (method ${line.resetMethod}, ${formatMs(line.endMs - line.startMs)})`,
    `  PCI Command ${line.before.command} → ${line.after.command} (the kernel restores the PCI state); ` +
      `decoder 0 ${decoderText(line.after)}: ${wiped ? c.red("HDM decoders wiped") : "kept"}`,
  ].join("\n");
}

/** A bus scenario's end in words: outcome (a refusal with its sentence), the driver, decoder 0, the kernel. */
function resultText(r: ScenarioResult, after: DeviceState, message: string | undefined, c: Colours): string {
  const outcome = `${r.tracked.outcome ?? "no outcome"}${r.tracked.outcome === "refused" ? ` ${r.tracked.reason ?? ""}` : ""}`;
  const lines = [
    `  ${r.scenario.title}: ${outcome}${message ? `: ${message}` : ""}`,
    `    ${after.bdf} on ${after.driver ?? "no driver"} (driver_override ${after.driverOverride ?? "?"}); decoder 0 ${decoderText(after)}`,
  ];
  // What the kernel said about the device's CXL port while the driver came back (a probe that failed).
  for (const m of after.kernel?.messages ?? [])
    lines.push(`    ${c.yellow(`kernel: ${m.replace(/^\[[^\]]*\]\s*/, "")}`)}`);
  const k = after.kernel;
  if (after.driver === "cxl_pci" && k && k.memdev && !k.endpoint) {
    lines.push(
      `    ${c.yellow(`cxl_pci is bound, but the kernel has no CXL endpoint port of ${k.memdev} (its probe failed)`)}`,
    );
  }
  return lines.join("\n");
}

function stageText(s: LabStage, topology: KernelTopology, c: Colours): string {
  switch (s.stage) {
    case "kernel":
      return `kernel: Debian ${s.kernel.package} ${s.kernel.version} (uname -r ${s.kernel.release}), ${
        s.cached ? "cached" : "fetched with apt-get download"
      } ${c.dim(`in ${formatMs(s.ms)}`)}`;
    case "initramfs": {
      const what = s.built.base ? "built" : s.built.app ? "cached; cxlrc bundle rebuilt" : "cached";
      return `initramfs: busybox, node, koffi, nats-server and cxlrc bundled by esbuild (${what}) ${c.dim(
        `in ${formatMs(s.ms)}`,
      )}`;
    }
    case "boot":
      return `QEMU (pid ${s.pid}, TCG) booting: q35 with CXL and an emulated IOMMU, ${TOPOLOGY_TEXT[topology]}`;
  }
}

export async function runKernelDemo(opts: KernelDemoOptions): Promise<number> {
  const c = opts.colours;
  try {
    preflight(opts);
  } catch (e) {
    if (e instanceof LabSetupError || e instanceof NatsServerMissing) {
      opts.err.write(`cxlrc demo: ${e.message}\n`);
      return EXIT.unavailable;
    }
    throw e;
  }

  const board = new LiveBoard(opts.out, c, opts.live && !opts.json);
  const say = (line: string) => {
    if (!opts.json) board.log(line);
  };
  const results: ScenarioResult[] = [];
  const byRequest = new Map<string, ScenarioResult>();
  let qemuPid: number | null = null;
  let checkError: string | null = null;
  const add = (r: ScenarioResult) => {
    results.push(r);
    if (!opts.json) board.add({ label: r.scenario.title, tracked: r.tracked } satisfies BoardRow);
  };
  const onLine = (l: LabLine) => {
    switch (l.t) {
      case "hello":
        say(`guest: Linux ${l.release} up at ${l.uptimeS.toFixed(1)} s (guest clock), node ${l.node}`);
        return;
      case "check":
        if (!l.ok) checkError = `${l.error?.kind ?? l.error?.name ?? "error"}: ${l.error?.message ?? ""}`;
        return;
      case "done":
        return;
      case "demo":
        break;
    }
    switch (l.kind) {
      case "step":
        say(c.dim(l.text));
        return;
      case "seed-bug":
        say(seedBugText(l, c));
        add(seedBugResult(l));
        return;
      case "scenario": {
        const t: TrackedRequest = newTracked(l.requestId, l.scenario.host, l.scenario.bdf);
        t.phase = "submitted";
        t.scope = l.scenario.request.scope;
        t.method = l.scenario.request.method ?? null;
        const r: ScenarioResult = { scenario: l.scenario, tracked: t };
        byRequest.set(l.requestId, r);
        add(r);
        return;
      }
      case "event": {
        const e = EventEnvelope.safeParse(l.event);
        if (!e.success || !e.data.requestId) return;
        const item = typeof l.subject === "string" ? feedEvent(l.subject, e.data) : null;
        const r = byRequest.get(e.data.requestId);
        if (!r || !item) return;
        applyEvent(r.tracked, item);
        if (opts.json) return;
        if (board.live) board.draw();
        else opts.out.write(`${eventLine(item, c)}\n`);
        return;
      }
      case "result": {
        const r = byRequest.get(l.tracked.requestId);
        if (!r) return;
        // The guest followed the request to its end (the coordinator's reply included): its account wins.
        Object.assign(r.tracked, l.tracked);
        r.readback = { after: l.readback };
        if (l.message !== undefined) r.message = l.message;
        if (board.live) board.draw();
        say(resultText(r, l.readback, l.message, c));
        return;
      }
    }
  };

  say(
    `${c.bold("cxlrc demo --backend kernel")}: Debian's kernel under QEMU with CXL devices; nats-server, an agent (sysfs backend) and a coordinator run inside the guest`,
  );
  const t0 = Date.now();
  const { startLabScenario } = await import("../lab/lab.ts");
  const handle = startLabScenario(LAB_SCENARIO[opts.topology], {
    onLine,
    onStage: (s) => {
      if (s.stage === "boot") qemuPid = s.pid;
      say(stageText(s, opts.topology, c));
    },
  });
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    handle.kill();
  };
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of signals) process.on(s, onSignal);
  // Should the stop hang, or a second signal come: everything started is stopped and the process exits.
  exitOnSignals({ patienceMs: 5000 });
  let run: LabRun;
  try {
    run = await handle.done;
  } catch (e) {
    board.stop();
    if (interrupted) return interruptedExit(opts);
    opts.err.write(`cxlrc demo: ${e instanceof LabSetupError ? e.message : describeError(e)}\n`);
    return e instanceof LabSetupError ? EXIT.unavailable : EXIT.failure;
  } finally {
    for (const s of signals) process.removeListener(s, onSignal);
    handle.kill(); // already gone unless something above threw
  }
  board.stop();
  if (interrupted) return interruptedExit(opts);
  const elapsed = Date.now() - t0;
  const ok = run.completed && checkError === null && results.length > 0 && results.every(asExpected);
  const where = `${TOPOLOGY_TEXT[opts.topology]} (topology ${run.topology})`;

  if (opts.json) {
    opts.out.write(
      `${JSON.stringify(
        summaryJson(results, {
          backend: "kernel",
          durationMs: elapsed,
          kernel: { ...run.kernel, guestRelease: run.guestRelease },
          topology: run.topology,
          topologyText: TOPOLOGY_TEXT[opts.topology],
          bus: "nats-server, agent (sysfs backend) and coordinator inside the guest",
          // QEMU's pid: gone when the demo returns.
          processes: qemuPid === null ? {} : { qemu: qemuPid },
          guest: { completed: run.completed, error: checkError, timings: run.timings },
        }),
        null,
        2,
      )}\n`,
    );
  } else {
    opts.out.write(`\n${summaryTable(results, c)}\n\n`);
    opts.out.write(
      `kernel: ${run.kernel.package} ${run.kernel.version} (uname -r ${run.guestRelease ?? run.kernel.release}); ${where}\n`,
    );
    opts.out.write(
      `${
        ok
          ? c.green(`All ${results.length} scenarios ended as expected in ${formatMs(elapsed)}.`)
          : c.red(
              `${results.filter((r) => !asExpected(r)).length + (run.completed ? 0 : 1)} problem(s): not every scenario ended as expected.`,
            )
      }\n\n`,
    );
    opts.out.write(`${kernelNextSteps(c, opts.topology)}\n`);
  }
  if (!run.completed) {
    const why = run.boot.timedOut
      ? "was killed at its deadline"
      : `stopped (QEMU exit ${run.boot.exitCode ?? run.boot.signal})`;
    opts.err.write(
      `cxlrc demo: the guest ${why} before it finished; console tail:\n${run.boot.console.split("\n").slice(-15).join("\n")}\n`,
    );
  } else if (checkError !== null) {
    opts.err.write(`cxlrc demo: the guest's demo failed: ${checkError}\n`);
  }
  return ok ? EXIT.ok : EXIT.failure;
}

function kernelNextSteps(c: Colours, shown: KernelTopology): string {
  const other: KernelTopology = shown === "single" ? "switch" : "single";
  const tips: Array<[string, string]> = [
    [
      "npm run lab -- single --console",
      "every kernel lab check (sysfs, VFIO, gates), with the guest's console (in a checkout)",
    ],
    ["npx vitest run test/kernel-lab", "the same checks, asserted"],
    [`cxlrc demo --backend kernel --topology ${other}`, TOPOLOGY_TEXT[other]],
    ["README.md", "running the coordinator and the agents on real hosts"],
  ];
  const width = Math.max(...tips.map(([cmd]) => cmd.length));
  return [
    c.bold("Where to look next"),
    ...tips.map(([cmd, what]) => `  ${cmd.padEnd(width)}  ${c.dim(what)}`),
  ].join("\n");
}

function interruptedExit(opts: KernelDemoOptions): number {
  opts.err.write("cxlrc demo: interrupted; QEMU stopped\n");
  return EXIT.failure;
}
