// Fencing tokens on the agent's side: per function (BDF) and lease, the highest epoch served and by whom.
// An operation carrying a lower epoch comes from an owner that lost the device to a newer one (a frozen or
// cut-off coordinator): it is refused with "stale-epoch", whatever NATS delivered. An equal epoch is the same
// owner. The table survives agent restarts: kept in the agent's state directory, each raise stored durably
// before the operation that raised it answers.
//
// On disk an append-only log of JSON lines (`fences.log`, append-log.ts): a line `{"bdf","lease","epoch",
// "owner","at"}` per raise, one append and one fdatasync for the raises that come together (ten devices of a
// host at once), not a rewrite of the whole table through a temporary file with two fsyncs and a rename per
// raise: every reset raises its device's epoch (its host's lease is taken anew), so that rewrite was a
// measurable part of an agent's CPU per reset. The log is compacted to one line per entry once it holds
// COMPACT_AT lines more than there are entries. The table of an earlier agent (`fences.json`, one JSON
// document) is read at start and folded into the first compaction (then removed).
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { Fence } from "../../shared/bus/agent-messages.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { appendLog, readLogLines } from "./append-log.ts";
import { readStateJson } from "./durable-file.ts";

export const FENCE_LOG_FILE = "fences.log";
/** The single-document table of agents before the log (read once, folded into the log, then removed). */
export const LEGACY_FENCE_FILE = "fences.json";
/** Lines in the log beyond its entries before it is rewritten with one line per entry. */
const COMPACT_AT = 1024;
/** What an operator may do about a table that cannot be read. */
const NOT_JSON_HINT = "; move it away only if no coordinator can still act with an older epoch";

const Served = z.strictObject({
  epoch: z.number().int().positive(),
  owner: z.string().min(1),
  at: z.string(),
});
const LegacyFile = z.strictObject({
  v: z.literal(1),
  /** bdf → lease ("-" when the fence names none) → the highest epoch served. */
  devices: z.record(z.string(), z.record(z.string(), Served)),
});
/** One line of the log: a raise (or, after a compaction, an entry). */
const Line = Served.extend({ bdf: z.string().min(1), lease: z.string().min(1) });
type Served = z.infer<typeof Served>;
type Line = z.infer<typeof Line>;
/** bdf → lease ("-" when the fence names none) → the highest epoch served. */
type Table = Map<string, Map<string, Served>>;

export interface FenceTable {
  /** The refusal for `fence` on `bdf` (an older epoch than served), or null when it may run. No I/O. */
  check(bdf: string, fence: Fence): CxlrcError | null;
  /** check(), then record a higher epoch durably before the operation runs. Throws the refusal. */
  admit(bdf: string, fence: Fence): Promise<void>;
  /** Where the table is kept (null: memory only). */
  readonly path: string | null;
  /** Close the log file (an agent stopping). */
  close(): Promise<void>;
}

/** The directory the agent keeps its state in: the config's, systemd's $STATE_DIRECTORY, or the FHS place. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromSystemd = env.STATE_DIRECTORY?.split(":")[0];
  return fromSystemd && fromSystemd.length > 0 ? fromSystemd : "/var/lib/cxlrc-agent";
}

/** Put a raise into the table (an older epoch than the one kept changes nothing). */
function apply(table: Table, l: Line): void {
  let byLease = table.get(l.bdf);
  if (!byLease) {
    byLease = new Map();
    table.set(l.bdf, byLease);
  }
  const last = byLease.get(l.lease);
  if (!last || l.epoch >= last.epoch) byLease.set(l.lease, { epoch: l.epoch, owner: l.owner, at: l.at });
}

function loadLegacy(path: string, into: Table): boolean {
  const legacy = readStateJson(path, LegacyFile, "fencing table", NOT_JSON_HINT);
  if (legacy === null) return false;
  for (const [bdf, byLease] of Object.entries(legacy.devices)) {
    for (const [lease, s] of Object.entries(byLease)) apply(into, { bdf, lease, ...s });
  }
  return true;
}

/** Apply the log's lines in order; its line count, and whether its last line was torn (a crash mid-append). */
function loadLog(path: string, into: Table): { torn: boolean; lines: number } {
  const { items, torn } = readLogLines(path, Line, "fencing table", NOT_JSON_HINT);
  for (const l of items) apply(into, l);
  return { torn, lines: items.length };
}

/**
 * Open the table in `stateDir` (created if missing; a corrupt file is an error naming it), or a table in
 * memory only when `stateDir` is null (an embedded agent whose restarts need not be fenced).
 */
export function openFenceTable(stateDir: string | null): FenceTable {
  const path = stateDir === null ? null : join(stateDir, FENCE_LOG_FILE);
  const legacyPath = stateDir === null ? null : join(stateDir, LEGACY_FENCE_FILE);
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
  const table: Table = new Map();
  const legacy = legacyPath !== null && loadLegacy(legacyPath, table);
  const loaded = path === null ? { torn: false, lines: 0 } : loadLog(path, table);
  const log = path === null || stateDir === null ? null : appendLog(stateDir, path);
  let lines = loaded.lines;
  let entries = 0;
  for (const byLease of table.values()) entries += byLease.size;

  const compact = (): Promise<void> => {
    if (!log) return Promise.resolve();
    const live: string[] = [];
    for (const [bdf, byLease] of table) {
      for (const [lease, s] of byLease) live.push(JSON.stringify({ bdf, lease, ...s } satisfies Line));
    }
    lines = live.length;
    return log.compact(live).then(() => {
      if (legacy && legacyPath !== null && existsSync(legacyPath)) rmSync(legacyPath, { force: true });
    });
  };
  // A torn last line is cut off (an append would join it), and an earlier agent's table folded in, before
  // anything is appended. Raises queue behind this compaction.
  const opening = loaded.torn || legacy ? compact() : Promise.resolve();
  opening.catch(() => undefined);

  const served = (bdf: string, fence: Fence): Served | undefined => table.get(bdf)?.get(fence.lease ?? "-");
  /** Raises whose line is being written: an operation at the same epoch waits for it as well. */
  const storing = new WeakMap<Served, Promise<void>>();

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
      if (last && last.epoch === fence.epoch) {
        // Raised by an operation just before this one: this one answers once that raise is stored, too.
        await storing.get(last);
        return;
      }
      const line: Line = {
        bdf,
        lease: fence.lease ?? "-",
        epoch: fence.epoch,
        owner: fence.owner,
        at: new Date().toISOString(),
      };
      if (!last) entries++;
      apply(table, line);
      if (log === null) return;
      const raised = served(bdf, fence)!;
      lines++;
      const write = log.append(JSON.stringify(line)).catch((e: unknown) => {
        // Not stored: the epoch is not served (the same epoch again tries the write again), unless a later
        // raise has replaced it meanwhile.
        const byLease = table.get(bdf);
        if (byLease?.get(line.lease) === raised) {
          if (last) byLease.set(line.lease, last);
          else {
            byLease.delete(line.lease);
            entries--;
          }
        }
        throw new CxlrcError(
          "backend",
          `cannot store the agent's fencing table ${path}`,
          { path },
          { cause: e },
        );
      });
      storing.set(raised, write);
      if (lines >= entries + COMPACT_AT) void compact().catch(() => undefined);
      try {
        await write;
      } finally {
        storing.delete(raised);
      }
    },
    close: () => log?.close() ?? Promise.resolve(),
  };
}
