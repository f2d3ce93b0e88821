// Fencing tokens on the agent's side: per function (BDF) and lease, the highest epoch served and by whom.
// An operation carrying a lower epoch comes from an owner that lost the device to a newer one (a frozen or
// cut-off coordinator): it is refused with "stale-epoch", whatever NATS delivered. An equal epoch is the same
// owner. The table survives agent restarts: one small JSON file in the agent's state directory, written
// atomically and durably (durable-file.ts) before the operation that raised it runs.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { Fence } from "../../shared/bus/agent-messages.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { durableFile, readStateJson } from "./durable-file.ts";

export const FENCE_FILE = "fences.json";

const Served = z.strictObject({
  epoch: z.number().int().positive(),
  owner: z.string().min(1),
  at: z.string(),
});
const FenceFile = z.strictObject({
  v: z.literal(1),
  /** bdf → lease ("-" when the fence names none) → the highest epoch served. */
  devices: z.record(z.string(), z.record(z.string(), Served)),
});
type FenceFile = z.infer<typeof FenceFile>;
type Served = z.infer<typeof Served>;

export interface FenceTable {
  /** The refusal for `fence` on `bdf` (an older epoch than served), or null when it may run. No I/O. */
  check(bdf: string, fence: Fence): CxlrcError | null;
  /** check(), then record a higher epoch durably before the operation runs. Throws the refusal. */
  admit(bdf: string, fence: Fence): Promise<void>;
  /** Where the table is kept (null: memory only). */
  readonly path: string | null;
}

/** The directory the agent keeps its state in: the config's, systemd's $STATE_DIRECTORY, or the FHS place. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromSystemd = env.STATE_DIRECTORY?.split(":")[0];
  return fromSystemd && fromSystemd.length > 0 ? fromSystemd : "/var/lib/cxlrc-agent";
}

function load(path: string): FenceFile {
  return (
    readStateJson(
      path,
      FenceFile,
      "fencing table",
      "; move it away only if no coordinator can still act with an older epoch",
    ) ?? { v: 1, devices: {} }
  );
}

/**
 * Open the table in `stateDir` (created if missing; a corrupt file is an error naming it), or a table in
 * memory only when `stateDir` is null (an embedded agent whose restarts need not be fenced).
 */
export function openFenceTable(stateDir: string | null): FenceTable {
  const path = stateDir === null ? null : join(stateDir, FENCE_FILE);
  if (stateDir !== null) {
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new CxlrcError(
        "backend",
        `cannot create the agent state directory ${stateDir}`,
        { path: stateDir },
        {
          cause: e,
        },
      );
    }
  }
  const table: FenceFile = path === null ? { v: 1, devices: {} } : load(path);
  const file = path === null || stateDir === null ? null : durableFile(stateDir, path);

  const served = (bdf: string, fence: Fence): Served | undefined => table.devices[bdf]?.[fence.lease ?? "-"];

  const check = (bdf: string, fence: Fence): CxlrcError | null => {
    const last = served(bdf, fence);
    if (!last || fence.epoch >= last.epoch) return null;
    return new CxlrcError(
      "stale-epoch",
      `${bdf}: epoch ${fence.epoch} of ${fence.owner} is older than epoch ${last.epoch} already served to ${last.owner}: another coordinator owns this device now`,
      { bdf, epoch: fence.epoch, owner: fence.owner, servedEpoch: last.epoch, servedOwner: last.owner },
    );
  };

  return {
    path,
    check,
    async admit(bdf, fence) {
      const refusal = check(bdf, fence);
      if (refusal) throw refusal;
      const last = served(bdf, fence);
      if (last && last.epoch === fence.epoch) return;
      const byLease = table.devices[bdf] ?? {};
      byLease[fence.lease ?? "-"] = { epoch: fence.epoch, owner: fence.owner, at: new Date().toISOString() };
      table.devices[bdf] = byLease;
      if (file === null) return;
      try {
        await file.save(`${JSON.stringify(table)}\n`);
      } catch (e) {
        throw new CxlrcError(
          "backend",
          `cannot store the agent's fencing table ${path}`,
          { path },
          { cause: e },
        );
      }
    },
  };
}
