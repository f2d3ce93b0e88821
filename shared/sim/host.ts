// A simulated host: the topology of bridges and functions behind the HardwareBackend interface, with the
// kernel's reset/bind files emulated and fault injection. Absent or not-ready functions read all-ones.

import { COMPONENT_BLOCK_SIZE, PCI_CFG_SPACE_EXP_SIZE } from "../cxl/registers.ts";
import { CxlrcError } from "../errors.ts";
import type { Holder, PciFunctionInfo, Width } from "../hw/backend.ts";
import type { KernelCxlView, KernelDecoder } from "../hw/kernel-cxl.ts";
import { BIT } from "./bits.ts";
import { bootFunction, MMIO_WINDOW_BASE } from "./boot.ts";
import { VirtualClock } from "./clock.ts";
import { behaviourOf, checkBarFree, switchDriver } from "./drivers.ts";
import { type FaultApi, type FaultName, FaultSpec, faultKey } from "./faults.ts";
import { formatIssues, type HostSpec, type HostSpecInput } from "./fleet-schema.ts";
import { SimFunction } from "./function.ts";
import { isCommitted } from "./hdm.ts";
import { type KernelHost, kernelReset, resetMethods, sbrMasked, vfioReset } from "./kernel.ts";
import { parseHost } from "./load.ts";
import { hostModels } from "./model.ts";
import type { SimCounters, SimHost, SimHostOptions, SimSnapshot } from "./types.ts";

const allOnes = (width: number) => (width === 4 ? 0xffff_ffff : (1 << (8 * width)) - 1);

function checkAccess(bdf: string, offset: number, width: number, limit: number, what: string): void {
  if (![1, 2, 4].includes(width)) throw new CxlrcError("bad-input", `${what} width ${width}`, { bdf });
  if (!Number.isInteger(offset) || offset < 0 || offset + width > limit || offset % width !== 0)
    throw new CxlrcError("bad-input", `${what} at ${offset} (width ${width}) is outside or unaligned`, {
      bdf,
      offset,
    });
}

/** A simulated host, booted (firmware applied). The spec is validated; defaults are filled in. */
export function createSimHost(spec: HostSpec | HostSpecInput, opts: SimHostOptions = {}): SimHost {
  return new SimHostImpl(parseHost(spec, "host"), opts);
}

class SimHostImpl implements SimHost, KernelHost {
  readonly kind = "sim" as const;
  readonly name: string;
  readonly clock;
  readonly capabilities = { kernelReset: true, vfioReset: true, bind: true, faults: true };
  readonly faults: FaultApi;
  private readonly fns = new Map<string, SimFunction>();
  private readonly parents = new Map<SimFunction, SimFunction | null>();
  private readonly children = new Map<SimFunction, SimFunction[]>();

  constructor(spec: HostSpec, opts: SimHostOptions) {
    this.name = spec.name;
    this.clock = opts.clock ?? new VirtualClock();
    const env = { clock: this.clock, bridgeReset: (b: SimFunction, on: boolean) => this.bridgeReset(b, on) };
    for (const m of hostModels(spec, opts.timings)) this.fns.set(m.bdf, new SimFunction(m, env));
    // Topology: parents, the functions of each device, the children of each bridge, everything below a bridge.
    const byDevice = new Map<unknown, SimFunction[]>();
    for (const f of this.fns.values()) {
      const m = f.model;
      const parentBdf = m.kind === "bridge" ? m.spec.parent : m.device.parent;
      const parent = parentBdf ? this.fns.get(parentBdf)! : null;
      this.parents.set(f, parent);
      if (parent) this.children.set(parent, [...(this.children.get(parent) ?? []), f]);
      if (m.kind === "endpoint") {
        const fns = byDevice.get(m.device) ?? [];
        fns.push(f);
        byDevice.set(m.device, fns);
        f.siblings = fns; // shared array, function 0 first (hostModels order)
      }
    }
    for (const f of this.fns.values())
      for (let p = this.parents.get(f); p; p = this.parents.get(p)) p.below.push(f);
    this.faults = this.faultApi();
    this.boot();
  }

  private fn(bdf: string): SimFunction {
    const f = this.fns.get(bdf);
    if (!f)
      throw new CxlrcError("device-absent", `no function ${bdf} on simulated host ${this.name}`, { bdf });
    return f;
  }

  /** A function that answers now (settled), or undefined when absent / in reset / not ready / gone. */
  private live(bdf: string): SimFunction | undefined {
    const f = this.fns.get(bdf);
    if (!f) return undefined;
    const now = this.clock.now();
    this.settle(f, now);
    return f.ready(now) ? f : undefined;
  }

  /** Due events of the whole device (a CXL Reset started on function 0 completes for every function). */
  private settle(f: SimFunction, now = this.clock.now()): void {
    for (const g of f.siblings) g.settle(now);
  }

  parentOf(f: SimFunction): SimFunction | null {
    return this.parents.get(f) ?? null;
  }

  busNeighbours(f: SimFunction): SimFunction[] {
    const p = this.parentOf(f);
    return p ? (this.children.get(p) ?? []).filter((g) => g !== f) : [];
  }

  // ------------------------------------------------------------------------------------------------------
  // HardwareBackend

  async listFunctions(): Promise<PciFunctionInfo[]> {
    const out: PciFunctionInfo[] = [];
    for (const f of [...this.fns.values()].sort((a, b) => (a.bdf < b.bdf ? -1 : 1))) {
      const m = f.model;
      const parent = this.parentOf(f)?.bdf ?? null;
      if (m.kind === "bridge")
        out.push({
          bdf: f.bdf,
          vendorId: m.spec.vendorId,
          deviceId: m.spec.deviceId,
          classCode: 0x060400,
          headerType: 1,
          multiFunction: false,
          parent,
          secondaryBus: m.spec.secondaryBus,
          subordinateBus: m.subordinateBus,
          driver: f.driver,
          iommuGroup: m.spec.iommuGroup,
          resetMethods: [],
        });
      else
        out.push({
          bdf: f.bdf,
          vendorId: m.device.vendorId,
          deviceId: m.device.deviceId,
          classCode: m.classCode,
          headerType: 0,
          multiFunction: m.multiFunction,
          parent,
          driver: f.driver,
          iommuGroup: m.iommuGroup,
          resetMethods: resetMethods(this, f),
        });
    }
    return out;
  }

  async configRead(bdf: string, offset: number, width: Width): Promise<number> {
    checkAccess(bdf, offset, width, PCI_CFG_SPACE_EXP_SIZE, "config read");
    const f = this.live(bdf);
    return f ? f.readConfig(offset, width) : allOnes(width);
  }

  async configWrite(bdf: string, offset: number, width: Width, value: number): Promise<void> {
    checkAccess(bdf, offset, width, PCI_CFG_SPACE_EXP_SIZE, "config write");
    this.live(bdf)?.writeConfig(offset, width, value >>> 0);
  }

  async configReadAll(bdf: string): Promise<Uint8Array> {
    const out = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
    const f = this.live(bdf);
    if (!f) return out.fill(0xff);
    out.set(f.config);
    return out;
  }

  /** BAR0 (the 64-bit BAR0/1 pair) decodes only with Memory Space on and BAR0 at its assigned address. */
  private decodes(f: SimFunction): boolean {
    return (
      (f.get("pci.command") & BIT.memorySpace) !== 0 &&
      (f.get("pci.bar0") & ~0xf) === f.resourceLow &&
      f.get("pci.bar1") === f.resourceHigh
    );
  }

  private mmioTarget(
    bdf: string,
    bar: number,
    offset: number,
  ): { f: SimFunction; block: number } | undefined {
    const f = this.fn(bdf);
    if (f.model.kind !== "endpoint" || bar !== 0)
      throw new CxlrcError("bad-input", `${bdf} has no memory BAR ${bar} (BAR0 is its 64-bit BAR)`, {
        bdf,
        bar,
      });
    checkAccess(bdf, offset, 4, f.model.barSize, "MMIO");
    checkBarFree(f, bar);
    if (!this.live(bdf) || !this.decodes(f)) return undefined;
    return { f, block: offset - f.model.device.componentOffset };
  }

  async mmioRead32(bdf: string, bar: number, offset: number): Promise<number> {
    const t = this.mmioTarget(bdf, bar, offset);
    if (!t) return 0xffff_ffff;
    return t.block >= 0 && t.block < COMPONENT_BLOCK_SIZE ? t.f.readComponent(t.block) : 0;
  }

  async mmioWrite32(bdf: string, bar: number, offset: number, value: number): Promise<void> {
    const t = this.mmioTarget(bdf, bar, offset);
    if (t && t.block >= 0 && t.block < COMPONENT_BLOCK_SIZE) t.f.writeComponent(t.block, value >>> 0);
  }

  async holders(bdf: string): Promise<Holder[]> {
    const f = this.fn(bdf);
    const out: Holder[] = f.model.kind === "endpoint" ? f.model.holders.map((h) => ({ ...h })) : [];
    // As the sysfs backend reports it: a bound driver that claims the device's BAR holds it.
    if (behaviourOf(f.driver).claimsBar) out.push({ kind: "driver", detail: f.driver! });
    for (const x of f.faults) {
      if (x.name === "holder") out.push({ kind: x.kind, detail: x.detail });
      if (x.name === "memory-online") {
        const ranges = this.committedRanges(f);
        for (const r of ranges.length ? ranges : ["(no committed decoder)"])
          out.push({ kind: "memory-online", detail: r });
      }
    }
    return out;
  }

  private committedRanges(f: SimFunction): string[] {
    this.settle(f);
    const out: string[] = [];
    for (let n = 0; n < f.decoderCount(); n++) {
      const d = f.decoder(n);
      if (isCommitted(d)) out.push(`0x${d.base.toString(16)}-0x${(d.base + d.size - 1n).toString(16)}`);
    }
    return out;
  }

  async kernelReset(bdf: string, method: string): Promise<void> {
    await kernelReset(this, this.fn(bdf), method);
  }

  async vfioReset(bdf: string): Promise<void> {
    await vfioReset(this, this.fn(bdf));
  }

  async bindDriver(
    bdf: string,
    driver: string | null,
    opts: { override?: string | null } = {},
  ): Promise<string | null> {
    const f = this.fn(bdf);
    const prev = switchDriver(f, driver);
    // As sysfs: binding leaves driver_override naming the driver, unbinding clears it; the caller may name
    // the override to leave behind (the one it found).
    f.driverOverride = opts.override !== undefined ? opts.override : driver;
    return prev;
  }

  async driverOverride(bdf: string): Promise<string | null> {
    return this.fn(bdf).driverOverride;
  }

  /**
   * The kernel's view of the endpoint decoders while its CXL stack holds the function (cxl_pci bound), as
   * /sys/bus/cxl shows them. Unlike the real kernel's (read once at enumeration, stale after a reset behind
   * its back), the simulator's is read live: it stands for the truth a checker needs under the driver.
   */
  async cxlView(bdf: string): Promise<KernelCxlView | null> {
    const f = this.fn(bdf);
    if (f.model.kind !== "endpoint" || !f.model.cxl || !behaviourOf(f.driver).claimsBar) return null;
    this.settle(f);
    const endpoint = `endpoint${f.model.bdf.replace(/[^0-9a-f]/g, "").slice(-4)}`;
    const decoders: KernelDecoder[] = [];
    for (let n = 0; n < f.decoderCount(); n++) {
      const d = f.decoder(n);
      const committed = isCommitted(d);
      decoders.push({
        name: `decoder${endpoint.slice(8)}.${n}`,
        level: "endpoint",
        port: endpoint,
        index: n,
        start: committed ? d.base : 0n,
        size: committed ? d.size : 0n,
        interleaveWays: 1,
        interleaveGranularity: 256,
        targetList: [],
        region: null,
        locked: committed && (d.control & BIT.lockOnCommit) !== 0,
        committed,
      });
    }
    return { bdf, memdev: `mem${endpoint.slice(8)}`, endpoint, decoders, regions: [] };
  }

  async close(): Promise<void> {}

  // ------------------------------------------------------------------------------------------------------
  // Simulator extras

  boot(): void {
    let mmio = MMIO_WINDOW_BASE;
    for (const f of this.fns.values()) f.powerOn();
    for (const f of this.fns.values()) mmio = bootFunction(f, mmio);
    // Then the kernel probes the drivers bound at boot (cxl_pci sets Mem_Enable if firmware did not).
    for (const f of this.fns.values()) {
      const driver = f.driver;
      f.driver = null;
      switchDriver(f, driver);
    }
  }

  snapshot(bdf: string): SimSnapshot {
    const f = this.fn(bdf);
    this.settle(f);
    const config = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
    config.set(f.config);
    const component = new Uint8Array(COMPONENT_BLOCK_SIZE);
    if (f.comp && f.compLayout) component.set(f.comp, f.compLayout.base);
    return { config, component };
  }

  counters(bdf: string): SimCounters {
    const f = this.fn(bdf);
    this.settle(f);
    return { ...f.counters };
  }

  registerNames(bdf: string): string[] {
    return this.fn(bdf).registerNames();
  }

  /** Secondary Bus Reset bit of a bridge changed (PCIe §7.5.1.3.13; CXL r2.0 §8.1.5.2 masks it on CXL ports). */
  private bridgeReset(bridge: SimFunction, asserted: boolean): void {
    if (asserted) {
      bridge.sbrEffective = !sbrMasked(bridge);
      if (!bridge.sbrEffective) return;
      for (const f of bridge.below) {
        f.conventionalReset();
        f.inReset = true;
      }
    } else if (bridge.sbrEffective) {
      bridge.sbrEffective = false;
      for (const f of bridge.below) {
        f.inReset = false;
        f.notReadyFor(f.model.timings.notReadyMs);
      }
    }
  }

  private faultApi(): FaultApi {
    return {
      set: (bdf, fault) => {
        const f = this.fn(bdf);
        const r = FaultSpec.safeParse(fault);
        if (!r.success)
          throw new CxlrcError("bad-input", `invalid fault: ${formatIssues(r.error, "fault")}`, { bdf });
        const spec = r.data;
        if (spec.name === "bit-flip" && !f.has(spec.register))
          throw new CxlrcError("bad-input", `${bdf} has no register ${spec.register} (see registerNames)`, {
            bdf,
          });
        if (
          (spec.name === "commit-error" || spec.name === "commit-stuck") &&
          spec.decoder >= f.decoderCount()
        )
          throw new CxlrcError("bad-input", `${bdf} has no decoder ${spec.decoder}`, { bdf });
        const key = faultKey(spec);
        f.faults = [...f.faults.filter((x) => faultKey(x) !== key), spec];
      },
      clear: (bdf, name?: FaultName) => {
        const f = this.fn(bdf);
        f.faults = name ? f.faults.filter((x) => x.name !== name) : [];
      },
      list: (bdf) => this.fn(bdf).faults.map((x) => ({ ...x })),
    };
  }
}
