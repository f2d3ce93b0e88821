// What every reset method reports: the contract's ResetResult (shared/bus/agent-contract.ts).
export type { ResetResult } from "../../../shared/bus/agent-contract.ts";
