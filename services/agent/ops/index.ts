// The agent's device operations, written once against HardwareBackend (simulator, sysfs, QEMU). Each takes
// the OpContext and the params of shared/bus/agent-messages.ts (an opId there is ignored here), returns a
// JSON-serializable result or throws a CxlrcError naming register and value.
import { bind } from "./bind.ts";
import { inventory } from "./inventory.ts";
import { probe } from "./probe.ts";
import { quiesce } from "./quiesce.ts";
import { reset } from "./reset.ts";
import { restore } from "./restore.ts";
import { save } from "./save.ts";
import { verify } from "./verify.ts";

export type { BindParams, BindResult } from "./bind.ts";
export type { OpContext } from "./context.ts";
export type { InventoryBridge, InventoryDevice, InventoryResult } from "./inventory.ts";
export type { ProbeCxl, ProbeDecoder, ProbeParams, ProbeResult } from "./probe.ts";
export type { QuiesceParams, QuiesceResult } from "./quiesce.ts";
export type { ResetParams, ResetResult } from "./reset.ts";
export type { DecoderOutcome, RestoreParams, RestoreResult } from "./restore.ts";
export type { SaveParams } from "./save.ts";
export { type AgentTimeouts, agentTimeouts, DEFAULT_AGENT_TIMEOUTS } from "./timeouts.ts";
export type { Mismatch, VerifyParams, VerifyResult } from "./verify.ts";

export const operations = {
  inventory,
  bind,
  probe,
  save,
  quiesce,
  reset,
  restore,
  verify,
} as const;

export type Operations = typeof operations;
export type OperationName = keyof Operations;
