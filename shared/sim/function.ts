// One simulated PCI function: its register files, the side effects of writes (FLR, SBR, CXL Reset, cache
// write-back, decoder commit) and the resets' scopes. Time-dependent state is kept as due times and applied
// lazily by settle(now), so an idle function costs only its bytes.
import { HDM_DECODER } from "../cxl/registers.ts";
import type { Clock } from "../hw/backend.ts";
import { BIT } from "./bits.ts";
import { control2Written } from "./control2.ts";
import type { FaultName, FaultSpec } from "./faults.ts";
import { type DecoderView, decoderControlWritten } from "./hdm.ts";
import { BRIDGE_KEPT, bridgeConfigImage, componentImage, endpointConfigImage } from "./image.ts";
import { bridgeLayout, componentLayout, decoderReg, endpointLayout } from "./layouts.ts";
import type { FunctionModel } from "./model.ts";
import {
  type Layout,
  masks,
  type Placed,
  peek,
  poke,
  readBytes,
  resetRegisters,
  type WriteHooks,
  writeAccess,
} from "./regfile.ts";
import type { SimCounters } from "./types.ts";

/** What a function needs from its host. */
export interface SimEnv {
  readonly clock: Clock;
  /** A bridge's Secondary Bus Reset bit changed. */
  bridgeReset(bridge: SimFunction, asserted: boolean): void;
}

interface Pending {
  at: number;
  key: string;
  run: () => void;
}

const newCounters = (): SimCounters => ({
  flr: 0,
  cxlReset: 0,
  conventionalReset: 0,
  memCleared: 0,
  cacheFlushes: 0,
  commits: 0,
});

export class SimFunction implements WriteHooks {
  readonly model: FunctionModel;
  readonly layout: Layout;
  readonly compLayout: Layout | null;
  config: Uint8Array;
  comp: Uint8Array | null;
  /** Functions of the same device, function 0 first (a bridge: itself). Set by the host. */
  siblings: SimFunction[] = [this];
  /** Bridges: every function below (recursively). Set by the host. */
  below: SimFunction[] = [];
  /** Bridges: the current SBR assertion reached the functions below (not masked). */
  sbrEffective = false;
  /** Held in reset by a Secondary Bus Reset above. */
  inReset = false;
  notReadyUntil = 0;
  driver: string | null;
  /** sysfs driver_override: the only driver the kernel would bind (null: none set). */
  driverOverride: string | null = null;
  /** Mem_Enable was set by the bound driver's probe (its unbind clears it again): see drivers.ts. */
  memEnableByDriver = false;
  /** Host address the kernel assigned to BAR0 at boot, low/high dword (MMIO hits only when BAR0/1 hold it). */
  resourceLow = 0;
  resourceHigh = 0;
  faults: FaultSpec[] = [];
  private pending: Pending[] | null = null;
  private stats: SimCounters | null = null;
  private readonly env: SimEnv;

  constructor(model: FunctionModel, env: SimEnv) {
    this.model = model;
    this.env = env;
    if (model.kind === "bridge") {
      this.layout = bridgeLayout(model.spec.cxl);
      this.compLayout = null;
      this.driver = model.spec.driver;
    } else {
      this.layout = endpointLayout(model.cxl, model.barSize);
      this.compLayout = model.cxl ? componentLayout(model.decoderCount) : null;
      this.driver = model.driver;
    }
    this.config = new Uint8Array(this.layout.size);
    this.comp = this.compLayout ? new Uint8Array(this.compLayout.size) : null;
    // Registers stay zero until powerOn() (SimHost.boot() powers every function on).
  }

  get bdf(): string {
    return this.model.bdf;
  }

  get counters(): SimCounters {
    this.stats ??= newCounters();
    return this.stats;
  }

  fault<N extends FaultName>(name: N, match?: (f: Extract<FaultSpec, { name: N }>) => boolean) {
    for (const f of this.faults)
      if (f.name === name && (!match || match(f as Extract<FaultSpec, { name: N }>)))
        return f as Extract<FaultSpec, { name: N }>;
    return undefined;
  }

  // ------------------------------------------------------------------------------------------------------
  // Time

  ready(now: number): boolean {
    return !this.inReset && now >= this.notReadyUntil && !this.fault("gone");
  }

  /** Apply every due event, earliest first. */
  settle(now: number): void {
    while (this.pending) {
      let next: Pending | undefined;
      for (const p of this.pending) if (p.at <= now && (!next || p.at < next.at)) next = p;
      if (!next) return;
      this.cancel(next.key);
      next.run();
    }
  }

  schedule(key: string, delayMs: number, run: () => void): void {
    this.cancel(key);
    this.pending ??= [];
    this.pending.push({ at: this.env.clock.now() + delayMs, key, run });
  }

  cancel(key: string): void {
    if (!this.pending) return;
    this.pending = this.pending.filter((p) => p.key !== key);
    if (this.pending.length === 0) this.pending = null;
  }

  private cancelWhere(pred: (key: string) => boolean): void {
    if (!this.pending) return;
    this.pending = this.pending.filter((p) => !pred(p.key));
    if (this.pending.length === 0) this.pending = null;
  }

  /** Not ready for the reset's window (or the long-not-ready fault's). */
  notReadyFor(ms: number): void {
    const f = this.fault("long-not-ready");
    this.notReadyUntil = Math.max(this.notReadyUntil, this.env.clock.now() + (f ? f.ms : ms));
  }

  // ------------------------------------------------------------------------------------------------------
  // Register access (the host checks readiness and settles first)

  readConfig(offset: number, width: number): number {
    return readBytes(this.config, this.layout, offset, width);
  }

  writeConfig(offset: number, width: number, value: number): void {
    writeAccess(this.config, this.layout, offset, width, value, this);
  }

  /** Component block access, `offset` relative to the block. */
  readComponent(offset: number): number {
    return this.comp && this.compLayout ? readBytes(this.comp, this.compLayout, offset, 4) : 0;
  }

  writeComponent(offset: number, value: number): void {
    if (this.comp && this.compLayout) writeAccess(this.comp, this.compLayout, offset, 4, value, this);
  }

  /** Where a named register lives. */
  private space(name: string): { buf: Uint8Array; layout: Layout; p: Placed } | undefined {
    const p = this.layout.byName.get(name);
    if (p) return { buf: this.config, layout: this.layout, p };
    const q = this.compLayout?.byName.get(name);
    if (q && this.comp && this.compLayout) return { buf: this.comp, layout: this.compLayout, p: q };
    return undefined;
  }

  has(name: string): boolean {
    return this.space(name) !== undefined;
  }

  /** Raw value of a named register (no readiness check). */
  get(name: string): number {
    const s = this.space(name);
    if (!s) throw new Error(`${this.bdf} has no register ${name}`);
    return peek(s.buf, s.layout, s.p);
  }

  /** Device-internal update of a named register (no access semantics). */
  put(name: string, value: number): void {
    const s = this.space(name);
    if (!s) throw new Error(`${this.bdf} has no register ${name}`);
    poke(s.buf, s.layout, s.p, value >>> 0);
  }

  update(name: string, set: number, clear = 0): void {
    this.put(name, (this.get(name) & ~clear) | set);
  }

  registerNames(): string[] {
    return [...this.layout.byName.keys(), ...(this.compLayout?.byName.keys() ?? [])];
  }

  // ------------------------------------------------------------------------------------------------------
  // WriteHooks: locks, faults, side effects

  frozen(p: Placed, old: number): number {
    const m = masks(p.def);
    if (m.rwlConfig && p.name.startsWith("dvsec.") && this.get("dvsec.lock") & BIT.configLock)
      return m.rwlConfig;
    if (p.decoder !== undefined) {
      const ctrl = p.def === HDM_DECODER.control ? old : this.get(decoderReg(p.decoder, "control"));
      // Lock On Commit + Committed: read-only until a reset (the RWL "decoderLock" domain).
      if (ctrl & BIT.committed && ctrl & BIT.lockOnCommit) return m.rwlDecoder;
      // Strict model: a committed (or committing) decoder ignores writes except clearing Commit.
      if (ctrl & (BIT.committed | BIT.commit))
        return p.def === HDM_DECODER.control ? m.rwlDecoder & ~BIT.commit : m.rwlDecoder;
    }
    return 0;
  }

  flip(p: Placed): number {
    const f = this.fault("bit-flip", (x) => x.register === p.name);
    return f ? (1 << f.bit) >>> 0 : 0;
  }

  after(p: Placed, old: number, value: number, cmd: number): void {
    if (p.decoder !== undefined && p.def === HDM_DECODER.control) {
      decoderControlWritten(this, p.decoder, old, value);
      return;
    }
    switch (p.name) {
      case "pcie.devCtl":
        if (cmd & BIT.initiateFlr && this.model.kind === "endpoint" && this.model.flr) this.flr();
        return;
      case "bridge.bridgeControl":
        if ((old ^ value) & BIT.secondaryBusReset)
          this.env.bridgeReset(this, (value & BIT.secondaryBusReset) !== 0);
        return;
      case "dvsec.control2":
        control2Written(this, old, value, cmd);
        return;
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // HDM decoders

  decoderCount(): number {
    return this.model.kind === "endpoint" && this.comp ? this.model.decoderCount : 0;
  }

  decoder(n: number): DecoderView {
    const hi = (r: keyof typeof HDM_DECODER) => BigInt(this.get(decoderReg(n, r)));
    return {
      base: (hi("baseHigh") << 32n) | hi("baseLow"),
      size: (hi("sizeHigh") << 32n) | hi("sizeLow"),
      control: this.get(decoderReg(n, "control")),
    };
  }

  // ------------------------------------------------------------------------------------------------------
  // Resets and boot

  private images(): { config: Uint8Array; comp: Uint8Array | null } {
    const m = this.model;
    if (m.kind === "bridge") return { config: bridgeConfigImage(m), comp: null };
    return { config: endpointConfigImage(m), comp: this.comp ? componentImage(m.decoderCount) : null };
  }

  /** Cold reset: every register to its power-on value, sticky bits too. */
  powerOn(): void {
    const img = this.images();
    this.config.set(img.config);
    if (this.comp && img.comp) this.comp.set(img.comp);
    this.pending = null;
    this.inReset = false;
    this.sbrEffective = false;
    this.notReadyUntil = 0;
  }

  /** Conventional (hot) reset from a secondary bus reset: everything to defaults except sticky bits. */
  conventionalReset(): void {
    const img = this.images();
    const keep = this.model.kind === "bridge" ? BRIDGE_KEPT : undefined;
    resetRegisters(
      this.config,
      img.config,
      this.layout,
      this.layout.regs.filter((p) => !keep?.has(p.name)),
      true,
    );
    if (this.comp && img.comp && this.compLayout)
      resetRegisters(this.comp, img.comp, this.compLayout, this.compLayout.regs, true);
    this.pending = null;
    this.sbrEffective = false;
    this.counters.conventionalReset++;
  }

  /** FLR: CXL.io state to defaults; DVSEC id 0 and the component block are out of its scope (CXL r2.0 §9.5). */
  flr(): void {
    const img = this.images();
    const io = this.layout.regs.filter((p) => !p.name.startsWith("dvsec.") && !p.name.startsWith("locator."));
    resetRegisters(this.config, img.config, this.layout, io, true);
    if (this.fault("flr-clears-hdm")) this.cxlStateReset(false);
    this.counters.flr++;
    this.notReadyFor(this.model.timings.notReadyMs);
  }

  /**
   * CXL.cache/CXL.mem state to defaults: DVSEC Control (IO_Enable is RO 1) and Range Bases, HDM Global Control
   * and decoders. CONFIG_LOCK is cleared only by a conventional reset (docs: "read-only until a conventional
   * reset"), so with `includeLock` false a set lock stays and so do the RWL fields it protects.
   */
  cxlStateReset(includeLock: boolean): void {
    if (!this.comp || !this.compLayout) return;
    const img = this.images();
    const locked = !includeLock && (this.get("dvsec.lock") & BIT.configLock) !== 0;
    const names = new Set<string>(
      locked ? [] : ["dvsec.control", "dvsec.range1BaseHigh", "dvsec.range1BaseLow"],
    );
    if (!locked) for (const n of ["dvsec.range2BaseHigh", "dvsec.range2BaseLow"]) names.add(n);
    if (includeLock) names.add("dvsec.lock");
    resetRegisters(
      this.config,
      img.config,
      this.layout,
      this.layout.regs.filter((p) => names.has(p.name)),
      true,
    );
    if (img.comp) resetRegisters(this.comp, img.comp, this.compLayout, this.compLayout.regs, true);
    this.cancelWhere((k) => k.startsWith("commit:"));
  }
}
