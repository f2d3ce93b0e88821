// QEMU's CXL device model as a HardwareBackend, driven over qtest with no guest OS: config space through
// ECAM, component registers through the BAR addresses our own firmware assigned. The firmware state lives
// here, so MMIO keeps working after a reset wiped the BARs and the operations' restore wrote them back.
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PCI_CFG_SPACE_EXP_SIZE } from "../../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../../shared/errors.ts";
import {
  type BackendCapabilities,
  type Clock,
  type HardwareBackend,
  type Holder,
  type PciFunctionInfo,
  parseBdf,
  realClock,
  type Width,
} from "../../../../shared/hw/backend.ts";
import { type Logger, silentLogger } from "../../../../shared/log.ts";
import {
  type Ecam,
  enableEcam,
  type FirmwareFunction,
  type FirmwareState,
  reapplyFunction,
  runFirmware,
} from "./firmware.ts";
import {
  DEFAULT_QEMU_BINARY,
  memReadCommand,
  memWriteCommand,
  parseQtestNumber,
  QtestClient,
  removeDirOnExit,
} from "./qtest.ts";
import { buildTopology, type TopologyName, type TopologyPlan } from "./topology.ts";

export interface QemuBackendOptions {
  topology: TopologyName;
  qemuBinary?: string;
  /** Extra QEMU arguments appended after the topology's (tests use them to make a start fail). */
  extraArgs?: readonly string[];
  clock?: Clock;
  log?: Logger;
}

export interface QemuDescription {
  topology: TopologyName;
  /** QEMU's process id (gone after close()). */
  pid: number;
  binary: string;
  args: readonly string[];
  /** Milliseconds from spawn to a connected qtest socket. */
  startupMs: number;
  /** Milliseconds the firmware (ECAM, enumeration, BARs) took. */
  firmwareMs: number;
  /** Every function below the CXL host bridge, depth-first, with the BAR addresses we assigned. */
  functions: readonly FirmwareFunction[];
  /** BDFs of the CXL Type-3 memory devices (class 0x0502), in enumeration order. */
  memoryDevices: string[];
  /** qtest lines answered so far. */
  commands: number;
  /** Temp dir of the socket and backing files (removed on close, or on process exit). */
  dir: string;
}

export type QemuBackend = HardwareBackend & {
  readonly kind: "qemu";
  readonly topology: TopologyName;
  describe(): QemuDescription;
  /**
   * Write back what the firmware programmed into a function (bus numbers, windows, BARs, command), as the
   * kernel restores bridges after a bus reset. For switch ports below a root port that took an SBR.
   */
  reapplyFirmware(bdf: string): Promise<void>;
};

/** PCI class code of a CXL memory device (base 05 memory controller, sub 02 CXL, interface 10 CXL 2.0). */
const CXL_MEMORY_CLASS = 0x0502;

const CAPABILITIES: BackendCapabilities = {
  kernelReset: false,
  vfioReset: false,
  bind: false,
  faults: false,
};

async function makeSparseFile(path: string, size: number): Promise<void> {
  const fh = await open(path, "w");
  try {
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

export async function createQemuBackend(opts: QemuBackendOptions): Promise<QemuBackend> {
  const log = (opts.log ?? silentLogger).child({ backend: "qemu", topology: opts.topology });
  const clock = opts.clock ?? realClock;
  const binary = opts.qemuBinary ?? DEFAULT_QEMU_BINARY;
  const dir = await mkdtemp(join(tmpdir(), "cxlrc-qemu-"));
  const dirGuard = removeDirOnExit(dir);
  let q: QtestClient | null = null;
  try {
    const plan: TopologyPlan = buildTopology(opts.topology, dir);
    for (const f of plan.backingFiles) await makeSparseFile(f.path, f.sizeBytes);
    const args = [...plan.args, ...(opts.extraArgs ?? [])];
    const t0 = performance.now();
    q = await QtestClient.start({ args, binary, dir, log });
    const t1 = performance.now();
    const ecam = await enableEcam(q);
    const fw = await runFirmware(ecam);
    const t2 = performance.now();
    log.info(
      { pid: q.pid, functions: fw.functions.map((f) => f.bdf), startupMs: t1 - t0, firmwareMs: t2 - t1 },
      "QEMU CXL backend ready",
    );
    return new QemuBackendImpl({
      topology: opts.topology,
      q,
      ecam,
      fw,
      dir,
      dirGuard,
      clock,
      log,
      binary,
      args,
      startupMs: t1 - t0,
      firmwareMs: t2 - t1,
    });
  } catch (e) {
    // Never leave QEMU behind: kill it, then say which process it was so callers can check.
    const pid = q?.pid;
    await q?.close();
    await rm(dir, { recursive: true, force: true });
    dirGuard.forget();
    if (e instanceof CxlrcError) {
      if (pid !== undefined) e.details.pid ??= pid;
      throw e;
    }
    throw new CxlrcError(
      "backend",
      `QEMU backend start failed: ${String(e)}`,
      pid !== undefined ? { pid } : {},
      { cause: e },
    );
  }
}

class QemuBackendImpl implements QemuBackend {
  readonly kind = "qemu" as const;
  readonly capabilities = CAPABILITIES;
  readonly topology: TopologyName;
  readonly clock: Clock;
  private readonly q: QtestClient;
  private readonly ecam: Ecam;
  private readonly fw: FirmwareState;
  private readonly byBdf: Map<string, FirmwareFunction>;
  private readonly dir: string;
  private readonly dirGuard: { forget: () => void };
  private readonly log: Logger;
  private readonly meta: { binary: string; args: readonly string[]; startupMs: number; firmwareMs: number };
  private closing: Promise<void> | null = null;

  constructor(p: {
    topology: TopologyName;
    q: QtestClient;
    ecam: Ecam;
    fw: FirmwareState;
    dir: string;
    dirGuard: { forget: () => void };
    clock: Clock;
    log: Logger;
    binary: string;
    args: readonly string[];
    startupMs: number;
    firmwareMs: number;
  }) {
    this.topology = p.topology;
    this.q = p.q;
    this.ecam = p.ecam;
    this.fw = p.fw;
    this.byBdf = new Map(p.fw.functions.map((f) => [f.bdf, f]));
    this.dir = p.dir;
    this.dirGuard = p.dirGuard;
    this.clock = p.clock;
    this.log = p.log;
    this.meta = { binary: p.binary, args: p.args, startupMs: p.startupMs, firmwareMs: p.firmwareMs };
  }

  describe(): QemuDescription {
    return {
      topology: this.topology,
      pid: this.q.pid,
      ...this.meta,
      functions: this.fw.functions,
      memoryDevices: this.fw.functions
        .filter((f) => f.classCode >>> 8 === CXL_MEMORY_CLASS)
        .map((f) => f.bdf),
      commands: this.q.commandCount,
      dir: this.dir,
    };
  }

  async listFunctions(): Promise<PciFunctionInfo[]> {
    return this.fw.functions.map((f) => ({
      bdf: f.bdf,
      vendorId: f.vendorId,
      deviceId: f.deviceId,
      classCode: f.classCode,
      headerType: f.headerType,
      multiFunction: f.multiFunction,
      parent: f.parent,
      ...(f.headerType === 1 ? { secondaryBus: f.secondaryBus!, subordinateBus: f.subordinateBus! } : {}),
      driver: null,
      iommuGroup: null,
      // A secondary bus reset through the parent bridge is the only reset QEMU 7.2's models offer.
      resetMethods: f.headerType === 0 ? ["bus"] : [],
    }));
  }

  private location(bdf: string, offset: number, width: Width) {
    const a = parseBdf(bdf);
    if (a.domain !== 0)
      throw new CxlrcError("bad-input", `QEMU backend has only domain 0000: ${bdf}`, { bdf });
    if (width !== 1 && width !== 2 && width !== 4) {
      throw new CxlrcError("bad-input", `config access width must be 1, 2 or 4, not ${width}`, { bdf });
    }
    if (
      !Number.isInteger(offset) ||
      offset < 0 ||
      offset + width > PCI_CFG_SPACE_EXP_SIZE ||
      offset % width
    ) {
      throw new CxlrcError(
        "bad-input",
        `config offset 0x${offset.toString(16)} (width ${width}) out of range or unaligned`,
        {
          bdf,
        },
      );
    }
    return a;
  }

  async configRead(bdf: string, offset: number, width: Width): Promise<number> {
    const a = this.location(bdf, offset, width);
    return this.ecam.read(a.bus, a.dev, a.fn, offset, width);
  }

  async configWrite(bdf: string, offset: number, width: Width, value: number): Promise<void> {
    const a = this.location(bdf, offset, width);
    await this.ecam.write(a.bus, a.dev, a.fn, offset, width, value >>> 0);
  }

  async configReadAll(bdf: string): Promise<Uint8Array> {
    const a = this.location(bdf, 0, 4);
    return this.ecam.readAll(a.bus, a.dev, a.fn);
  }

  private mmioAddress(bdf: string, bar: number, offset: number): number {
    const f = this.byBdf.get(bdf);
    if (!f) throw new CxlrcError("device-absent", `no function ${bdf} in the QEMU topology`, { bdf });
    const b = f.bars.find((x) => x.index === bar);
    if (!b)
      throw new CxlrcError("bad-input", `BAR ${bar} of ${bdf} is not a memory BAR we assigned`, { bdf });
    if (!Number.isInteger(offset) || offset < 0 || offset % 4 || offset + 4 > b.size) {
      throw new CxlrcError(
        "bad-input",
        `MMIO offset 0x${offset.toString(16)} outside BAR ${bar} (${b.size} bytes) or unaligned`,
        { bdf },
      );
    }
    return b.address + offset;
  }

  async mmioRead32(bdf: string, bar: number, offset: number): Promise<number> {
    const cmd = memReadCommand(this.mmioAddress(bdf, bar, offset), 4);
    return parseQtestNumber(await this.q.command(cmd), cmd);
  }

  async mmioWrite32(bdf: string, bar: number, offset: number, value: number): Promise<void> {
    await this.q.command(memWriteCommand(this.mmioAddress(bdf, bar, offset), 4, value >>> 0));
  }

  async holders(_bdf: string): Promise<Holder[]> {
    // No guest OS: nothing can hold a device.
    return [];
  }

  async reapplyFirmware(bdf: string): Promise<void> {
    const f = this.byBdf.get(bdf);
    if (!f) throw new CxlrcError("device-absent", `no function ${bdf} in the QEMU topology`, { bdf });
    this.log.debug({ bdf }, "re-applying firmware configuration");
    await reapplyFunction(this.ecam, f);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.q.close();
      } finally {
        await rm(this.dir, { recursive: true, force: true });
        this.dirGuard.forget();
      }
    })();
    return this.closing;
  }
}
