// Attempts and successes of the red-team suite, by attack class: what the README reports. An attempt is one
// message an attacker got onto the bus (or tried to); a success is one that did what the attacker wanted
// (something changed, someone answered where they should not, a forged outcome was believed).

export interface ClassCount {
  attempts: number;
  successes: number;
  /** What counted as a success, one line each (for the failure message). */
  seen: string[];
}

export class Tally {
  private readonly classes = new Map<string, ClassCount>();

  constructor(names: readonly string[]) {
    for (const n of names) this.classes.set(n, { attempts: 0, successes: 0, seen: [] });
  }

  private get(name: string): ClassCount {
    const c = this.classes.get(name);
    if (!c) throw new TypeError(`no attack class ${JSON.stringify(name)}`);
    return c;
  }

  attempt(name: string, n = 1): void {
    this.get(name).attempts += n;
  }

  success(name: string, what: string): void {
    const c = this.get(name);
    c.successes++;
    if (c.seen.length < 50) c.seen.push(what);
  }

  count(name: string): ClassCount {
    return { ...this.get(name) };
  }

  entries(): Array<[string, ClassCount]> {
    return [...this.classes.entries()];
  }

  /** One line per class: `class | attempts | successes`, plus a total. */
  table(): string {
    const rows = this.entries();
    const width = Math.max(...rows.map(([n]) => n.length), "total".length);
    const line = (n: string, a: number, s: number) =>
      `${n.padEnd(width)}  ${String(a).padStart(7)}  ${String(s).padStart(9)}`;
    const total = rows.reduce((t, [, c]) => [t[0]! + c.attempts, t[1]! + c.successes], [0, 0]);
    return [
      `${"class".padEnd(width)}  ${"attempts".padStart(7)}  ${"successes".padStart(9)}`,
      ...rows.map(([n, c]) => line(n, c.attempts, c.successes)),
      line("total", total[0]!, total[1]!),
    ].join("\n");
  }
}
