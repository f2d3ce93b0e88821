// What each agent operation returns: the result half of the agent's contract (the params half is
// agent-messages.ts). The agent's operations take their result types from here and the coordinator's
// call<Op>() validates every reply (and every op.completed event carrying a result) against them, so the
// two sides cannot drift and a malformed reply is a "decode" error naming the op and the first bad field.
//
// Objects are z.object, not strict: a key a newer agent adds is dropped by an older coordinator instead of
// failing its calls during a rolling upgrade. The saved image is the exception: its schema (shared/image) is
// strict, because an unknown key would escape the checksum.
import { z } from "zod";
import type { DecodedComponentBlock } from "../cxl/component.ts";
import type { DecodedConfig } from "../cxl/decode.ts";
import { CxlrcError } from "../errors.ts";
import { Hex, ImageSchema } from "../image/schema.ts";
import { Bdf, ErrorBody, ResetMethod, Scope } from "./agent-messages.ts";
import { formatZodIssues } from "./codec.ts";
import type { AgentOp } from "./subjects.ts";

const Count = z.number().int().nonnegative();
const Id16 = z.number().int().min(0).max(0xffff);
const ClassCode = z.number().int().min(0).max(0xffffff);
const DurationMs = z.number().nonnegative();
const Driver = z.string().nullable();

/** Something that keeps a function busy (shared/hw/backend.ts Holder). */
export const Holder = z.object({
  kind: z.enum(["driver", "vfio-group", "resource", "process", "memory-online"]),
  /** Driver name, "/dev/vfio/12", "resource0", "pid 1234 (qemu)", "0x100000000-0x10fffffff"… */
  detail: z.string(),
  pid: z.number().int().optional(),
});
/** A holder and the function it holds. */
export const FunctionHolder = Holder.extend({ bdf: Bdf });

/** One PCI function as the backend lists it (shared/hw/backend.ts PciFunctionInfo). */
export const PciFunction = z.object({
  bdf: Bdf,
  vendorId: Id16,
  deviceId: Id16,
  classCode: ClassCode,
  headerType: z.literal([0, 1]),
  multiFunction: z.boolean(),
  parent: Bdf.nullable(),
  secondaryBus: Count.optional(),
  subordinateBus: Count.optional(),
  driver: Driver,
  iommuGroup: Count.nullable(),
  resetMethods: z.array(z.string()),
});

export const InventoryDevice = z.object({
  /** Function 0 (or the lowest function present). */
  bdf: Bdf,
  functions: z.array(Bdf),
  vendorId: Id16,
  deviceId: Id16,
  classCode: ClassCode,
  /** Function 0 (or any function) carries the PCIe DVSEC for CXL Devices. */
  cxl: z.boolean(),
  /** Functions with a DVSEC id 0. */
  cxlFunctions: z.array(Bdf),
  bridge: Bdf.nullable(),
  siblings: z.array(Bdf),
  holders: z.array(FunctionHolder),
  resetMethods: z.array(z.string()),
  driver: Driver,
  iommuGroup: Count.nullable(),
});
export type InventoryDevice = z.infer<typeof InventoryDevice>;

export const InventoryBridge = z.object({
  bdf: Bdf,
  parent: Bdf.nullable(),
  secondaryBus: Count.nullable(),
  subordinateBus: Count.nullable(),
  /** Carries the CXL Extensions DVSEC for Ports (SBR masked unless Unmask SBR). */
  cxlPort: z.boolean(),
  /** Every function below, through switches. */
  below: z.array(Bdf),
  driver: Driver,
});
export type InventoryBridge = z.infer<typeof InventoryBridge>;

/**
 * What an agent's operations accept beyond the first release's contract (0.1.0), as its inventory says
 * (`features`): a coordinator asks for one only of an agent that names it, so coordinators and agents can be
 * upgraded in either order. "reset.restore": `reset` takes `restore` (the restore, and the verify, in the
 * reset's own operation). "save.probe": `save` takes `probe` (the function's facts read once it is saved, in
 * the same operation: the regate's read).
 */
export const AGENT_FEATURES = ["reset.restore", "save.probe"] as const;
export type AgentFeature = (typeof AGENT_FEATURES)[number];

export const InventoryResult = z.object({
  host: z.string().min(1),
  backend: z.string().min(1),
  devices: z.array(InventoryDevice),
  bridges: z.array(InventoryBridge),
  functions: z.array(PciFunction),
  /** AGENT_FEATURES this agent has; absent from an agent of 0.1.0 (none of them). Unknown names are kept. */
  features: z
    .array(z.string())
    .optional()
    .describe(
      "What this agent's operations accept beyond the first release (0.1.0), e.g. reset.restore; absent: none. Unknown names are to be ignored.",
    ),
});
export type InventoryResult = z.infer<typeof InventoryResult>;

export const BindResult = z.object({
  bdf: Bdf,
  /** Driver bound now, as the backend lists it afterwards (read back, not assumed). */
  driver: Driver,
  previous: Driver,
  /** Asked for with the bind (`verify`): the device read back against its image once the driver is back. */
  get verify() {
    return VerifyResult.optional();
  },
});
export type BindResult = z.infer<typeof BindResult>;

export const ProbeDecoder = z.object({
  index: Count,
  base: Hex,
  size: Hex,
  committed: z.boolean(),
  lockOnCommit: z.boolean(),
  errorNotCommitted: z.boolean(),
});
export type ProbeDecoder = z.infer<typeof ProbeDecoder>;

export const ProbeCxl = z.object({
  dvsecOffset: Count,
  cacheCapable: z.boolean(),
  memCapable: z.boolean(),
  cxlResetCapable: z.boolean(),
  /** Declared CXL Reset Timeout; 100 s for the reserved codes 5–7 (then cxlResetTimeoutReserved). */
  cxlResetTimeoutMs: DurationMs,
  cxlResetTimeoutReserved: z.boolean(),
  memClrCapable: z.boolean(),
  wbInvCapable: z.boolean(),
  cacheEnabled: z.boolean(),
  memEnabled: z.boolean(),
  configLock: z.boolean(),
  /** DVSEC HDM_Count: number of DVSEC ranges (1 or 2). */
  hdmCount: Count,
  /** Component register block (BAR, offset in the BAR), null without a Register Locator entry. */
  component: z.object({ bar: z.number().int().min(0).max(5), offset: Count }).nullable(),
  /** HDM decoders in the HDM Decoder capability (0 without one). */
  decoderCount: Count,
});
export type ProbeCxl = z.infer<typeof ProbeCxl>;

const isRecord = (v: unknown): boolean => typeof v === "object" && v !== null && !Array.isArray(v);

export const ProbeResult = z.object({
  bdf: Bdf,
  vendorId: Id16,
  deviceId: Id16,
  classCode: ClassCode,
  flrCapable: z.boolean(),
  cxl: ProbeCxl.nullable(),
  decoders: z.array(ProbeDecoder),
  /** HDM Global Control: HDM Decoder Enable; null without an HDM Decoder capability. */
  hdmDecoderEnable: z.boolean().nullable(),
  /** Every function of the device, function 0 first (its DVSEC carries the CXL Reset scope). */
  functions: z.array(Bdf),
  bridge: z.object({ bdf: Bdf, cxlPort: z.boolean(), unmaskSbr: z.boolean().nullable() }).nullable(),
  /** Functions below the same bridge that are not part of this device (a bus reset reaches them). */
  siblings: z.array(Bdf),
  /** Holders of every function of the device. */
  holders: z.array(FunctionHolder),
  /** Host address ranges of committed decoders (inclusive end). */
  memoryRanges: z.array(z.object({ decoder: Count, start: Hex, end: Hex, size: Hex })),
  resetMethods: z.array(z.string()),
  driver: Driver,
  /**
   * The decoded config space and component block, as `cxlrc decode --json` shows them: for people, nothing
   * is planned from it (the fields above are). Its shape is shared/cxl's decoder output; only checked to be
   * an object here, passed through whole. Left out of a `brief` probe (four fifths of the result).
   */
  decoded: z
    .object({
      config: z.custom<DecodedConfig>(isRecord, "the decoded config space (an object)"),
      component: z
        .custom<DecodedComponentBlock>(isRecord, "the decoded component block (an object)")
        .nullable(),
    })
    .optional(),
  /**
   * Why the component registers (HDM decoders) could not be read, when they could not: a bound driver
   * (cxl_pci) claims the BAR and the kernel refuses to map it. decoders is then empty: unknown, not none.
   */
  componentUnreadable: z.string().optional(),
});
export type ProbeResult = z.infer<typeof ProbeResult>;

/**
 * The image of one function (shared/image: strict, versioned; the checksum is checked where it is used), and,
 * asked with `probe` (feature "save.probe"), the function's facts as a brief probe reads them once it is saved:
 * `probe`, beside the image's own fields and not part of the image (its checksum does not cover it; whoever
 * keeps the image keeps it without). Absent when the read after the save failed: the caller reads again.
 */
export const SaveResult = ImageSchema.extend({ probe: ProbeResult.optional() });
export type SaveResult = z.infer<typeof SaveResult>;

export const QuiesceResult = z.object({
  bdf: Bdf,
  scope: Scope,
  /** Bus Master as it was before (the saved image holds the whole Command register). */
  busMasterWas: z.boolean(),
  /** "flushed": Cache Invalid read back set; "not-needed": not cache capable, caching off, or io scope. */
  cache: z.enum(["flushed", "not-needed"]),
  /** Whether Initiate WB+I was written (only when WB+I Capable). */
  wbInvInitiated: z.boolean(),
  durationMs: DurationMs,
});
export type QuiesceResult = z.infer<typeof QuiesceResult>;

export const DecoderOutcome = z.object({
  index: Count,
  /**
   * committed: written and committed now; retained: locked and committed through the reset; kept: committed
   * (unlocked) with the image's values, left alone; programmed: written, not committed (as in the image).
   */
  action: z.enum(["committed", "retained", "kept", "programmed"]),
  decommitted: z.boolean(),
});
export type DecoderOutcome = z.infer<typeof DecoderOutcome>;
export type DecoderAction = DecoderOutcome["action"];

/** A register field's value: 1-bit fields are booleans (shared/cxl/regdef.ts FieldValue). */
const FieldValue = z.union([z.boolean(), z.number()]);

export const Mismatch = z.object({
  /** "decoder1.control", "dvsec.control", "pci.command"… */
  register: z.string(),
  field: z.string(),
  expected: FieldValue,
  actual: FieldValue,
  /** pci: CXL.io state (restored by every scope); cxl: state an io-scope reset must not touch. */
  domain: z.enum(["pci", "cxl"]),
});
export type Mismatch = z.infer<typeof Mismatch>;

export const VerifyResult = z.object({
  bdf: Bdf,
  scope: Scope,
  passed: z.boolean(),
  mismatches: z.array(Mismatch),
  /** io scope with a CXL field changed: the reset reached beyond CXL.io. */
  scopeViolation: z.boolean(),
  /** Registers read back and compared. */
  registersChecked: Count,
});
export type VerifyResult = z.infer<typeof VerifyResult>;
/** The name the coordinator gives it, beside its own (machines') VerifyResult. */
export type AgentVerifyResult = VerifyResult;

export const RestoreResult = z.object({
  bdf: Bdf,
  scope: Scope,
  /** The image's checksum: which image was restored. */
  checksum: z.string(),
  decoders: z.array(DecoderOutcome),
  configLock: z.boolean(),
  durationMs: DurationMs,
  /** Asked for with the restore (`verify: true`): the verify run right after it, in the same operation. */
  verify: VerifyResult.optional(),
});
export type RestoreResult = z.infer<typeof RestoreResult>;

export const ResetResult = z.object({
  bdf: Bdf,
  method: ResetMethod,
  /** The function or bridge the reset was performed on (function 0 for CXL Reset, the bridge for SBR). */
  target: Bdf,
  /** Functions polled after the reset that answered. */
  reached: z.array(Bdf),
  durationMs: DurationMs,
  /** Method-specific facts (declared timeout, Mem Clr, Unmask SBR…). */
  details: z.record(z.string(), z.unknown()),
  /** The quiesce done first when asked (`quiesce` in the params). */
  quiesce: QuiesceResult.optional(),
  /**
   * The restore done right after the reset when asked (`restore` in the params): its result, or the error that
   * stopped it (the reset itself happened). Absent when it was not asked for, or the function never answered
   * the reset's polling (the caller waits for it and restores on its own).
   */
  restore: z
    .discriminatedUnion("ok", [
      z.object({ ok: z.literal(true), result: RestoreResult }),
      z.object({ ok: z.literal(false), error: ErrorBody }),
    ])
    .optional(),
});
export type ResetResult = z.infer<typeof ResetResult>;

/** Simulated backends only: the device's armed faults after the action (shared/sim/faults.ts FaultSpec). */
export const FaultResult = z.object({
  bdf: Bdf,
  faults: z.array(z.looseObject({ name: z.string() })),
});
export type FaultResult = z.infer<typeof FaultResult>;

/** The agent answering a ping: its host, and the operations it is running now. */
export const PingResult = z.object({
  host: z.string().min(1),
  inFlight: z.number().int().nonnegative(),
});
export type PingResult = z.infer<typeof PingResult>;

export const AGENT_RESULTS = {
  inventory: InventoryResult,
  bind: BindResult,
  probe: ProbeResult,
  save: SaveResult,
  quiesce: QuiesceResult,
  reset: ResetResult,
  restore: RestoreResult,
  verify: VerifyResult,
  fault: FaultResult,
  ping: PingResult,
} as const satisfies Record<AgentOp, z.ZodType>;

/** What operation `Op` returns, as the caller receives it. */
export type AgentResult<Op extends AgentOp> = z.output<(typeof AGENT_RESULTS)[Op]>;

const SHOWN_ISSUES = 3;

/**
 * Check what an agent sent as the result of `op` (a reply or an op.completed event on `subject`). A result
 * that does not match is a CxlrcError "decode" naming the op, the subject and the first bad field.
 */
export function parseAgentResult<Op extends AgentOp>(
  op: Op,
  subject: string,
  value: unknown,
): AgentResult<Op> {
  const r = AGENT_RESULTS[op].safeParse(value);
  if (r.success) return r.data as AgentResult<Op>;
  const issues = r.error.issues;
  const first = issues[0];
  const field = first && first.path.length > 0 ? first.path.map(String).join(".") : "result";
  // A result of the wrong shape altogether has an issue per field: the first few say enough.
  const shown = formatZodIssues(new z.ZodError(issues.slice(0, SHOWN_ISSUES)));
  const more = issues.length > SHOWN_ISSUES ? ` (and ${issues.length - SHOWN_ISSUES} more)` : "";
  throw new CxlrcError(
    "decode",
    `${subject}: the ${op} result does not match the agent contract: ${shown}${more}`,
    {
      subject,
      op,
      field,
      fields: issues.map((i) => i.path.map(String).join(".") || "result"),
    },
  );
}
