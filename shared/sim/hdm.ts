// HDM decoder commit rules (CXL r2.0 §8.2.5.12.7, docs/cxl-registers.md "Commit rules"), as pure functions.
import { BIT } from "./bits.ts";
import type { SimFunction } from "./function.ts";
import { decoderReg } from "./layouts.ts";

export interface DecoderView {
  base: bigint;
  size: bigint;
  /** Control register raw value. */
  control: number;
}

export const isCommitted = (d: DecoderView): boolean => (d.control & BIT.committed) !== 0;

/**
 * Why committing decoder n must fail (Error Not Committed), or null when it may commit. 256 MiB alignment of
 * base and size holds by construction: their bits 27:0 are reserved and read zero.
 */
export function commitRefusal(
  n: number,
  decoder: (i: number) => DecoderView,
  globalControl: number,
): string | null {
  if ((globalControl & BIT.hdmDecoderEnable) === 0) return "HDM Decoder Enable is clear in Global Control";
  const d = decoder(n);
  if (d.size === 0n) return "size is zero";
  if (n > 0) {
    const prev = decoder(n - 1);
    // In order: decoder n-1 committed (and not being decommitted).
    if (!isCommitted(prev) || (prev.control & BIT.commit) === 0) return `decoder ${n - 1} is not committed`;
    if (d.base < prev.base + prev.size) return `base is below the end of decoder ${n - 1}`;
  }
  return null;
}

/** Decommitting decoder n is refused while decoder n+1 is committed or committing (decreasing order). */
export function decommitRefusal(
  n: number,
  count: number,
  decoder: (i: number) => DecoderView,
): string | null {
  if (n + 1 >= count) return null;
  const next = decoder(n + 1);
  if (isCommitted(next) || (next.control & BIT.commit) !== 0) return `decoder ${n + 1} is still committed`;
  return null;
}

/** A write to decoder n's Control: Commit 0→1 commits (or fails) after commitDelayMs; 1→0 decommits. */
export function decoderControlWritten(f: SimFunction, n: number, old: number, value: number): void {
  const name = decoderReg(n, "control");
  const key = `commit:${n}`;
  const delay = f.model.timings.commitDelayMs;
  if (!(old & BIT.commit) && value & BIT.commit) {
    f.update(name, 0, BIT.errorNotCommitted);
    if (f.fault("commit-stuck", (x) => x.decoder === n)) {
      f.cancel(key); // never completes
      return;
    }
    const refusal = f.fault("commit-error", (x) => x.decoder === n)
      ? "commit-error fault"
      : commitRefusal(n, (i) => f.decoder(i), f.get("hdm.hdmGlobalControl"));
    f.schedule(key, delay, () => {
      if (refusal) f.update(name, BIT.errorNotCommitted);
      else {
        f.update(name, BIT.committed);
        f.counters.commits++;
      }
    });
  } else if (old & BIT.commit && !(value & BIT.commit)) {
    // Decommit only in decreasing order: out of order, the write of Commit = 0 is ignored.
    if (decommitRefusal(n, f.decoderCount(), (i) => f.decoder(i))) {
      f.update(name, BIT.commit);
      return;
    }
    f.cancel(key);
    f.update(name, 0, BIT.errorNotCommitted);
    if (value & BIT.committed) f.schedule(key, delay, () => f.update(name, 0, BIT.committed));
  }
}
