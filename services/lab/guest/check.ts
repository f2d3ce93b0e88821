// A check: a named script that reads back what it needs into `rec`. The host asserts on rec; the guest only
// runs and records (an unexpected exception ends the check with what it recorded so far and the error).
import { isCxlrcError } from "../../../shared/errors.ts";
import type { LabError } from "../protocol.ts";
import type { LabContext } from "./lab-context.ts";

export type Rec = Record<string, unknown>;

export interface Check {
  name: string;
  run(lab: LabContext, rec: Rec): Promise<void>;
}

export function errorJson(e: unknown): LabError {
  if (isCxlrcError(e)) {
    const cause = e.cause instanceof Error ? { cause: e.cause.message } : {};
    return { name: e.name, message: e.message, kind: e.kind, details: { ...e.details, ...cause } };
  }
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: "Error", message: String(e) };
}

/** Runs fn and records its result, or its error as { error } (an expected refusal is data, not a failure). */
export async function outcome<T>(
  fn: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: LabError }> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    return { ok: false, error: errorJson(e) };
  }
}
