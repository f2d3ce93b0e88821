// HDM decoders of a full-scope restore (reset-rules.md "Each decoder"; CXL r2.0 §8.2.5.12.20):
// - Lock On Commit + Committed after the reset: retained; left alone, and it must equal the image.
// - Lock On Commit without Committed: cannot be restored before a conventional reset ("locked").
// - Committed (unlocked) with other values: decommitted first, highest index first (decoders decommit in
//   decreasing order), waiting for Committed = 0.
// - Then, in increasing order: base high/low, size high/low, DPA skip high/low, Control without Commit (and
//   without Committed, Error Not Committed and Lock On Commit), and for decoders committed in the image Control
//   with Commit (+ Lock On Commit if saved), polling every commitPollMs up to commitTimeoutMs for Committed
//   or Error Not Committed before the next decoder. Error Not Committed: Commit cleared, "commit-error".

import type { DecoderAction, DecoderOutcome } from "../../../shared/bus/agent-contract.ts";
import { configMask, field, fieldMaskInPlace, readFlag, withField } from "../../../shared/cxl/regdef.ts";
import { HDM_DECODER } from "../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import type { ImageDecoder, ImageHdm } from "../../../shared/image/schema.ts";
import { compareRegister, type Mismatch } from "./compare.ts";
import { type MmioAt, readMmioReg, regHex, writeMmioReg } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { addr64, DECODER_REGISTERS, DECODER_WRITE_ORDER, hex64, rawOf, regName } from "./cxl-regs.ts";
import { decoderAt } from "./locate.ts";
import { pollUntil } from "./wait.ts";

const CTL = HDM_DECODER.control;
const COMMIT = fieldMaskInPlace(field(CTL, "commit"));
const LOCK = fieldMaskInPlace(field(CTL, "lockOnCommit"));

export type { DecoderAction, DecoderOutcome };

type Regs = Record<string, number>;

async function readDecoder(ctx: OpContext, bdf: string, at: MmioAt): Promise<Regs> {
  const r: Regs = {};
  for (const def of DECODER_REGISTERS) r[def.name] = await readMmioReg(ctx.backend, bdf, at, def);
  return r;
}

function savedRegs(d: ImageDecoder): Regs {
  const r: Regs = {};
  for (const def of DECODER_REGISTERS)
    r[def.name] = rawOf(d.registers[def.name], regName.decoder(d.index, def));
  return r;
}

/** Differences in everything software programs, Commit excluded (QEMU clears it once committed). */
function differences(n: number, want: Regs, cur: Regs): Mismatch[] {
  const out: Mismatch[] = [];
  for (const def of DECODER_WRITE_ORDER) {
    out.push(...compareRegister(regName.decoder(n, def), def, want[def.name]!, cur[def.name]!, "cxl"));
  }
  out.push(...compareRegister(regName.decoder(n, CTL), CTL, want.control!, cur.control!, "cxl", ["commit"]));
  return out;
}

const committed = (ctl: number) => readFlag(CTL, ctl, "committed");
const locked = (ctl: number) => readFlag(CTL, ctl, "lockOnCommit");

export async function restoreDecoders(
  ctx: OpContext,
  bdf: string,
  hdmAt: { at: MmioAt },
  hdm: ImageHdm,
): Promise<DecoderOutcome[]> {
  const decoders = [...hdm.decoders].sort((a, b) => a.index - b.index);
  const want = decoders.map(savedRegs);
  const cur: Regs[] = [];
  for (const d of decoders) cur.push(await readDecoder(ctx, bdf, decoderAt(hdmAt, d.index)));

  // Classify what the reset left behind.
  const outcomes: DecoderOutcome[] = decoders.map((d) => ({
    index: d.index,
    action: "programmed",
    decommitted: false,
  }));
  let firstToRewrite = decoders.length;
  for (let i = 0; i < decoders.length; i++) {
    const n = decoders[i]!.index;
    const c = cur[i]!;
    const w = want[i]!;
    const name = regName.decoder(n, CTL);
    if (committed(c.control!) && locked(c.control!)) {
      const diff = differences(n, w, c);
      if (!committed(w.control!) || diff.length > 0) {
        throw new CxlrcError(
          "locked",
          `${bdf}: decoder ${n} is locked and committed with values other than the image`,
          {
            bdf,
            decoder: n,
            register: name,
            value: regHex(CTL, c.control!),
            reason: "locked-committed-differs",
            mismatches: diff,
          },
        );
      }
      outcomes[i]!.action = "retained";
      ctx.emit(bdf, "decoder.retained", { decoder: n, register: name, value: regHex(CTL, c.control!) });
      continue;
    }
    if (locked(c.control!) && !committed(c.control!)) {
      throw new CxlrcError("locked", `${bdf}: decoder ${n} reads Lock On Commit without Committed`, {
        bdf,
        decoder: n,
        register: name,
        value: regHex(CTL, c.control!),
        reason: "locked-not-committed",
      });
    }
    if (committed(c.control!)) {
      if (committed(w.control!) && differences(n, w, c).length === 0) outcomes[i]!.action = "kept";
      else firstToRewrite = Math.min(firstToRewrite, i);
    }
  }

  // Decommit in decreasing order: everything committed from the top down to the first decoder to rewrite.
  for (let i = decoders.length - 1; i >= firstToRewrite; i--) {
    const c = cur[i]!;
    if (!committed(c.control!)) continue;
    const n = decoders[i]!.index;
    if (locked(c.control!)) {
      throw new CxlrcError(
        "locked",
        `${bdf}: decoder ${n} is locked; decoder ${decoders[firstToRewrite]!.index} below it cannot be decommitted`,
        {
          bdf,
          decoder: n,
          register: regName.decoder(n, CTL),
          value: regHex(CTL, c.control!),
          reason: "locked-above",
        },
      );
    }
    await decommit(ctx, bdf, decoderAt(hdmAt, n), n, c.control!);
    outcomes[i]!.decommitted = true;
    outcomes[i]!.action = "programmed";
  }

  for (let i = 0; i < decoders.length; i++) {
    const o = outcomes[i]!;
    if (o.action === "retained" || o.action === "kept") continue;
    const n = decoders[i]!.index;
    const at = decoderAt(hdmAt, n);
    const w = want[i]!;
    for (const def of DECODER_WRITE_ORDER)
      await writeMmioReg(ctx.backend, bdf, at, def, w[def.name]! & configMask(def));
    const ctlNoCommit = (w.control! & configMask(CTL) & ~COMMIT & ~LOCK) >>> 0;
    await writeMmioReg(ctx.backend, bdf, at, CTL, ctlNoCommit);
    if (!committed(w.control!)) continue;
    await commit(ctx, bdf, at, n, ctlNoCommit, locked(w.control!), w);
    o.action = "committed";
  }
  return outcomes;
}

async function decommit(ctx: OpContext, bdf: string, at: MmioAt, n: number, control: number): Promise<void> {
  const b = ctx.backend;
  await writeMmioReg(b, bdf, at, CTL, (control & configMask(CTL) & ~COMMIT) >>> 0);
  const r = await pollUntil({
    clock: b.clock,
    read: () => readMmioReg(b, bdf, at, CTL),
    done: (v) => v !== 0xffffffff && !committed(v),
    pollMs: ctx.timeouts.commitPollMs,
    timeoutMs: ctx.timeouts.decommitTimeoutMs,
  });
  if (!r.ok) {
    throw new CxlrcError(
      "commit-timeout",
      `${bdf}: decoder ${n} still Committed ${r.elapsedMs} ms after clearing Commit`,
      {
        bdf,
        decoder: n,
        register: regName.decoder(n, CTL),
        value: regHex(CTL, r.value),
        operation: "decommit",
      },
    );
  }
  ctx.emit(bdf, "decoder.decommitted", { decoder: n, waitedMs: r.elapsedMs });
}

async function commit(
  ctx: OpContext,
  bdf: string,
  at: MmioAt,
  n: number,
  ctlNoCommit: number,
  lockOnCommit: boolean,
  w: Regs,
): Promise<void> {
  const b = ctx.backend;
  const name = regName.decoder(n, CTL);
  let ctl = withField(CTL, ctlNoCommit, "commit", true);
  if (lockOnCommit) ctl = withField(CTL, ctl, "lockOnCommit", true);
  await writeMmioReg(b, bdf, at, CTL, ctl);
  const r = await pollUntil({
    clock: b.clock,
    read: () => readMmioReg(b, bdf, at, CTL),
    done: (v) => v !== 0xffffffff && (committed(v) || readFlag(CTL, v, "errorNotCommitted")),
    pollMs: ctx.timeouts.commitPollMs,
    timeoutMs: ctx.timeouts.commitTimeoutMs,
  });
  const details = { bdf, decoder: n, register: name, value: regHex(CTL, r.value), waitedMs: r.elapsedMs };
  if (r.ok && readFlag(CTL, r.value, "errorNotCommitted")) {
    await writeMmioReg(b, bdf, at, CTL, ctlNoCommit);
    throw new CxlrcError("commit-error", `${bdf}: decoder ${n} reports Error Not Committed`, details);
  }
  if (!r.ok) {
    // Do not leave a Commit request armed on a decoder we are giving up on.
    await writeMmioReg(b, bdf, at, CTL, ctlNoCommit);
    throw new CxlrcError(
      "commit-timeout",
      `${bdf}: decoder ${n} neither Committed nor Error Not Committed within ${ctx.timeouts.commitTimeoutMs} ms`,
      { ...details, timeoutMs: ctx.timeouts.commitTimeoutMs },
    );
  }
  ctx.emit(bdf, "decoder.committed", {
    decoder: n,
    base: hex64(addr64(w.baseHigh!, w.baseLow!)),
    size: hex64(addr64(w.sizeHigh!, w.sizeLow!)),
    waitedMs: r.elapsedMs,
  });
}
