// What every reset method reports.
import type { ResetMethod } from "../../../shared/bus/agent-messages.ts";

export interface ResetResult {
  bdf: string;
  method: ResetMethod;
  /** The function or bridge the reset was performed on (function 0 for CXL Reset, the bridge for SBR). */
  target: string;
  /** Functions polled after the reset that answered. */
  reached: string[];
  durationMs: number;
  /** Method-specific facts (declared timeout, Mem Clr, Unmask SBR…). */
  details: Record<string, unknown>;
}
