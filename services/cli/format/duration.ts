// Durations and times for humans; event times as local HH:MM:SS.mmm.
//
// One rule for durations: round to the precision of a unit first, then split into units, and when the
// rounding reaches the next unit use that unit instead (so 999.6 ms is "1.0 s", never "1000 ms"):
//   below 1 s: whole ms ("850 ms")          below 1 min: s, one decimal ("1.2 s", "59.9 s")
//   below 1 h: whole s ("2 m 05 s")         below 1 d: whole min ("5 h 00 m")    then: whole h ("2 d 03 h")
// Negative durations (clocks that disagree) print as "0 ms"; a value that is not a number prints as "-".

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

const two = (n: number) => String(n).padStart(2, "0");

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return "-";
  if (ms < 0) return "0 ms";
  const wholeMs = Math.round(ms);
  if (wholeMs < SECOND) return `${wholeMs} ms`;
  const tenths = Math.round(ms / 100);
  if (tenths < 600) return `${(tenths / 10).toFixed(1)} s`;
  const seconds = Math.round(ms / SECOND);
  if (seconds < 3600) return `${Math.floor(seconds / 60)} m ${two(seconds % 60)} s`;
  const minutes = Math.round(ms / MINUTE);
  if (minutes < 24 * 60) return `${Math.floor(minutes / 60)} h ${two(minutes % 60)} m`;
  const hours = Math.round(ms / HOUR);
  return `${Math.floor(hours / 24)} d ${two(hours % 24)} h`;
}

export function clockTime(iso: string | Date): string {
  const d = typeof iso === "string" ? new Date(iso) : iso;
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}
