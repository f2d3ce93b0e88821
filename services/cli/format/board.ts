// Live progress of one or more reset requests. On a terminal: one line per device, redrawn in place
// (phase, elapsed) a few times a second. Elsewhere: nothing is redrawn; the caller prints event lines.
import { type TrackedRequest, totalMs } from "../../../client/track.ts";
import { type Colours, outcomeColour } from "./colour.ts";
import { formatMs } from "./duration.ts";

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const MARK: Record<string, string> = {
  verified: "✔",
  planned: "✔",
  refused: "⊘",
  rejected: "⊘",
  failed: "✘",
  quarantined: "✘",
};

export interface BoardRow {
  /** Shown first, e.g. the demo scenario ("io reset, FLR"). */
  label?: string;
  tracked: TrackedRequest;
}

export interface RowWidths {
  label: number;
  host: number;
}

/** The first clause of a reason ("restore from the image failed 2 time(s): decoder 0..." → before the ':'). */
function short(reason: string): string {
  const i = reason.indexOf(": ");
  return i > 0 ? reason.slice(0, i) : reason;
}

export function rowText(row: BoardRow, c: Colours, frame: number, nowMs: number, w: RowWidths): string {
  const t = row.tracked;
  const mark = t.outcome ? (MARK[t.outcome] ?? "•") : SPINNER[frame % SPINNER.length]!;
  const colour = outcomeColour(c, t.outcome ?? "");
  const scope = `${t.scope ?? "?"}/${t.method ?? "?"}`;
  let phase = t.outcome ?? t.phase ?? "submitted";
  if (t.outcome === "verified" && t.repaired) phase = "verified (repaired)";
  if (t.outcome && t.reason && t.outcome !== "verified") phase = `${t.outcome}: ${short(t.reason)}`;
  if (!t.outcome && t.violations.length > 0) phase = `${phase} (repairing scope violation)`;
  const elapsed = totalMs(t, nowMs);
  const label = row.label !== undefined ? `${row.label.padEnd(w.label)}  ` : "";
  return `${colour(mark)} ${label}${t.host.padEnd(w.host)}  ${t.bdf}  ${scope.padEnd(9)}  ${colour(phase.padEnd(22))}  ${c.dim(
    elapsed === null ? "" : formatMs(elapsed),
  )}`.trimEnd();
}

export class LiveBoard {
  private readonly rows: BoardRow[] = [];
  private drawn = 0;
  private frame = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly c: Colours,
    /** Redraw in place (a terminal); false: draw() does nothing, the caller prints lines. */
    readonly live: boolean,
  ) {
    if (live) {
      this.timer = setInterval(() => {
        this.frame++;
        this.draw();
      }, 100);
      this.timer.unref();
    }
  }

  add(row: BoardRow): void {
    this.rows.push(row);
    this.draw();
  }

  /** Print a line above the board (a terminal) or just print it (elsewhere). */
  log(line: string): void {
    if (this.live) this.clear();
    this.out.write(`${line}\n`);
    if (this.live) this.draw();
  }

  draw(): void {
    if (!this.live) return;
    const width = Math.max(40, (this.out.columns || 120) - 1);
    const widths = {
      label: Math.max(0, ...this.rows.map((r) => r.label?.length ?? 0)),
      host: Math.max(0, ...this.rows.map((r) => r.tracked.host.length)),
    };
    const now = Date.now();
    let text = this.drawn > 0 ? `\u001b[${this.drawn}A` : "";
    for (const row of this.rows) {
      text += `\r\u001b[2K${truncate(rowText(row, this.c, this.frame, now, widths), width)}\n`;
    }
    this.out.write(text);
    this.drawn = this.rows.length;
  }

  private clear(): void {
    if (this.drawn === 0) return;
    this.out.write(`\u001b[${this.drawn}A\u001b[0J`);
    this.drawn = 0;
  }

  /** Final draw; the board stays on screen. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.draw();
  }
}

/** Cut a coloured line to `width` visible characters (colour codes kept, a reset appended). */
function truncate(s: string, width: number): string {
  let visible = 0;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\u001b") {
      const end = s.indexOf("m", i);
      if (end > 0) {
        out += s.slice(i, end + 1);
        i = end;
        continue;
      }
    }
    if (visible >= width) return `${out}\u001b[0m`;
    out += s[i];
    visible++;
  }
  return out;
}
