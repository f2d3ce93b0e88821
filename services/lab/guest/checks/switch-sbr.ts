// Check 3: the agent's own secondary bus reset through a bridge's Bridge Control, on a CXL switch
// (root port → upstream port → two downstream ports → a Type-3 device on each).
// - At the root port: the reset reaches the switch and both devices. The kernel knows nothing of it and
//   restores nothing: the switch ports lose their bus numbers and windows, so the devices below vanish from
//   config space until the ports are put back. The plan therefore includes the switch ports: every function
//   below the root port is saved first, then restored top-down (ports at io scope: their PCI config; devices
//   at full scope), then verified.
// - At one downstream port: the reset reaches its device only; the other's decoders read back untouched.
// Unmask SBR (CXL Port Extensions DVSEC) is set on the port for the reset and put back (read back).

import { readFlag } from "../../../../shared/cxl/regdef.ts";
import { CXL_DVSEC_ID, CXL_PORT_EXT, PCI_BRIDGE } from "../../../../shared/cxl/registers.ts";
import type { PciFunctionInfo } from "../../../../shared/hw/backend.ts";
import type { Image } from "../../../../shared/image/schema.ts";
import { operations } from "../../../agent/ops/index.ts";
import { findCxlDvsec } from "../../../agent/ops/locate.ts";
import { below } from "../../../agent/ops/topology.ts";
import type { Check, Rec } from "../check.ts";
import { outcome } from "../check.ts";
import { deviceState } from "../device-state.ts";
import { commitDecoder, findHdm } from "../firmware.ts";
import type { LabContext } from "../lab-context.ts";
import { configBytes, driverOf, kernelLogSince } from "../sysfs-view.ts";
import { decoderRange, imageSummary } from "./common.ts";

interface SwitchTopology {
  rootPort: string;
  upstream: string;
  downstream: string[];
  devices: string[];
  all: PciFunctionInfo[];
}

async function switchTopology(lab: LabContext): Promise<SwitchTopology> {
  const inv = await operations.inventory(lab.ctx);
  const devices = inv.devices.filter((d) => d.cxl).map((d) => d.bdf);
  if (devices.length !== 2) throw new Error(`expected two CXL devices, found ${devices.join(", ")}`);
  const downstream = devices.map((d) => inv.devices.find((x) => x.bdf === d)!.bridge!);
  const parentOf = (bdf: string) => inv.functions.find((f) => f.bdf === bdf)?.parent ?? null;
  const upstream = parentOf(downstream[0]!);
  const rootPort = upstream ? parentOf(upstream) : null;
  if (!upstream || !rootPort || parentOf(downstream[1]!) !== upstream) {
    throw new Error(`not a switch below one root port: ${JSON.stringify(inv.bridges)}`);
  }
  return { rootPort, upstream, downstream, devices, all: inv.functions };
}

/** What a bridge's config says about its place: bus numbers, memory window, Bridge Control, vendor id. */
function bridgeView(bdf: string) {
  const c = configBytes(bdf);
  return {
    bdf,
    vendorId: `0x${c.readUInt16LE(0).toString(16)}`,
    command: `0x${c.readUInt16LE(4).toString(16)}`,
    primaryBus: c[PCI_BRIDGE.primaryBus.offset],
    secondaryBus: c[PCI_BRIDGE.secondaryBus.offset],
    subordinateBus: c[PCI_BRIDGE.subordinateBus.offset],
    memoryBase: `0x${c.readUInt16LE(PCI_BRIDGE.memoryBase.offset).toString(16)}`,
    memoryLimit: `0x${c.readUInt16LE(PCI_BRIDGE.memoryLimit.offset).toString(16)}`,
    bridgeControl: `0x${c.readUInt16LE(PCI_BRIDGE.bridgeControl.offset).toString(16)}`,
  };
}

const vendorOf = (bdf: string) => `0x${configBytes(bdf).readUInt16LE(0).toString(16)}`;

async function unmaskSbr(lab: LabContext, port: string): Promise<boolean | null> {
  return lab.readBack(async (b) => {
    const d = await findCxlDvsec(b, port, CXL_DVSEC_ID.portExtensions);
    if (!d) return null;
    const v = await b.configRead(port, d.offset + CXL_PORT_EXT.portControl.offset, 2);
    return readFlag(CXL_PORT_EXT.portControl, v, "unmaskSbr");
  });
}

/** Saves every function of the plan; the images by BDF. */
async function saveAll(lab: LabContext, plan: string[]): Promise<Map<string, Image>> {
  const images = new Map<string, Image>();
  for (const bdf of plan) images.set(bdf, await operations.save(lab.ctx, { bdf }));
  return images;
}

/** Devices get their decoders as firmware would, after cxl_pci lets go of the BAR. */
async function prepareDevices(lab: LabContext, devices: string[], rec: Rec): Promise<void> {
  const firmware: unknown[] = [];
  for (const [i, bdf] of devices.entries()) {
    await operations.bind(lab.ctx, { bdf, driver: null });
    firmware.push(await commitDecoder(lab.backend, await findHdm(lab.backend, bdf), 0, decoderRange(i)));
  }
  rec.firmware = firmware;
}

export const sbrRootPort: Check = {
  name: "sbr-root-port",
  async run(lab, rec) {
    const { ctx } = lab;
    const topo = await switchTopology(lab);
    rec.topology = { ...topo, all: undefined };
    let log = kernelLogSince(0);
    await prepareDevices(lab, topo.devices, rec);
    // Everything below the root port, top-down (ports before what sits below them).
    const plan = below(topo.all, topo.rootPort)
      .sort((a, b) => depth(topo.all, a.bdf) - depth(topo.all, b.bdf) || (a.bdf < b.bdf ? -1 : 1))
      .map((f) => f.bdf);
    rec.plan = plan;
    const bridges = plan.filter((b) => !topo.devices.includes(b));
    rec.before = {
      bridges: bridges.map(bridgeView),
      devices: await Promise.all(topo.devices.map((d) => deviceState(lab, d))),
      unmaskSbr: await unmaskSbr(lab, topo.rootPort),
    };
    const images = await saveAll(lab, plan);
    rec.images = [...images.values()].map(imageSummary);
    for (const d of topo.devices) await operations.quiesce(ctx, { bdf: d, scope: "full" });

    // The upstream port's parent is the root port: its SBR reaches everything below.
    rec.reset = await operations.reset(ctx, { bdf: topo.upstream, method: "sbr" });
    rec.afterReset = {
      bridges: bridges.map(bridgeView),
      deviceVendorIds: topo.devices.map(vendorOf),
      unmaskSbr: await unmaskSbr(lab, topo.rootPort),
    };
    log = kernelLogSince(log.mark);
    rec.kernelLogAfterReset = log.lines;

    const restores: unknown[] = [];
    for (const bdf of plan) {
      const scope = topo.devices.includes(bdf) ? "full" : "io";
      if (scope === "full" && rec.devicesBehindRestoredPorts === undefined) {
        // The ports are back: the devices answer again, with the PCI state the reset left them.
        rec.devicesBehindRestoredPorts = topo.devices.map((d) => ({
          bdf: d,
          vendorId: vendorOf(d),
          command: `0x${configBytes(d).readUInt16LE(4).toString(16)}`,
          bar0: `0x${configBytes(d).readUInt32LE(0x10).toString(16)}`,
        }));
      }
      const image = images.get(bdf);
      restores.push({
        bdf,
        scope,
        result: await outcome(() => operations.restore(ctx, { bdf, scope, image })),
      });
    }
    rec.restores = restores;
    const verifies: unknown[] = [];
    for (const bdf of plan) {
      const scope = topo.devices.includes(bdf) ? "full" : "io";
      verifies.push(await operations.verify(ctx, { bdf, scope, image: images.get(bdf) }));
    }
    rec.verifies = verifies;
    rec.after = {
      bridges: bridges.map(bridgeView),
      devices: await Promise.all(topo.devices.map((d) => deviceState(lab, d))),
    };
    rec.events = lab.takeEvents();
    rec.kernelLogAfterRestore = kernelLogSince(log.mark).lines;
  },
};

function depth(all: PciFunctionInfo[], bdf: string): number {
  let n = 0;
  for (let p = all.find((f) => f.bdf === bdf)?.parent; p; p = all.find((f) => f.bdf === p)?.parent) n++;
  return n;
}

export const sbrDownstreamPort: Check = {
  name: "sbr-downstream-port",
  async run(lab, rec) {
    const { ctx } = lab;
    const topo = await switchTopology(lab);
    const [a, b] = topo.devices as [string, string];
    rec.target = b;
    rec.untouched = a;
    // Both devices committed (re-done here so that this check stands on its own).
    await prepareDevices(lab, topo.devices, rec);
    rec.before = await Promise.all(topo.devices.map((d) => deviceState(lab, d)));
    const images = await saveAll(lab, topo.devices);
    await operations.quiesce(ctx, { bdf: b, scope: "full" });
    rec.unmaskSbrBefore = await unmaskSbr(lab, topo.downstream[1]!);
    rec.reset = await operations.reset(ctx, { bdf: b, method: "sbr" });
    rec.unmaskSbrAfter = await unmaskSbr(lab, topo.downstream[1]!);
    rec.afterReset = await Promise.all(topo.devices.map((d) => deviceState(lab, d)));
    // The reset took the target's BARs and Command with it, so its decoders are out of reach: put the PCI
    // state back first (io scope) to read what the reset left in them, then the full restore.
    await operations.restore(ctx, { bdf: b, scope: "io", image: images.get(b) });
    rec.afterPciRestore = await deviceState(lab, b);
    rec.restore = await operations.restore(ctx, { bdf: b, scope: "full", image: images.get(b) });
    rec.verifyTarget = await operations.verify(ctx, { bdf: b, scope: "full", image: images.get(b) });
    rec.verifyUntouched = await operations.verify(ctx, { bdf: a, scope: "full", image: images.get(a) });
    rec.after = await Promise.all(topo.devices.map((d) => deviceState(lab, d)));
    // Hand the devices back to the kernel's driver and read the link back.
    const rebinds: unknown[] = [];
    for (const d of topo.devices)
      rebinds.push(await outcome(() => operations.bind(ctx, { bdf: d, driver: "cxl_pci" })));
    rec.rebinds = rebinds;
    rec.driversAtEnd = topo.devices.map(driverOf);
    rec.events = lab.takeEvents();
  },
};
