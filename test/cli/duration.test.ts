// How the CLI prints a duration: rounded to the precision of its unit first, then split into units, so a
// value that rounds up to the next unit is printed in that unit ("1.0 s", never "1000 ms" or "60 s").
import { describe, expect, it } from "vitest";
import { formatMs } from "../../services/cli/format/duration.ts";

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

describe("formatMs", () => {
  it.each([
    [0, "0 ms"],
    [0.4, "0 ms"],
    [850, "850 ms"],
    [999.4, "999 ms"],
    [999.5, "1.0 s"],
    [999.6, "1.0 s"],
    [1234, "1.2 s"],
    [9_960, "10.0 s"],
    [12_340, "12.3 s"],
    [59_940, "59.9 s"],
    [59_960, "1 m 00 s"],
    [59_600, "59.6 s"],
    [60 * S, "1 m 00 s"],
    [119_700, "2 m 00 s"],
    [125 * S, "2 m 05 s"],
    [3599.4 * S, "59 m 59 s"],
    [3599.6 * S, "1 h 00 m"],
    [5 * H, "5 h 00 m"],
    [5 * H + 29.4 * S, "5 h 00 m"],
    [5 * H + 30 * S, "5 h 01 m"],
    [24 * H - 20 * S, "1 d 00 h"],
    [2 * D, "2 d 00 h"],
    [2 * D + 3 * H, "2 d 03 h"],
    [2 * D + 3 * H + 29 * M, "2 d 03 h"],
    [2 * D + 3 * H + 30 * M, "2 d 04 h"],
  ])("%d ms is %j", (ms, text) => {
    expect(formatMs(ms)).toBe(text);
  });

  it("never prints a unit's full count (1000 ms, 60 s, 60 m, 24 h) anywhere in the range", () => {
    for (let ms = 0; ms < 3 * D; ms += ms < 2 * H ? 97.3 : 61_013) {
      expect(formatMs(ms), String(ms)).not.toMatch(/(^1000 ms|^60\.0 s|\b60 s|\b60 m|\b24 h)/);
    }
  });

  it("prints a negative duration (clocks that disagree) as 0 ms and a non-number as -", () => {
    expect(formatMs(-1)).toBe("0 ms");
    expect(formatMs(-5 * M)).toBe("0 ms");
    expect(formatMs(Number.NaN)).toBe("-");
    expect(formatMs(Number.POSITIVE_INFINITY)).toBe("-");
  });
});
