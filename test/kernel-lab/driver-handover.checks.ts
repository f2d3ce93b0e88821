// The driver hand-over of a full reset (issue #17) on the real kernel, through the bus in the guest
// (nats-server, the agent on the sysfs backend, the coordinator), from the state a host boots into: the
// device on cxl_pci as the kernel bound it. Checks of services/lab/guest/checks/driver-handover.ts, the first
// of the "single" scenario's boot. Registered by kernel-lab.test.ts, which boots the scenarios.
//
// What the lab shows (Debian's 6.1 on QEMU 7.2), besides what works:
// - After a hand-over cxl_pci is bound again, but its CXL endpoint port does not come back. The restore put
//   back DVSEC Control as the image has it, Mem_Enable set (the driver had set it; the unbind cleared it:
//   image.driver.changedByUnbind), and cxl_pci, finding Mem_Enable already set, takes the DVSEC range
//   registers for firmware's ("Range register decodes outside platform defined CXL ranges", -EBUSY). Clearing
//   Mem_Enable alone is not enough on this lab: QEMU 7.2 keeps Committed when the kernel decommits a decoder
//   (taking the region down), the image records decoder 0 "Committed, size 0" and the restore commits it so,
//   which 6.1 rejects ("Committed with zero size"). With the decoders wiped the endpoint probes as at boot.
//   Pinned below so that a fix shows up here.
import { describe, expect, it } from "vitest";
import type { HdmRegisters } from "../../services/lab/guest/checks/decoder-rebind.ts";
import type { DriverState, RepairStep, RunRec } from "../../services/lab/guest/checks/driver-handover.ts";
import type { RegionStep } from "../../services/lab/guest/cxl-region.ts";
import type { KernelView } from "../../services/lab/guest/sysfs-view.ts";
import type { LabRun } from "../../services/lab/lab.ts";
import type { Holder } from "../../shared/hw/backend.ts";
import type { ImageDriver } from "../../shared/image/schema.ts";
import { checkData } from "./lab-run.ts";
import type { DecoderReadback, Range } from "./records.ts";

type WithKernel = DriverState & { kernel: KernelView };
type WithRegisters = DriverState & { registers: HdmRegisters };
interface StoredImage {
  driver: ImageDriver | null;
  registers: HdmRegisters | null;
}

interface RegionBusyRec {
  bdf: string;
  boot: WithKernel;
  region: { name: string; endpointDecoder: string; size: string; uuid: string; steps: RegionStep[] };
  before: WithKernel & { config: string };
  holders: Holder[];
  run: RunRec;
  after: WithKernel & { config: string };
}

interface FreshHandoverRec {
  bdf: string;
  before: WithKernel;
  holders: Holder[];
  run: RunRec;
  after: WithKernel;
  dmesg: string[];
  image: StoredImage | null;
}

interface RegionDownRec {
  bdf: string;
  takeDown: { region: string; endpointDecoder: string; steps: RegionStep[] };
  before: WithKernel;
  holders: Holder[];
  run: RunRec;
  after: WithKernel;
  dmesg: string[];
  image: StoredImage | null;
  registersAfter: HdmRegisters;
  end: WithKernel;
  repair?: RepairStep[];
}

interface FirmwareDecoderRec {
  bdf: string;
  range: Range;
  firmware: DecoderReadback;
  registersBefore: HdmRegisters;
  probeDmesg: string[];
  before: WithKernel;
  run: RunRec;
  rebindDmesg: string[];
  after: WithKernel;
  image: StoredImage | null;
  registersAfter: HdmRegisters;
  end: WithKernel;
}

interface VfioBusRec {
  bdf: string;
  start: DriverState;
  range: Range;
  programmed: DecoderReadback;
  before: WithRegisters;
  holders: Holder[];
  run: RunRec;
  after: WithRegisters;
}

interface VfioHeldRec {
  bdf: string;
  before: WithRegisters;
  group: string;
  holderPid: number;
  holders: Holder[];
  run: RunRec;
  after: WithRegisters;
  end: WithKernel;
}

const kindsOf = (run: RunRec) => run.events.map((e) => e.kind);

/** Each kind appears, in this order. */
function inOrder(run: RunRec, order: string[]): void {
  const k = kindsOf(run);
  for (const e of order) expect(k, e).toContain(e);
  const at = order.map((e) => k.indexOf(e));
  expect(at).toEqual([...at].sort((a, b) => a - b));
}

/** The endpoint's decoders keyed by index within the port (the port's number may change on a rebind). */
function endpointDecoders(k: KernelView): Record<string, Record<string, string | null>> {
  return Object.fromEntries(k.endpointDecoders.map((d) => [d.replace(/^decoder\d+\./, ""), k.decoders[d]!]));
}

/** Root and switch/host-bridge decoders: not the device's, and untouched by its driver coming and going. */
function portDecoders(k: KernelView): Record<string, Record<string, string | null>> {
  return Object.fromEntries(
    Object.entries(k.decoders).filter(([name]) => !k.endpointDecoders.includes(name)),
  );
}

const endpointPorts = (k: KernelView) => Object.keys(k.portDrivers).filter((p) => p.startsWith("endpoint"));

/** A kernel message without its timestamp and instance numbers. */
const shape = (line: string) => line.replace(/^\[[^\]]*\]\s*/, "").replace(/\d+/g, "N");

export function driverHandoverTests(run: () => LabRun): void {
  describe("kernel lab, single device: the driver hand-over through the bus, from the drivers the kernel chose", () => {
    it("at boot the kernel bound cxl_pci: no driver_override, Mem_Enable set by it, endpoint decoder idle", () => {
      const d = checkData<RegionBusyRec>(run(), "region-busy");
      expect(d.boot).toMatchObject({
        driver: "cxl_pci",
        override: "(null)",
        dvsecControl: { memEnable: true },
      });
      expect(endpointPorts(d.boot.kernel)).toEqual(["endpoint2"]);
      expect(d.boot.kernel.portDrivers.endpoint2).toBe("cxl_port");
      expect(endpointDecoders(d.boot.kernel)).toEqual({
        "0": expect.objectContaining({
          start: "0x0",
          size: "0x0",
          mode: "none",
          dpa_size: "0x0000000000000000",
        }),
      });
      expect(d.boot.kernel.regions).toEqual({});
    });

    it("a pmem region committed on the device: the full reset is refused device-busy naming it; driver kept, nothing reset", () => {
      const d = checkData<RegionBusyRec>(run(), "region-busy");
      // The operator's region, as `cxl create-region -t pmem` writes it: every step accepted by the kernel.
      expect(d.region.steps.map((s) => s.error)).toEqual(d.region.steps.map(() => null));
      const name = d.region.name;
      const window = d.boot.kernel.decoders["decoder0.0"]!.start!;
      expect(d.before.kernel.regions[name]).toMatchObject({
        commit: "1",
        driver: "cxl_region",
        target0: d.region.endpointDecoder,
        resource: window,
        size: d.region.size,
        uuid: d.region.uuid,
      });
      expect(d.before.kernel.decoders[d.region.endpointDecoder]).toMatchObject({
        start: window,
        size: d.region.size,
        mode: "pmem",
        region: name,
      });
      // The agent's holders: the driver, and the region as memory in use.
      expect(d.holders).toContainEqual({ kind: "driver", detail: "cxl_pci" });
      expect(d.holders).toContainEqual({
        kind: "memory-online",
        detail: expect.stringMatching(
          new RegExp(
            `^region ${name} \\(pmem, ${window}-0x[0-9a-f]+, through ${d.region.endpointDecoder}\\) is committed`,
          ),
        ),
      });
      // Through the bus: refused at the plan, with the region named.
      expect(d.run.outcome).toBe("refused");
      expect(d.run.decision).toMatchObject({ kind: "refused", reason: "device-busy" });
      expect(d.run.decision?.message).toContain(`region ${name} (pmem, ${window}-`);
      expect(kindsOf(d.run)).toContain("refused");
      for (const k of ["savingImage", "reset.started", "driver.unbound", "image.persisted"]) {
        expect(kindsOf(d.run)).not.toContain(k);
      }
      expect(d.run.events.filter((e) => e.kind === "state.entered").map((e) => e.data.state)).not.toContain(
        "savingImage",
      );
      // Nothing changed: driver, override, Mem_Enable, the kernel's view (region still committed), config space.
      expect(d.after).toEqual(d.before);
    });

    it("as the kernel booted it: the full reset takes cxl_pci and gives it back; the kernel's endpoint and Mem_Enable come back", () => {
      const d = checkData<FreshHandoverRec>(run(), "fresh-handover");
      expect(d.before).toMatchObject({
        driver: "cxl_pci",
        override: "(null)",
        dvsecControl: { memEnable: true },
      });
      expect(d.holders).toEqual([{ kind: "driver", detail: "cxl_pci" }]);
      expect(d.run.decision).toMatchObject({ kind: "plan", handover: { [d.bdf]: "cxl_pci" } });
      expect(d.run.outcome).toBe("verified");
      inOrder(d.run, [
        "plan",
        "image.persisted",
        "reset.started",
        "verify.passed",
        "driver.rebound",
        "verified",
      ]);
      const rebound = d.run.events.find((e) => e.kind === "driver.rebound")!;
      expect(rebound.data).toMatchObject({ drivers: { [d.bdf]: "cxl_pci" }, verify: { passed: true } });
      // Saved under cxl_pci; the unbind cleared Mem_Enable, which the image records with its value after.
      expect(d.image?.driver).toMatchObject({
        name: "cxl_pci",
        hdmSource: "bar-after-unbind",
        changedByUnbind: ["dvsec.control"],
        unbound: { "dvsec.control": expect.stringMatching(/^0x0*2$/) },
      });
      // Back as it was: driver, override, Mem_Enable (set by the kernel's endpoint probe, not by the restore),
      // the kernel's endpoint port and decoders; no complaint from the kernel.
      expect(d.after).toMatchObject({
        driver: "cxl_pci",
        override: "(null)",
        dvsecControl: { memEnable: true },
      });
      // (The memdev gets a new number when cxl_pci probes again: mem0 → mem1.)
      const renumbered = (k: unknown) => JSON.parse(JSON.stringify(k).replace(/\b(p?mem)\d+\b/g, "$1N"));
      expect(renumbered(d.after.kernel)).toEqual(renumbered(d.before.kernel));
      expect(d.dmesg.filter((l) => /fail|prevents|Committed with zero size/i.test(l))).toEqual([]);
    });

    it("the region taken down: handed over and back, but the kernel's endpoint does not come back: failed, said why", () => {
      const d = checkData<RegionDownRec>(run(), "region-down-reset");
      // `cxl destroy-region`: disabled, decommitted, detached, DPA freed, deleted.
      expect(d.takeDown.steps.map((s) => s.error)).toEqual(d.takeDown.steps.map(() => null));
      expect(d.before.kernel.regions).toEqual({});
      expect(d.holders).toEqual([{ kind: "driver", detail: "cxl_pci" }]);
      expect(d.run.decision).toMatchObject({ kind: "plan", method: "sbr", handover: { [d.bdf]: "cxl_pci" } });
      // Restored and verified with the driver away; with cxl_pci back, the read-back differs from the image:
      // Mem_Enable, which the kernel's endpoint probe sets, stays clear (the probe failed: see the pinned test).
      // Never reported verified.
      expect(d.run.outcome).toBe("failed");
      inOrder(d.run, [
        "plan",
        "image.persisted",
        "reset.started",
        "reset.completed",
        "decoder.committed",
        "verify.passed",
        "driver.rebound",
        "failed",
      ]);
      expect(kindsOf(d.run)).not.toContain("verified");
      expect(kindsOf(d.run)).not.toContain("driver.rebind-failed");
      const rebound = d.run.events.find((e) => e.kind === "driver.rebound")!;
      expect(rebound.data).toMatchObject({ drivers: { [d.bdf]: "cxl_pci" }, verify: { passed: false } });
      expect(JSON.stringify(rebound.data)).toMatch(/memEnable/);
      expect(d.run.reason).toMatch(/cxl_pci bound again the device differs from its image/);
      // Driver and driver_override before and after.
      expect(d.before).toMatchObject({ driver: "cxl_pci", override: "(null)" });
      expect(d.after).toMatchObject({ driver: "cxl_pci", override: "(null)" });
      // The image: taken under cxl_pci, the decoders from the BAR once it let go; what the unbind changed.
      expect(d.image?.driver).toMatchObject({
        name: "cxl_pci",
        override: null,
        hdmSource: "bar-after-unbind",
        changedByUnbind: ["dvsec.control"],
      });
      // The decoder registers after (read with cxl_pci unbound for the read, as the save reads them) are the
      // image's, register for register.
      expect(d.image?.registers).not.toBeNull();
      expect(d.registersAfter).toEqual(d.image?.registers);
      // The kernel's root and host-bridge decoders are as they were.
      expect(portDecoders(d.after.kernel)).toEqual(portDecoders(d.before.kernel));
    });

    it("pinned (QEMU 7.2 + Linux 6.1): the endpoint stays down after the hand-back, for a decoder QEMU kept Committed", () => {
      const d = checkData<RegionDownRec>(run(), "region-down-reset");
      // Before the reset the kernel had endpoint2 with an idle decoder2.0; after it, none.
      expect(endpointPorts(d.before.kernel)).toEqual(["endpoint2"]);
      expect(endpointDecoders(d.before.kernel)).toEqual({
        "0": expect.objectContaining({ size: "0x0", mode: "pmem", dpa_size: "0x0000000000000000" }),
      });
      expect(endpointPorts(d.after.kernel)).toEqual([]);
      expect(d.after.kernel.endpointDecoders).toEqual([]);
      // Not Mem_Enable: the restore handed the device back as the driver's unbind left it (no "Legacy range
      // registers" refusal), but the endpoint probe that would set it failed...
      expect(d.image?.driver).toMatchObject({ unbound: { "dvsec.control": expect.any(String) } });
      expect(d.after.dvsecControl).toMatchObject({ memEnable: false });
      const said = d.dmesg.map((l) => l.replace(/^\[[^\]]*\]\s*/, ""));
      expect(said.some((l) => /Legacy range registers configuration prevents HDM operation/.test(l))).toBe(
        false,
      );
      expect(said.some((l) => /decoder2\.0: Committed with zero size/.test(l))).toBe(true);
      // ...and decoder 0 "Committed" with base and size 0: QEMU 7.2 kept Committed when the kernel decommitted
      // it (the region taken down), the image recorded it so, the restore committed it so.
      expect(d.image?.registers?.decoders[0]).toMatchObject({
        control: "0x00001400",
        baseLow: "0x00000000",
        sizeLow: "0x00000000",
        sizeHigh: "0x00000000",
      });
      // The lab's way back, one cause at a time: Mem_Enable cleared, then 6.1 rejects the zero-size commit...
      const [cleared, wiped] = d.repair ?? [];
      expect(cleared).toMatchObject({ step: "mem-enable-cleared", dvsecAtProbe: { memEnable: false } });
      expect(cleared?.registers).toEqual(d.registersAfter);
      expect(cleared?.dmesg.some((l) => /decoder\d+\.\d+: Committed with zero size/.test(l))).toBe(true);
      expect(endpointPorts(cleared!.after.kernel)).toEqual([]);
      // ...and with the decoders wiped by the kernel's reset the endpoint probes as at boot.
      expect(wiped).toMatchObject({ step: "decoders-wiped", dvsecAtProbe: { memEnable: false } });
      expect(wiped?.registers.decoders[0]?.control).toBe("0x00000000");
      expect(wiped?.dmesg).toEqual([]);
      expect(endpointPorts(wiped!.after.kernel)).toEqual(["endpoint2"]);
      const boot = checkData<RegionBusyRec>(run(), "region-busy").boot;
      expect(endpointDecoders(wiped!.after.kernel)).toEqual(endpointDecoders(boot.kernel));
      expect(wiped?.after).toMatchObject({
        driver: "cxl_pci",
        override: "(null)",
        dvsecControl: { memEnable: true },
      });
    });

    it("firmware's decoder, then cxl_pci: reset through the bus restores it (32-bit writes), cxl_pci handed back, the kernel's view the same", () => {
      const d = checkData<FirmwareDecoderRec>(run(), "firmware-decoder-handover");
      expect(d.firmware).toMatchObject({ committed: true, errorNotCommitted: false, ...d.range });
      expect(d.registersBefore.decoders[0]).toMatchObject({ sizeLow: "0x10000000", control: "0x00001400" });
      // cxl_pci bound over it: 6.1 + QEMU 7.2 reject the committed decoder, no endpoint (decoder-rebind).
      expect(d.probeDmesg.some((l) => /decoder\d+\.\d+: Committed with zero size/.test(l))).toBe(true);
      expect(d.before).toMatchObject({ driver: "cxl_pci", override: "(null)" });
      expect(endpointPorts(d.before.kernel)).toEqual([]);
      expect(d.run.decision).toMatchObject({ kind: "plan", method: "sbr", handover: { [d.bdf]: "cxl_pci" } });
      expect(d.run.outcome).toBe("verified");
      inOrder(d.run, ["reset.started", "decoder.committed", "verify.passed", "driver.rebound", "verified"]);
      // With the endpoint failed, cxl_pci leaves the BAR: the image read it under the driver, and the kernel's
      // view (no endpoint decoder) differs from it.
      expect(d.image?.driver).toMatchObject({
        name: "cxl_pci",
        override: null,
        hdmSource: "bar-under-driver",
        kernelView: {
          decoders: expect.any(Array),
          differences: ["decoder 0 present: kernel absent, BAR decoder 0"],
        },
      });
      expect(d.image?.registers).toEqual(d.registersBefore);
      expect(d.registersAfter).toEqual(d.registersBefore);
      // The same driver, override, Mem_Enable and kernel view after as before, and the same complaint.
      expect(d.after).toMatchObject({ driver: "cxl_pci", override: "(null)" });
      expect(d.after.dvsecControl).toEqual(d.before.dvsecControl);
      for (const k of ["decoders", "endpointDecoders", "portDrivers", "regions"] as const) {
        expect(d.after.kernel[k], k).toEqual(d.before.kernel[k]);
      }
      expect(d.rebindDmesg.map(shape)).toEqual(d.probeDmesg.map(shape));
      // Back to the kernel's choice (decoders wiped first): the endpoint probes.
      expect(endpointPorts(d.end.kernel)).toEqual(["endpoint2"]);
    });

    it("a device the operator put on vfio-pci: full reset with method vfio through the bus, verified, still on vfio-pci", () => {
      const d = checkData<VfioBusRec>(run(), "vfio-bus-reset");
      expect(d.start).toMatchObject({ driver: "cxl_pci", override: "(null)" });
      expect(d.before).toMatchObject({ driver: "vfio-pci", override: "vfio-pci" });
      // vfio-pci bound is nobody using the device: no holder (an open group would be one).
      expect(d.holders).toEqual([]);
      expect(d.programmed).toMatchObject({ committed: true, ...d.range });
      expect(d.run.decision).toMatchObject({ kind: "plan", method: "vfio", handover: null });
      expect(d.run.outcome).toBe("verified");
      inOrder(d.run, ["reset.started", "reset.completed", "decoder.committed", "verify.passed", "verified"]);
      expect(d.run.events.find((e) => e.kind === "reset.started")?.data).toMatchObject({ method: "vfio" });
      expect(kindsOf(d.run)).not.toContain("driver.rebound");
      expect(d.after).toMatchObject({ driver: "vfio-pci", override: "vfio-pci" });
      expect(d.after.dvsecControl).toEqual(d.before.dvsecControl);
      expect(d.after.registers).toEqual(d.before.registers);
      expect(d.after.registers.decoders[0]).toMatchObject({ sizeLow: "0x10000000", control: "0x00001400" });
    });

    it("the VFIO group held open by another process (a VM): refused device-busy naming it; nothing reset", () => {
      const d = checkData<VfioHeldRec>(run(), "vfio-bus-held");
      expect(d.before).toMatchObject({ driver: "vfio-pci", override: "vfio-pci" });
      const held = `${d.group} open by pid ${d.holderPid}`;
      expect(d.holders).toEqual([
        { kind: "vfio-group", detail: expect.stringContaining(held), pid: d.holderPid },
      ]);
      expect(d.run.outcome).toBe("refused");
      expect(d.run.decision).toMatchObject({ kind: "refused", reason: "device-busy" });
      expect(d.run.decision?.message).toContain(`open VFIO group ${held}`);
      expect(kindsOf(d.run)).not.toContain("reset.started");
      expect(d.after).toEqual(d.before);
      // The operator gives the device back to the kernel's choice: cxl_pci, its endpoint probed.
      expect(d.end).toMatchObject({ driver: "cxl_pci", override: "(null)" });
      expect(endpointPorts(d.end.kernel)).toEqual(["endpoint2"]);
    });
  });
}
