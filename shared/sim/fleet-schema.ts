// The fleet file: hosts, their bridges (root ports, switch ports) and their CXL Type-2 devices. The schema is
// the type and the validator; cross-field rules (parents exist, buses match, firmware decoders obey the
// commit rules) are checked here so that a bad fleet fails on load with the path of the bad key.
import { z } from "zod";
import { decodeDecoderCount, HDM_ALIGN } from "../cxl/registers.ts";
import { BDF_RE, parseBdf } from "../hw/backend.ts";

export const Bdf = z.string().regex(BDF_RE, 'a PCI address "DDDD:BB:DD.F" in lowercase hex');

/** A 64-bit address or size: a number, a bigint or a hex string "0x…"; parsed to bigint. */
export const Addr = z.union([
  z.bigint().nonnegative(),
  z
    .number()
    .int()
    .nonnegative()
    .max(Number.MAX_SAFE_INTEGER)
    .transform((n) => BigInt(n)),
  z
    .string()
    .regex(/^0x[0-9a-fA-F]{1,16}$/, 'a hex number "0x…" (at most 64 bits)')
    .transform((s) => BigInt(s)),
]);

const aligned = (v: bigint) => v % HDM_ALIGN === 0n;
const ALIGN_MSG = "must be a multiple of 256 MiB (0x10000000)";

const ms = z.number().nonnegative();
/** Every delay the simulator models, in virtual (or real) milliseconds; all optional in a spec. */
export const TimingsSchema = z.strictObject({
  /** Commit (and decommit) of an HDM decoder: Commit → Committed / Error Not Committed. */
  commitDelayMs: ms.optional(),
  /** After FLR or SBR release: config and MMIO read all-ones (PCIe: 100 ms). */
  notReadyMs: ms.optional(),
  /** CXL Reset: Initiate → Reset Complete; clamped to the device's declared CXL Reset Timeout. */
  cxlResetDurationMs: ms.optional(),
  /** CXL Reset: config access undefined (reads all-ones) for this long after Initiate (spec: 100 ms). */
  cxlResetNoTouchMs: ms.optional(),
  /** Initiate Cache Write Back and Invalidation → Cache Invalid. */
  cacheFlushDelayMs: ms.optional(),
});
export type SimTimings = { [K in keyof z.output<typeof TimingsSchema>]-?: number };
export const DEFAULT_TIMINGS: Readonly<SimTimings> = {
  commitDelayMs: 1,
  notReadyMs: 100,
  cxlResetDurationMs: 50,
  cxlResetNoTouchMs: 100,
  cacheFlushDelayMs: 1,
};
export const HolderSchema = z.strictObject({
  kind: z.enum(["driver", "vfio-group", "resource", "process", "memory-online"]),
  detail: z.string().min(1),
  pid: z.number().int().positive().optional(),
});

export const FirmwareDecoderSchema = z.strictObject({
  base: Addr.refine(aligned, ALIGN_MSG),
  size: Addr.refine((v) => v > 0n, "must be non-zero").refine(aligned, ALIGN_MSG),
  dpaSkip: Addr.refine(aligned, ALIGN_MSG).default(0n),
  lockOnCommit: z.boolean().default(false),
});

/** What the platform firmware programs at host boot (applied by SimHost.boot(), never by a reset). */
export const FirmwareSchema = z.strictObject({
  /** Decoders committed by firmware, in order from decoder 0. */
  decoders: z.array(FirmwareDecoderSchema).default([]),
  /** HDM Global Control: HDM Decoder Enable (default: on when any decoder is committed). */
  hdmEnable: z.boolean().optional(),
  /** DVSEC Control Mem_Enable (default: on when any decoder is committed). */
  memEnable: z.boolean().optional(),
  cacheEnable: z.boolean().default(false),
  /** DVSEC Range n Base, n = 1, 2 (default: the bases of decoders 0 and 1). */
  rangeBases: z.array(Addr.refine(aligned, ALIGN_MSG)).max(2).optional(),
  /** DVSEC Lock CONFIG_LOCK, set last. */
  configLock: z.boolean().default(false),
});

export const RangeSchema = z.strictObject({
  size: Addr.refine((v) => v > 0n, "must be non-zero").refine(aligned, ALIGN_MSG),
  mediaType: z.number().int().min(0).max(7).default(2),
  memoryClass: z.number().int().min(0).max(7).default(2),
  /** Memory_Active_Timeout encoding (0 = 1 s … 4 = 256 s). */
  memActiveTimeout: z.number().int().min(0).max(7).default(0),
});

const DecoderCount = z
  .number()
  .int()
  .refine((n) => [...Array(13).keys()].some((c) => decodeDecoderCount(c) === n), {
    message: "HDM decoder count must be one of 1, 2, 4, 6 … 16, 20, 24, 28, 32",
  });

/** A non-zero function of a multi-function device. Unset fields inherit from the device. */
export const FunctionSchema = z.strictObject({
  fn: z.number().int().min(1).max(7),
  classCode: z.number().int().min(0).max(0xffffff).optional(),
  flr: z.boolean().optional(),
  /** Has its own DVSEC id 0 and component block (HDM decoders). CXL Reset capability is function 0's. */
  cxl: z.boolean().default(true),
  decoderCount: DecoderCount.optional(),
  firmware: FirmwareSchema.default(FirmwareSchema.parse({})),
  driver: z.string().min(1).nullable().default(null),
  iommuGroup: z.number().int().nonnegative().nullable().default(null),
  holders: z.array(HolderSchema).default([]),
});

export const DeviceSchema = z.strictObject({
  /** Function 0's address. */
  bdf: Bdf.refine((b) => b.endsWith(".0"), "a device is named by its function 0 (…​.0)"),
  /** The bridge directly above (root port or switch downstream port). */
  parent: Bdf,
  vendorId: z.number().int().min(0).max(0xfffe).default(0x8086),
  deviceId: z.number().int().min(0).max(0xffff).default(0x0d93),
  /** Processing accelerator (a CXL Type-2 device). */
  classCode: z.number().int().min(0).max(0xffffff).default(0x120000),
  flr: z.boolean().default(true),
  cacheCapable: z.boolean().default(true),
  memCapable: z.boolean().default(true),
  cacheWbInvCapable: z.boolean().default(true),
  memHwInitMode: z.boolean().default(false),
  cxlResetCapable: z.boolean().default(true),
  /** CXL Reset Timeout encoding: 0 = 10 ms, 1 = 100 ms, 2 = 1 s, 3 = 10 s, 4 = 100 s (5–7 reserved). */
  cxlResetTimeout: z.number().int().min(0).max(7).default(1),
  memClrCapable: z.boolean().default(true),
  /** DVSEC ranges (HDM_Count = how many). */
  ranges: z
    .array(RangeSchema)
    .min(1)
    .max(2)
    .default([RangeSchema.parse({ size: 0x1000_0000 })]),
  decoderCount: DecoderCount.default(2),
  /** Offset of the 64 KiB component block in BAR0 (64 KiB aligned; BAR0 grows to hold it). */
  componentOffset: z
    .number()
    .int()
    .nonnegative()
    .max(0x7fff_0000)
    .refine((n) => n % 0x10000 === 0, "must be 64 KiB aligned")
    .default(0x10000),
  firmware: FirmwareSchema.default(FirmwareSchema.parse({})),
  driver: z.string().min(1).nullable().default(null),
  iommuGroup: z.number().int().nonnegative().nullable().default(null),
  holders: z.array(HolderSchema).default([]),
  functions: z.array(FunctionSchema).default([]),
  timings: TimingsSchema.default({}),
});

export const BridgeSchema = z.strictObject({
  bdf: Bdf,
  kind: z.enum(["root-port", "switch-upstream", "switch-downstream"]),
  /** The bridge above (null for a root port). */
  parent: Bdf.nullable().default(null),
  secondaryBus: z.number().int().min(1).max(255),
  /** Default: the highest bus found below. */
  subordinateBus: z.number().int().min(1).max(255).optional(),
  /** Carries the CXL Extensions DVSEC for Ports (id 3): masks SBR unless Unmask SBR. */
  cxl: z.boolean().default(true),
  unmaskSbr: z.boolean().default(false),
  vendorId: z.number().int().min(0).max(0xfffe).default(0x8086),
  deviceId: z.number().int().min(0).max(0xffff).default(0x0db0),
  driver: z.string().min(1).nullable().default("pcieport"),
  iommuGroup: z.number().int().nonnegative().nullable().default(null),
});

const HostObject = z.strictObject({
  name: z.string().min(1).max(64),
  bridges: z.array(BridgeSchema).min(1),
  devices: z.array(DeviceSchema).default([]),
  timings: TimingsSchema.default({}),
});
export const HostSchema = HostObject.superRefine(checkTopology);

export const FleetSchema = z.strictObject({ hosts: z.array(HostSchema).min(1) }).superRefine((f, ctx) => {
  const seen = new Set<string>();
  f.hosts.forEach((h, i) => {
    if (seen.has(h.name))
      ctx.addIssue({ code: "custom", path: ["hosts", i, "name"], message: `duplicate host ${h.name}` });
    seen.add(h.name);
  });
});

export type Fleet = z.output<typeof FleetSchema>;
export type FleetInput = z.input<typeof FleetSchema>;
export type HostSpec = z.output<typeof HostSchema>;
export type HostSpecInput = z.input<typeof HostSchema>;
export type BridgeSpec = z.output<typeof BridgeSchema>;
export type DeviceSpec = z.output<typeof DeviceSchema>;
export type DeviceSpecInput = z.input<typeof DeviceSchema>;
export type FunctionSpec = z.output<typeof FunctionSchema>;
export type FirmwareSpec = z.output<typeof FirmwareSchema>;
export type HolderSpec = z.output<typeof HolderSchema>;

type Host = z.output<typeof HostObject>;

/** Bus number of a BDF, or NaN when the BDF itself is invalid (already reported by its own check). */
const busOf = (bdf: string) => (BDF_RE.test(bdf) ? parseBdf(bdf).bus : Number.NaN);
const wrongBus = (bdf: string, expected: number) => {
  const bus = busOf(bdf);
  return !Number.isNaN(bus) && bus !== expected;
};

function checkTopology(h: Host, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: "custom", path, message });
  const bridges = new Map(h.bridges.map((b) => [b.bdf, b]));
  const addrs = new Set<string>();
  const claim = (bdf: string, path: (string | number)[]) => {
    if (addrs.has(bdf)) issue(path, `duplicate PCI address ${bdf}`);
    addrs.add(bdf);
  };
  h.bridges.forEach((b, i) => {
    claim(b.bdf, ["bridges", i, "bdf"]);
    if (b.kind === "root-port" && b.parent !== null)
      issue(["bridges", i, "parent"], "a root port has no parent");
    if (b.kind !== "root-port") {
      const p = b.parent === null ? undefined : bridges.get(b.parent);
      if (!p) issue(["bridges", i, "parent"], `no bridge ${b.parent} on this host`);
      else {
        if (wrongBus(b.bdf, p.secondaryBus))
          issue(["bridges", i, "bdf"], `bus must be the parent's secondary bus ${p.secondaryBus}`);
        const okParent =
          b.kind === "switch-upstream" ? p.kind !== "switch-upstream" : p.kind === "switch-upstream";
        if (!okParent) issue(["bridges", i, "parent"], `a ${b.kind} cannot sit below a ${p.kind}`);
      }
    }
    if (b.subordinateBus !== undefined && b.subordinateBus < b.secondaryBus)
      issue(["bridges", i, "subordinateBus"], "must be ≥ secondaryBus");
  });
  h.devices.forEach((d, i) => {
    const p = bridges.get(d.parent);
    if (!p) issue(["devices", i, "parent"], `no bridge ${d.parent} on this host`);
    else if (p.kind === "switch-upstream")
      issue(["devices", i, "parent"], "a device sits below a root or downstream port");
    else if (wrongBus(d.bdf, p.secondaryBus))
      issue(["devices", i, "bdf"], `bus must be the parent's secondary bus ${p.secondaryBus}`);
    claim(d.bdf, ["devices", i, "bdf"]);
    const fns = new Set<number>();
    d.functions.forEach((f, j) => {
      if (fns.has(f.fn)) issue(["devices", i, "functions", j, "fn"], `duplicate function ${f.fn}`);
      fns.add(f.fn);
      claim(`${d.bdf.slice(0, -1)}${f.fn}`, ["devices", i, "functions", j, "fn"]);
      checkFirmware(
        f.firmware,
        f.decoderCount ?? d.decoderCount,
        ["devices", i, "functions", j, "firmware"],
        issue,
      );
    });
    checkFirmware(d.firmware, d.decoderCount, ["devices", i, "firmware"], issue);
    if (d.firmware.decoders.length > 0 && !d.memCapable)
      issue(["devices", i, "firmware", "decoders"], "a device that is not Mem_Capable has no HDM decoders");
  });
}

function checkFirmware(
  fw: z.output<typeof FirmwareSchema>,
  decoderCount: number,
  path: (string | number)[],
  issue: (path: (string | number)[], message: string) => void,
): void {
  if (fw.decoders.length > decoderCount)
    issue([...path, "decoders"], `${fw.decoders.length} firmware decoders but only ${decoderCount} decoders`);
  let end = 0n;
  fw.decoders.forEach((d, n) => {
    if (d.base < end) issue([...path, "decoders", n, "base"], "below the previous decoder's end");
    end = d.base + d.size;
  });
}

/** zod issues → one readable line per bad key: `fleet.hosts[1].devices[0].decoders: expected …`. */
export function formatIssues(error: z.ZodError, root = "fleet"): string {
  return error.issues
    .map((i) => {
      const path = i.path
        .map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`))
        .join("")
        .replace(/^\./, "");
      const at = path ? `${root}${path.startsWith("[") ? "" : "."}${path}` : root;
      return `${at}: ${i.message}`;
    })
    .join("; ");
}
