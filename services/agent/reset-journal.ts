// The agent's journal of resets, by operation id, kept in its state directory beside the fencing table. The
// agent answers a repeated operation id from memory; this is the same promise across a restart, for the one
// operation that must never run twice: a reset. Recorded durably before the reset is issued and again with
// its reply. A repeat after a restart gets the first reply, or, for a reset the agent died in the middle of,
// an error saying its outcome is unknown (the coordinator restores from the image and verifies), never a
// second reset.
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { AgentReply } from "../../shared/bus/agent-messages.ts";
import { formatZodIssues } from "../../shared/bus/codec.ts";
import { CxlrcError, describeError } from "../../shared/errors.ts";
import { durableFile } from "./durable-file.ts";

export const RESET_JOURNAL_FILE = "resets.json";
/** Resets remembered (oldest dropped first): far more than a coordinator can still repeat. */
const KEPT = 512;

const Entry = z.strictObject({ bdf: z.string(), at: z.string(), reply: AgentReply.optional() });
const JournalFile = z.strictObject({ v: z.literal(1), resets: z.record(z.string(), Entry) });
type JournalFile = z.infer<typeof JournalFile>;

export interface ResetJournal {
  /** The reply to give a repeated reset operation id (the first one, or "interrupted"); null: never seen. */
  repeat(opId: string): AgentReply | null;
  /** Durably: this reset is about to be issued. */
  begin(opId: string, bdf: string): Promise<void>;
  /** Durably: its reply. */
  end(opId: string, reply: AgentReply): Promise<void>;
  readonly path: string | null;
}

function load(path: string): JournalFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { v: 1, resets: {} };
    throw new CxlrcError("backend", `cannot read the agent's reset journal ${path}`, { path }, { cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CxlrcError(
      "bad-input",
      `the agent's reset journal ${path} is not valid JSON (${describeError(e)})`,
      {
        path,
      },
    );
  }
  const r = JournalFile.safeParse(raw);
  if (!r.success) {
    throw new CxlrcError(
      "bad-input",
      `the agent's reset journal ${path} is malformed: ${formatZodIssues(r.error)}`,
      {
        path,
      },
    );
  }
  return r.data;
}

/** Open the journal in `stateDir` (null: in memory only, an embedded agent whose restarts need no journal). */
export function openResetJournal(stateDir: string | null): ResetJournal {
  const path = stateDir === null ? null : join(stateDir, RESET_JOURNAL_FILE);
  if (stateDir !== null) mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const journal: JournalFile = path === null ? { v: 1, resets: {} } : load(path);
  const file = path === null || stateDir === null ? null : durableFile(stateDir, path);

  const save = (): Promise<void> => {
    const keys = Object.keys(journal.resets);
    for (const k of keys.slice(0, Math.max(0, keys.length - KEPT))) delete journal.resets[k];
    return file === null ? Promise.resolve() : file.save(`${JSON.stringify(journal)}\n`);
  };

  return {
    path,
    repeat(opId) {
      const e = journal.resets[opId];
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
      journal.resets[opId] = { bdf, at: new Date().toISOString() };
      return save();
    },
    end(opId, reply) {
      const e = journal.resets[opId];
      if (!e) return Promise.resolve();
      e.reply = reply;
      return save();
    },
  };
}
