// Exit codes of the cxlrc binary (documented in the README).
export const EXIT = {
  ok: 0,
  /** The operation ran and failed, or was refused. */
  failure: 1,
  /** Bad input: flags, files, config. */
  usage: 2,
  /** The bus or a service could not be reached. */
  unavailable: 3,
} as const;

/** Bad flags or arguments: printed as one line, exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
