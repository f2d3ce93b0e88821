// A HardwareBackend wrapper for tests: logs every register access with the clock time, and can rewrite what
// a read returns (to model a device that reads a stale command bit back, for example).

import type {
  BackendCapabilities,
  Clock,
  HardwareBackend,
  Holder,
  PciFunctionInfo,
  Width,
} from "../../shared/hw/backend.ts";
import type { KernelCxlView } from "../../shared/hw/kernel-cxl.ts";

export type AccessOp = "configRead" | "configWrite" | "mmioRead" | "mmioWrite" | "kernelReset" | "vfioReset";

export interface Access {
  t: number;
  op: AccessOp;
  bdf: string;
  /** Config offset, or BAR offset for MMIO. */
  offset: number;
  width: Width;
  value: number;
  bar?: number;
}

export type ReadHook = (a: Omit<Access, "t" | "op"> & { op: "configRead" | "mmioRead" }) => number;

export class RecordingBackend implements HardwareBackend {
  readonly log: Access[] = [];
  readHook: ReadHook | null = null;
  /** Called after every config or MMIO write reached the device (to arm a fault at an exact step). */
  afterWrite: ((a: Access) => void) | null = null;
  readonly kind;
  readonly clock: Clock;
  readonly capabilities: BackendCapabilities;
  kernelReset?: (bdf: string, method: string) => Promise<void>;
  vfioReset?: (bdf: string) => Promise<void>;
  bindDriver?: (
    bdf: string,
    driver: string | null,
    opts?: { override?: string | null },
  ) => Promise<string | null>;
  driverOverride?: (bdf: string) => Promise<string | null>;
  /** Tests give the simulator a kernel view (/sys/bus/cxl) here. */
  cxlView?: (bdf: string) => Promise<KernelCxlView | null>;

  constructor(private readonly inner: HardwareBackend) {
    this.kind = inner.kind;
    this.clock = inner.clock;
    this.capabilities = inner.capabilities;
    if (inner.kernelReset) {
      this.kernelReset = async (bdf, method) => {
        this.record("kernelReset", bdf, 0, 4, 0);
        await inner.kernelReset!(bdf, method);
      };
    }
    if (inner.vfioReset) {
      this.vfioReset = async (bdf) => {
        this.record("vfioReset", bdf, 0, 4, 0);
        await inner.vfioReset!(bdf);
      };
    }
    if (inner.bindDriver) this.bindDriver = (bdf, driver, opts) => inner.bindDriver!(bdf, driver, opts);
    if (inner.driverOverride) this.driverOverride = (bdf) => inner.driverOverride!(bdf);
  }

  private record(op: AccessOp, bdf: string, offset: number, width: Width, value: number, bar?: number): void {
    this.log.push({
      t: this.clock.now(),
      op,
      bdf,
      offset,
      width,
      value,
      ...(bar === undefined ? {} : { bar }),
    });
  }

  clear(): void {
    this.log.length = 0;
  }

  writes(): Access[] {
    return this.log.filter((a) => a.op === "configWrite" || a.op === "mmioWrite");
  }

  listFunctions(): Promise<PciFunctionInfo[]> {
    return this.inner.listFunctions();
  }

  async configRead(bdf: string, offset: number, width: Width): Promise<number> {
    let v = await this.inner.configRead(bdf, offset, width);
    if (this.readHook) v = this.readHook({ op: "configRead", bdf, offset, width, value: v });
    this.record("configRead", bdf, offset, width, v);
    return v;
  }

  async configWrite(bdf: string, offset: number, width: Width, value: number): Promise<void> {
    this.record("configWrite", bdf, offset, width, value);
    await this.inner.configWrite(bdf, offset, width, value);
    this.afterWrite?.(this.log.at(-1)!);
  }

  configReadAll(bdf: string): Promise<Uint8Array> {
    return this.inner.configReadAll(bdf);
  }

  async mmioRead32(bdf: string, bar: number, offset: number): Promise<number> {
    let v = await this.inner.mmioRead32(bdf, bar, offset);
    if (this.readHook) v = this.readHook({ op: "mmioRead", bdf, offset, width: 4, value: v, bar });
    this.record("mmioRead", bdf, offset, 4, v, bar);
    return v;
  }

  async mmioWrite32(bdf: string, bar: number, offset: number, value: number): Promise<void> {
    this.record("mmioWrite", bdf, offset, 4, value, bar);
    await this.inner.mmioWrite32(bdf, bar, offset, value);
    this.afterWrite?.(this.log.at(-1)!);
  }

  holders(bdf: string): Promise<Holder[]> {
    return this.inner.holders(bdf);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
