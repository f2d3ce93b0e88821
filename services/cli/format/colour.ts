// ANSI colours, only on a terminal and never when NO_COLOR is set (https://no-color.org).
export interface Colours {
  readonly enabled: boolean;
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  blue(s: string): string;
  cyan(s: string): string;
  magenta(s: string): string;
}

const wrap = (on: boolean, open: number, close: number) => (s: string) =>
  on ? `\u001b[${open}m${s}\u001b[${close}m` : s;

export function colours(enabled: boolean): Colours {
  return {
    enabled,
    bold: wrap(enabled, 1, 22),
    dim: wrap(enabled, 2, 22),
    red: wrap(enabled, 31, 39),
    green: wrap(enabled, 32, 39),
    yellow: wrap(enabled, 33, 39),
    blue: wrap(enabled, 34, 39),
    magenta: wrap(enabled, 35, 39),
    cyan: wrap(enabled, 36, 39),
  };
}

/** Colours for a stream: on for a TTY unless NO_COLOR; FORCE_COLOR turns them on anyway. */
export function coloursFor(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): Colours {
  if (env.NO_COLOR) return colours(false);
  if (env.FORCE_COLOR && env.FORCE_COLOR !== "0") return colours(true);
  return colours(stream.isTTY === true);
}

/** Visible width of a string that may hold ANSI colour codes. */
export function visibleLength(s: string): number {
  return s.replace(/\u001b\[[0-9;]*m/g, "").length;
}

/** The colour an outcome or state is shown in. */
export function outcomeColour(c: Colours, outcome: string): (s: string) => string {
  switch (outcome) {
    case "verified":
    case "passed":
    case "ready":
    case "planned":
    case "released":
    case "repaired":
      return c.green;
    case "refused":
    case "cooldown":
      return c.yellow;
    case "failed":
    case "quarantined":
    case "violation":
      return c.red;
    default:
      return (s: string) => s;
  }
}
