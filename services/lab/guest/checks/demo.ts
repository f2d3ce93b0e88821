// `cxlrc demo --backend kernel`, the guest side: the demo's scenarios (services/demo/scenarios.ts,
// kernelScenarios) on a real kernel, from the state a host boots into (every device on the driver the kernel
// chose), reported to the host line by line as they happen (lab.report), for the host to render live and sum
// up (services/demo/kernel.ts). nats-server, the agent on the sysfs backend and the coordinator run in the
// guest (guest-bus.ts); each bus scenario is submitted as the demo submits it (cxlrc.ctl.submit), followed
// through the event stream (every event is passed on as it arrives), and the device and the kernel's view
// of it are read back when it ended. Before a scenario, what the operator or a VM does to the device
// (KernelSetup) is done here, with plain sysfs writes and register accesses, and said in a step line.
import type { KernelScenario, KernelSetup } from "../../../demo/scenarios.ts";
import { kernelScenarios } from "../../../demo/scenarios.ts";
import type { Check, Rec } from "../check.ts";
import { createPmemRegion, kernelSummary, regionNames, settleCxl, takeRegionDown } from "../cxl-region.ts";
import { deviceState } from "../device-state.ts";
import { commitDecoder, findHdm } from "../firmware.ts";
import { guestBus, HOST, NATS_URL } from "../guest-bus.ts";
import type { LabContext } from "../lab-context.ts";
import { attrText, driverOf, kernelLogSince, pciDir, resetMethodsOf, writeAttr } from "../sysfs-view.ts";
import { cxlDevices, decoderRange } from "./common.ts";

type Say = (text: string) => void;

/** The kernel's CXL objects of a device in a few words: "mem0, endpoint2 (decoder2.0 idle)". */
function kernelWords(bdf: string): string {
  const k = kernelSummary(bdf);
  if (!k.memdev) return "no CXL memdev";
  if (!k.endpoint) return `${k.memdev}, no endpoint port`;
  const decoders = k.decoders.map((d) =>
    d.size && BigInt(d.size) > 0n
      ? `${d.name} ${d.start}+${d.size}${d.region ? ` in ${d.region}` : ""}`
      : `${d.name} idle`,
  );
  return `${k.memdev}, ${k.endpoint} (${decoders.join(", ")})`;
}

/** The operator's and the VM's part before a scenario. */
async function setUp(lab: LabContext, s: KernelScenario, step: KernelSetup, say: Say, devices: string[]) {
  const { bdf } = s;
  switch (step) {
    case "create-region": {
      const r = createPmemRegion(bdf);
      say(
        `operator: pmem region ${r.name} created on ${bdf} (${r.endpointDecoder}, ${r.size} bytes, committed and enabled): ${kernelWords(bdf)}`,
      );
      return;
    }
    case "take-region-down": {
      const k = kernelSummary(bdf);
      for (const r of k.regions) {
        const target = k.decoders.find((d) => d.region === r.name)?.name ?? k.decoders[0]?.name;
        if (!target) continue;
        takeRegionDown(r.name, target);
        say(
          `operator: region ${r.name} taken down (disabled, decommitted, DPA freed, deleted): ${kernelWords(bdf)}`,
        );
      }
      return;
    }
    case "bind-vfio": {
      const was = driverOf(bdf);
      writeAttr(`${pciDir(bdf)}/driver_override`, "vfio-pci");
      if (was !== null) writeAttr(`${pciDir(bdf)}/driver/unbind`, bdf);
      writeAttr("/sys/bus/pci/drivers_probe", bdf);
      say(
        `operator: ${bdf} handed to vfio-pci for a VM (driver_override vfio-pci, drivers_probe): was ${was ?? "unbound"}, now ${driverOf(bdf) ?? "unbound"}`,
      );
      return;
    }
    case "vm-programs-decoder": {
      const d = await commitDecoder(
        lab.backend,
        await findHdm(lab.backend, bdf),
        0,
        decoderRange(devices.indexOf(bdf)),
      );
      say(
        `the VM's kernel programs HDM decoder 0 of its device through the BAR vfio-pci leaves to it: ${d.committed ? "Committed" : "not committed"} ${d.base} size ${d.size}`,
      );
      return;
    }
  }
}

async function seedBug(lab: LabContext, s: KernelScenario, rec: Rec): Promise<void> {
  const { bdf } = s;
  const resetMethod = resetMethodsOf(bdf)[0];
  if (resetMethod === undefined) throw new Error(`${bdf}: the kernel offers no reset method`);
  const before = await deviceState(lab, bdf);
  const startMs = Date.now();
  writeAttr(`${pciDir(bdf)}/reset`, "1");
  const endMs = Date.now();
  const after = await deviceState(lab, bdf);
  rec.seedBug = { bdf, resetMethod, before, after };
  lab.report({ t: "demo", kind: "seed-bug", scenario: s, resetMethod, startMs, endMs, before, after });
}

/** Submits one scenario through the lab's bus, follows it to its outcome and reads the device back. */
async function busScenario(lab: LabContext, s: KernelScenario, n: number) {
  const bus = await guestBus(lab);
  const requestId = `kernel-demo-${n}-${s.id}`;
  lab.report({ t: "demo", kind: "scenario", scenario: s, requestId });
  const mark = kernelLogSince(0).mark;
  const run = await bus.submit(
    requestId,
    { bdf: s.bdf, reason: `cxlrc demo --backend kernel: ${s.title}`, ...s.request },
    (e) => lab.report({ t: "demo", kind: "event", subject: e.subject, event: e.event }),
  );
  // A driver handed back probes again: give the kernel's CXL port its moment before reading its view.
  if (driverOf(s.bdf) === "cxl_pci") await settleCxl(s.bdf, mark);
  const readback = { ...(await deviceState(lab, s.bdf)), kernel: kernelSummary(s.bdf, mark) };
  const d = run.decision;
  const message = d?.kind === "refused" ? d.refusal.message : d?.kind === "rejected" ? d.message : undefined;
  lab.report({
    t: "demo",
    kind: "result",
    id: s.id,
    tracked: run.tracked,
    readback,
    ...(message !== undefined ? { message } : {}),
  });
  return run.tracked;
}

export const demo: Check = {
  name: "demo",
  async run(lab, rec) {
    const devices = await cxlDevices(lab);
    if (devices.length === 0) throw new Error("no CXL device in the guest");
    rec.devices = devices;
    const scenarios = kernelScenarios(HOST, devices);
    const say: Say = (text) => lab.report({ t: "demo", kind: "step", text });

    for (const bdf of devices) {
      say(
        `as the kernel left it at boot: ${bdf} on ${driverOf(bdf) ?? "no driver"} (driver_override ${attrText(`${pciDir(bdf)}/driver_override`)}); CXL: ${kernelWords(bdf)}`,
      );
    }
    say("nats-server, the agent (sysfs backend) and the coordinator start inside the guest");
    await guestBus(lab);
    say(
      `bus up at ${NATS_URL} (in the guest): ${scenarios.filter((s) => s.via !== "sysfs").length} request(s) follow`,
    );
    const results: Rec[] = [];
    for (const [i, s] of scenarios.entries()) {
      for (const step of s.setup) await setUp(lab, s, step, say, devices);
      if (s.via === "sysfs") {
        await seedBug(lab, s, rec);
        continue;
      }
      const t = await busScenario(lab, s, i);
      results.push({ requestId: t.requestId, outcome: t.outcome, reason: t.reason });
    }
    rec.results = results;
    rec.regionsLeft = regionNames();
    lab.takeEvents();
  },
};
