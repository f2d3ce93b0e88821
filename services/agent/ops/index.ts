// The agent's device operations, written once against HardwareBackend (simulator, sysfs, QEMU). Each takes
// the OpContext and the params of shared/bus/agent-messages.ts (an opId there is ignored here), returns the
// result shared/bus/agent-contract.ts declares for it (checked below, at compile time) or throws a CxlrcError
// naming register and value. The result types are the contract's, re-exported here under their old names.
import type { AgentResult } from "../../../shared/bus/agent-contract.ts";
import type { AgentOp } from "../../../shared/bus/subjects.ts";
import { bind } from "./bind.ts";
import type { OpContext } from "./context.ts";
import { inventory } from "./inventory.ts";
import { probe } from "./probe.ts";
import { quiesce } from "./quiesce.ts";
import { reset } from "./reset.ts";
import { restore } from "./restore.ts";
import { save } from "./save.ts";
import { verify } from "./verify.ts";

export type {
  AgentResult,
  AgentVerifyResult,
  BindResult,
  DecoderOutcome,
  InventoryBridge,
  InventoryDevice,
  InventoryResult,
  Mismatch,
  ProbeCxl,
  ProbeDecoder,
  ProbeResult,
  QuiesceResult,
  ResetResult,
  RestoreResult,
  SaveResult,
  VerifyResult,
} from "../../../shared/bus/agent-contract.ts";
export type { BindParams } from "./bind.ts";
export type { OpContext } from "./context.ts";
export type { ProbeParams } from "./probe.ts";
export type { QuiesceParams } from "./quiesce.ts";
export type { ResetParams } from "./reset.ts";
export type { RestoreParams } from "./restore.ts";
export type { SaveParams } from "./save.ts";
export { type AgentTimeouts, agentTimeouts, DEFAULT_AGENT_TIMEOUTS } from "./timeouts.ts";
export type { VerifyParams } from "./verify.ts";

export const operations = {
  inventory,
  bind,
  probe,
  save,
  quiesce,
  reset,
  restore,
  verify,
} as const satisfies { [Op in OperationName]: (ctx: OpContext, p: never) => Promise<AgentResult<Op>> };

export type Operations = typeof operations;
/**
 * Every operation but fault (the service answers that one itself, simulated backends only) and ping (answered by
 * the service at once, about the agent, not a device).
 */
export type OperationName = Exclude<AgentOp, "fault" | "ping">;
