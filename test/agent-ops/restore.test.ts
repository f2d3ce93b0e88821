import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { sealImage } from "../../shared/image/checksum.ts";
import type { Image } from "../../shared/image/schema.ts";
import type { SimpleHostOptions } from "../../shared/sim/index.ts";
import { DEV, DVSEC, decoderOffset, HDM_AT, heldDecoderControl, readDecoder, rig } from "./fixtures.ts";
import { rejection } from "./helpers.ts";
import type { Access } from "./recording-backend.ts";

const COMMAND = 0x04;
const BUS_MASTER = 0x4;
const INTX_DISABLE = 0x400;
const COMMIT = 1 << 9;
const COMMITTED = 1 << 10;

const twoDecoders = {
  driver: "cxl_accel",
  firmware: {
    decoders: [
      { base: 0x1_0000_0000, size: 0x1000_0000 },
      { base: 0x1_1000_0000, size: 0x2000_0000 },
    ],
  },
};

/** Which part of the device a write went to. */
function area(a: Access): string {
  if (a.op === "configWrite") {
    if (a.offset === COMMAND) return "command";
    if (a.offset < 0x100) return "pci";
    if (a.offset >= DVSEC && a.offset < DVSEC + 0x3c) return "dvsec";
    return "config-other";
  }
  if (a.offset === HDM_AT + 4) return "hdm-global";
  for (const n of [0, 1])
    if (a.offset >= decoderOffset(n, 0) && a.offset < decoderOffset(n, 0x20)) return `decoder${n}`;
  return "mmio-other";
}

async function savedAndReset(opts: SimpleHostOptions = { device: twoDecoders }) {
  const r = rig(opts);
  const image = await operations.save(r.ctx, { bdf: DEV });
  await operations.reset(r.ctx, { bdf: DEV, method: "sbr" });
  r.rec.clear();
  r.events.length = 0;
  return { ...r, image };
}

describe("restore full: order", () => {
  it("PCI → DVSEC → HDM global → decoder 0 → decoder 1 (after 0 read Committed) → Command last", async () => {
    const { ctx, rec, sim, image } = await savedAndReset();
    await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    const w = rec.writes().filter((a) => a.bdf === DEV);
    const areas = w.map(area);
    const first = (x: string) => areas.indexOf(x);
    const last = (x: string) => areas.lastIndexOf(x);
    // The first Command write: Memory Space on, Bus Master off, INTx disabled; it ends the PCI phase.
    const cmd0 = w[first("command")]!;
    expect(cmd0.value & (BUS_MASTER | INTX_DISABLE | 0x2)).toBe(INTX_DISABLE | 0x2);
    expect(last("pci")).toBeLessThan(first("command"));
    expect(first("command")).toBeLessThan(first("dvsec"));
    expect(first("dvsec")).toBeLessThan(first("hdm-global"));
    expect(first("hdm-global")).toBeLessThan(first("decoder0"));
    expect(last("decoder0")).toBeLessThan(first("decoder1"));
    // Within a decoder: base high/low, size high/low, DPA skip high/low, Control without Commit, Commit.
    const d1 = w.filter((a) => area(a) === "decoder1").map((a) => a.offset - decoderOffset(1, 0));
    expect(d1).toEqual([0x04, 0x00, 0x0c, 0x08, 0x18, 0x14, 0x10, 0x10]);
    const d1ctl = w.filter((a) => area(a) === "decoder1" && a.offset === decoderOffset(1, 0x10));
    expect(d1ctl.map((a) => a.value & COMMIT)).toEqual([0, COMMIT]);
    // Decoder 1's Commit only after decoder 0's Control read back Committed.
    const commit1 = rec.log.indexOf(d1ctl[1]!);
    const d0Committed = rec.log.findIndex(
      (a) => a.op === "mmioRead" && a.offset === decoderOffset(0, 0x10) && a.value & COMMITTED,
    );
    expect(d0Committed).toBeGreaterThanOrEqual(0);
    expect(d0Committed).toBeLessThan(commit1);
    // Bus Master last: the final write is the saved Command, after every component register write.
    const lastWrite = w.at(-1)!;
    expect(area(lastWrite)).toBe("command");
    expect(lastWrite.value).toBe(Number(image.pci.header[1]) & 0xffff);
    expect(lastWrite.value & BUS_MASTER).toBe(BUS_MASTER);
    expect(w.slice(0, -1).every((a) => area(a) !== "command" || (a.value & BUS_MASTER) === 0)).toBe(true);
    expect((await sim.configRead(DEV, COMMAND, 2)) & BUS_MASTER).toBe(BUS_MASTER);
  });

  it("restore io writes only PCI config state, Command last", async () => {
    const r = rig({ device: twoDecoders });
    const image = await operations.save(r.ctx, { bdf: DEV });
    await operations.reset(r.ctx, { bdf: DEV, method: "flr" });
    r.rec.clear();
    await operations.restore(r.ctx, { bdf: DEV, scope: "io", image });
    const w = r.rec.writes();
    expect(w.every((a) => a.op === "configWrite" && a.offset < 0x100)).toBe(true);
    expect(area(w.at(-1)!)).toBe("command");
    expect(await r.sim.configRead(DEV, COMMAND, 2)).toBe(Number(image.pci.header[1]) & 0xffff);
  });
});

describe("restore full: failures leave the device disabled", () => {
  it("commit-error on decoder 1: commit-error naming decoder1.control; Commit cleared; Command = INTx Disable", async () => {
    const { ctx, sim, image, events } = await savedAndReset();
    sim.faults.set(DEV, { name: "commit-error", decoder: 1 });
    const err = await rejection(operations.restore(ctx, { bdf: DEV, scope: "full", image }));
    expect(err.kind).toBe("commit-error");
    expect(err.details).toMatchObject({ register: "decoder1.control", decoder: 1 });
    expect(Number(err.details.value) & (1 << 11)).not.toBe(0);
    expect(await sim.configRead(DEV, COMMAND, 2)).toBe(INTX_DISABLE);
    expect(heldDecoderControl(sim, 1) & COMMIT).toBe(0);
    expect(heldDecoderControl(sim, 0) & COMMITTED).toBe(COMMITTED);
    expect(events.filter((e) => e.kind === "decoder.committed").map((e) => e.data.decoder)).toEqual([0]);
    expect(events.at(-1)?.kind).toBe("restore.failed");
  });

  it("commit-stuck: commit-timeout after commitTimeoutMs", async () => {
    const { ctx, sim, image } = await savedAndReset();
    sim.faults.set(DEV, { name: "commit-stuck", decoder: 0 });
    const err = await rejection(operations.restore(ctx, { bdf: DEV, scope: "full", image }));
    expect(err.kind).toBe("commit-timeout");
    expect(err.details).toMatchObject({ register: "decoder0.control", decoder: 0, timeoutMs: 20 });
    expect(err.details.waitedMs).toBeGreaterThanOrEqual(20);
    expect(await sim.configRead(DEV, COMMAND, 2)).toBe(INTX_DISABLE);
  });

  it("bit-flip on a decoder base: restore refuses to enable the device; verify names the register", async () => {
    const { ctx, sim, image } = await savedAndReset();
    sim.faults.set(DEV, { name: "bit-flip", register: "decoder1.baseHigh", bit: 4 });
    const err = await rejection(operations.restore(ctx, { bdf: DEV, scope: "full", image }));
    expect(err.kind).toBe("verify-mismatch");
    expect(err.details.register).toBe("decoder1.baseHigh");
    expect(await sim.configRead(DEV, COMMAND, 2)).toBe(INTX_DISABLE);
    // An operator turns Memory Space on to look: verify reads the component registers again.
    await sim.configWrite(DEV, COMMAND, 2, INTX_DISABLE | 0x2);
    const v = await operations.verify(ctx, { bdf: DEV, scope: "full", image });
    expect(v.passed).toBe(false);
    expect(v.mismatches).toContainEqual({
      register: "decoder1.baseHigh",
      field: "memoryBaseHigh",
      expected: 1,
      actual: 0x11,
      domain: "cxl",
    });
    // Every mismatch is listed, not just the first: the Command register differs too.
    expect(v.mismatches.some((m) => m.register === "pci.command")).toBe(true);
  });

  it("bad checksum: bad-input before any write", async () => {
    const { ctx, rec, image } = await savedAndReset();
    const bad = structuredClone(image);
    bad.cxl!.hdm!.decoders[0]!.registers.baseLow!.raw = "0x20000000";
    const err = await rejection(operations.restore(ctx, { bdf: DEV, scope: "full", image: bad }));
    expect(err.kind).toBe("bad-input");
    expect(rec.writes()).toEqual([]);
    // A well-sealed image that lacks a register restore needs: refused before any write, naming the path.
    const { checksum: _c, ...body } = structuredClone(image) as Image;
    delete body.cxl!.hdm!.decoders[1]!.registers.control;
    const partial = await rejection(
      operations.restore(ctx, { bdf: DEV, scope: "full", image: sealImage(body) }),
    );
    expect(partial.kind).toBe("bad-input");
    expect(partial.details.path).toBe("image.cxl.hdm.decoders[1].registers.control");
    expect(rec.writes()).toEqual([]);
    const other = await rejection(operations.restore(ctx, { bdf: "0000:01:00.1", scope: "full", image }));
    expect(other.kind).toBe("bad-input");
    expect(other.details.path).toBe("image.identity.bdf");
  });
});

describe("restore full: decoders the reset did not wipe", () => {
  it("a committed decoder with the image's values is kept as it is (no writes)", async () => {
    const { ctx, rec } = rig({ device: twoDecoders });
    const image = await operations.save(ctx, { bdf: DEV });
    rec.clear();
    const r = await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    expect(r.decoders.map((d) => d.action)).toEqual(["kept", "kept"]);
    expect(rec.writes().some((a) => area(a) === "decoder0" || area(a) === "decoder1")).toBe(false);
  });

  it("a committed decoder with other values is decommitted (highest first) and recommitted from the image", async () => {
    const { ctx, sim, events } = rig({ device: twoDecoders });
    const image = await operations.save(ctx, { bdf: DEV });
    // Someone moved decoder 1: decommit it, new base, commit again (read back committed).
    const ctl1 = decoderOffset(1, 0x10);
    await sim.mmioWrite32(DEV, 0, ctl1, 0);
    await sim.clock.sleep(5);
    await sim.mmioWrite32(DEV, 0, decoderOffset(1, 0x00), 0x4000_0000);
    await sim.mmioWrite32(DEV, 0, ctl1, COMMIT);
    await sim.clock.sleep(5);
    expect((await readDecoder(sim, 1)).base).toBe(0x1_4000_0000n);
    const r = await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    expect(r.decoders).toEqual([
      { index: 0, action: "kept", decommitted: false },
      { index: 1, action: "committed", decommitted: true },
    ]);
    expect(events.filter((e) => e.kind === "decoder.decommitted").map((e) => e.data.decoder)).toEqual([1]);
    const d1 = await readDecoder(sim, 1);
    expect([d1.committed, d1.base]).toEqual([true, 0x1_1000_0000n]);
    expect((await operations.verify(ctx, { bdf: DEV, scope: "full", image })).passed).toBe(true);
  });

  it("a locked, committed decoder is retained; one that differs from the image fails with locked", async () => {
    const locked = {
      firmware: { decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000, lockOnCommit: true }] },
    };
    const { ctx, sim, rec } = rig({ device: locked });
    const image = await operations.save(ctx, { bdf: DEV });
    rec.clear();
    const r = await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    expect(r.decoders[0]).toEqual({ index: 0, action: "retained", decommitted: false });
    expect(rec.writes().some((a) => area(a) === "decoder0")).toBe(false);

    const { checksum: _c, ...body } = structuredClone(image) as Image;
    body.cxl!.hdm!.decoders[0]!.registers.baseHigh!.raw = "0x00000002";
    const other = sealImage(body);
    const err = await rejection(operations.restore(ctx, { bdf: DEV, scope: "full", image: other }));
    expect(err.kind).toBe("locked");
    expect(err.details).toMatchObject({
      register: "decoder0.control",
      decoder: 0,
      reason: "locked-committed-differs",
    });
    expect(await sim.configRead(DEV, COMMAND, 2)).toBe(INTX_DISABLE);
  });

  it("CONFIG_LOCK is written last when the image had it, and reads back set", async () => {
    const { ctx, sim, rec, image } = await savedAndReset({
      device: { ...twoDecoders, firmware: { ...twoDecoders.firmware, configLock: true } },
    });
    expect(image.cxl?.configLock).toBe(true);
    expect((await sim.configRead(DEV, DVSEC + 0x14, 2)) & 1).toBe(0); // the bus reset cleared it
    await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    expect((await sim.configRead(DEV, DVSEC + 0x14, 2)) & 1).toBe(1);
    const w = rec.writes();
    const lockAt = w.findIndex((a) => a.offset === DVSEC + 0x14);
    const lastDecoder = w.findLastIndex((a) => area(a) === "decoder1");
    expect(lockAt).toBeGreaterThan(lastDecoder);
    expect((await operations.verify(ctx, { bdf: DEV, scope: "full", image })).passed).toBe(true);
  });
});
