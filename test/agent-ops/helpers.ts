import { CxlrcError } from "../../shared/errors.ts";

/** The CxlrcError a promise rejects with (fails the test when it resolves or throws something else). */
export async function rejection(p: Promise<unknown> | (() => Promise<unknown>)): Promise<CxlrcError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (e instanceof CxlrcError) return e;
    throw e;
  }
  throw new Error("expected a CxlrcError, the operation succeeded");
}
