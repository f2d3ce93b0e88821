// The kernel lab's guest side: started by /init inside the VM (bundled with the cxlrc sources it imports),
// it reads its scenario from the kernel command line (cxlrc.lab=NAME), runs that scenario's checks in order
// against the real kernel and writes one JSON line per result to the second serial port. /init powers the
// VM off when it returns.
import { closeSync, existsSync, openSync, readFileSync, writeSync } from "node:fs";
import { release } from "node:os";
import {
  LAB_SCENARIOS,
  type LabLine,
  type LabScenario,
  RESULT_TTY,
  SCENARIO_PARAM,
  toJsonLine,
} from "../protocol.ts";
import { type Check, errorJson, type Rec } from "./check.ts";
import { busReset } from "./checks/bus.ts";
import { decoderRebind } from "./checks/decoder-rebind.ts";
import { demo } from "./checks/demo.ts";
import { DRIVER_HANDOVER_CHECKS } from "./checks/driver-handover.ts";
import { flrRefused, holders, memEnable } from "./checks/gates.ts";
import { barAfterRebind, inventoryOnly, inventoryProbe } from "./checks/inventory.ts";
import { kernelReset } from "./checks/kernel-reset.ts";
import { sbrDownstreamPort, sbrRootPort } from "./checks/switch-sbr.ts";
import { vfioNoResetFlag, vfioSuccess, vfioVerifyFailure } from "./checks/vfio.ts";
import { createLabContext } from "./lab-context.ts";

/** Checks per scenario, in the order they run (each starts from a state it sets up itself). */
const SCENARIOS: Record<LabScenario, Check[]> = {
  single: [
    // First: the device as the kernel bound it at boot, before any other check touched it.
    ...DRIVER_HANDOVER_CHECKS,
    inventoryProbe,
    barAfterRebind,
    flrRefused,
    kernelReset,
    decoderRebind,
    busReset,
    vfioSuccess,
    vfioVerifyFailure,
    vfioNoResetFlag,
    holders,
    memEnable,
  ],
  switch: [inventoryOnly, sbrRootPort, sbrDownstreamPort],
  demo: [demo],
  "demo-switch": [demo],
};

const uptime = () => Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);

function scenarioFromCmdline(): string {
  const words = readFileSync("/proc/cmdline", "utf8").trim().split(/\s+/);
  const w = words.find((x) => x.startsWith(`${SCENARIO_PARAM}=`));
  return w ? w.slice(SCENARIO_PARAM.length + 1) : "";
}

function openOutput(): (line: LabLine) => void {
  const fd = existsSync(RESULT_TTY) ? openSync(RESULT_TTY, "w") : 1;
  process.on("exit", () => {
    if (fd !== 1) closeSync(fd);
  });
  return (line) => {
    writeSync(fd, `${toJsonLine(line)}\n`);
  };
}

async function main(): Promise<void> {
  const out = openOutput();
  const scenario = scenarioFromCmdline();
  out({ t: "hello", scenario, release: release(), node: process.version, uptimeS: uptime() });
  const checks = scenario in LAB_SCENARIOS ? SCENARIOS[scenario as LabScenario] : null;
  if (!checks) {
    out({
      t: "check",
      name: "scenario",
      ok: false,
      startS: uptime(),
      ms: 0,
      error: { name: "Error", message: `unknown scenario "${scenario}" (${SCENARIO_PARAM}=...)` },
    });
  }
  const lab = createLabContext(out);
  for (const check of checks ?? []) {
    const rec: Rec = {};
    const startS = uptime();
    const t0 = performance.now();
    console.log(`cxlrc-lab: check ${check.name} at ${startS}s`);
    try {
      await check.run(lab, rec);
      out({ t: "check", name: check.name, ok: true, startS, ms: performance.now() - t0, data: rec });
    } catch (e) {
      out({
        t: "check",
        name: check.name,
        ok: false,
        startS,
        ms: performance.now() - t0,
        data: rec,
        error: errorJson(e),
      });
    }
  }
  await lab.close();
  out({ t: "done", uptimeS: uptime() });
}

await main();
