// The agent's journal of resets, by operation id, kept in its state directory beside the fencing table. The
// agent answers a repeated operation id from memory; this is the same promise across a restart, for the one
// operation that must never run twice: a reset. Recorded durably before the reset is issued and again with
// its reply. A repeat after a restart gets the first reply, or, for a reset the agent died in the middle of,
// an error saying its outcome is unknown (the coordinator restores from the image and verifies), never a
// second reset.
//
// On disk an append-only log of JSON lines (`resets.log`): a line `{"op","bdf","at"}` when a reset is about to
// be issued, `{"op","reply"}` when it has answered; each is one append and one fdatasync (appends of
// concurrent resets share them), not a rewrite of every entry kept. The log is compacted to the entries kept
// once it holds COMPACT_AT lines. A journal of an earlier agent (`resets.json`, one JSON document) is read at
// start and folded into the first compaction.
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { AgentReply } from "../../shared/bus/agent-messages.ts";
import { remember } from "../../shared/remember.ts";
import { appendLog, readLogLines } from "./append-log.ts";
import { readStateJson } from "./durable-file.ts";

export const RESET_JOURNAL_FILE = "resets.log";
/** The single-document journal of agents before the log (read once, then replaced by the log). */
export const LEGACY_RESET_JOURNAL_FILE = "resets.json";
/** Resets remembered (oldest dropped first): far more than a coordinator can still repeat. */
const KEPT = 512;
/** Lines in the log before it is rewritten with the entries kept. */
const COMPACT_AT = 4 * KEPT;

const Entry = z.strictObject({ bdf: z.string(), at: z.string(), reply: AgentReply.optional() });
type Entry = z.infer<typeof Entry>;
const LegacyFile = z.strictObject({ v: z.literal(1), resets: z.record(z.string(), Entry) });
/** One line of the log: the start of a reset (bdf, at), its reply, or both (a compacted entry). */
const Line = z.strictObject({
  op: z.string().min(1),
  bdf: z.string().optional(),
  at: z.string().optional(),
  reply: AgentReply.optional(),
});
type Line = z.infer<typeof Line>;

export interface ResetJournal {
  /** The reply to give a repeated reset operation id (the first one, or "interrupted"); null: never seen. */
  repeat(opId: string): AgentReply | null;
  /** Durably: this reset is about to be issued. */
  begin(opId: string, bdf: string): Promise<void>;
  /** Durably: its reply. */
  end(opId: string, reply: AgentReply): Promise<void>;
  readonly path: string | null;
  /** Close the log file (an agent stopping). */
  close(): Promise<void>;
}

function loadLegacy(path: string, into: Map<string, Entry>): boolean {
  const legacy = readStateJson(path, LegacyFile, "reset journal");
  if (legacy === null) return false;
  for (const [op, e] of Object.entries(legacy.resets)) remember(into, op, e, KEPT);
  return true;
}

/** Apply the log's lines in order; its line count, and whether its last line was torn (a crash mid-append). */
function loadLog(path: string, into: Map<string, Entry>): { torn: boolean; lines: number } {
  const { items, torn } = readLogLines(path, Line, "reset journal");
  for (const l of items) apply(into, l);
  return { torn, lines: items.length };
}

function apply(into: Map<string, Entry>, l: Line): void {
  if (l.bdf !== undefined && l.at !== undefined) {
    remember(into, l.op, { bdf: l.bdf, at: l.at, ...(l.reply ? { reply: l.reply } : {}) }, KEPT);
    return;
  }
  const e = into.get(l.op);
  if (e && l.reply) e.reply = l.reply;
}

/** Open the journal in `stateDir` (null: in memory only, an embedded agent whose restarts need no journal). */
export function openResetJournal(stateDir: string | null): ResetJournal {
  const path = stateDir === null ? null : join(stateDir, RESET_JOURNAL_FILE);
  const legacyPath = stateDir === null ? null : join(stateDir, LEGACY_RESET_JOURNAL_FILE);
  if (stateDir !== null) mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const entries = new Map<string, Entry>();
  const legacy = legacyPath !== null && loadLegacy(legacyPath, entries);
  const loaded = path === null ? { torn: false, lines: 0 } : loadLog(path, entries);
  const log = path === null || stateDir === null ? null : appendLog(stateDir, path);
  let lines = loaded.lines;

  const compact = (): Promise<void> => {
    if (!log) return Promise.resolve();
    const live = [...entries].map(([op, e]) => JSON.stringify({ op, ...e }));
    lines = live.length;
    return log.compact(live).then(() => {
      if (legacy && legacyPath !== null && existsSync(legacyPath)) rmSync(legacyPath, { force: true });
    });
  };
  // A torn last line is cut off (an append would join it), and an earlier agent's journal folded in, before
  // anything is appended. Appends queue behind this compaction.
  const opening = loaded.torn || legacy ? compact() : Promise.resolve();
  opening.catch(() => undefined);

  const append = (l: Line): Promise<void> => {
    if (!log) return Promise.resolve();
    lines++;
    const written = log.append(JSON.stringify(l));
    if (lines >= COMPACT_AT) void compact().catch(() => undefined);
    return written;
  };

  return {
    path,
    repeat(opId) {
      const e = entries.get(opId);
      if (!e) return null;
      if (e.reply) return e.reply;
      return {
        ok: false,
        opId,
        error: {
          kind: "backend",
          message: `${e.bdf}: reset ${opId} was started at ${e.at} and the agent stopped before it ended: its outcome is unknown and it is not issued again (restore from the image and verify)`,
          details: { bdf: e.bdf, opId, reason: "reset-interrupted" },
        },
      };
    },
    begin(opId, bdf) {
      const at = new Date().toISOString();
      remember(entries, opId, { bdf, at }, KEPT);
      return append({ op: opId, bdf, at });
    },
    end(opId, reply) {
      const e = entries.get(opId);
      if (!e) return Promise.resolve();
      e.reply = reply;
      return append({ op: opId, reply });
    },
    close: () => log?.close() ?? Promise.resolve(),
  };
}
