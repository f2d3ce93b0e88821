import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { DEV, DVSEC, readDecoder, rig } from "./fixtures.ts";
import { rejection } from "./helpers.ts";

const CONTROL2 = DVSEC + 0x10;
const STATUS2 = DVSEC + 0x12;
const INITIATE_WBI = 1 << 1;
const INITIATE_RESET = 1 << 2;
const MEM_CLR = 1 << 3;
const DISABLE_CACHING = 1 << 0;

/** A device whose firmware enabled caching (so a full quiesce flushes) with two committed decoders, and a
 * driver (which turned Bus Master on). */
const cachingDevice = {
  driver: "cxl_accel",
  firmware: {
    cacheEnable: true,
    decoders: [
      { base: 0x1_0000_0000, size: 0x1000_0000 },
      { base: 0x1_1000_0000, size: 0x2000_0000 },
    ],
  },
};

describe("CXL Reset (full scope)", () => {
  it("wipes the decoders; restore full brings them back committed and verify full passes", async () => {
    const { ctx, sim, events } = rig({ device: cachingDevice });
    const image = await operations.save(ctx, { bdf: DEV });
    const q = await operations.quiesce(ctx, { bdf: DEV, scope: "full" });
    expect(q).toMatchObject({ cache: "flushed", wbInvInitiated: true, busMasterWas: true });
    expect(sim.counters(DEV).cacheFlushes).toBe(1);
    const r = await operations.reset(ctx, { bdf: DEV, method: "cxl" });
    expect(r.target).toBe(DEV);
    expect(r.details).toMatchObject({ declaredTimeoutMs: 100, deadlineMs: 100, timeoutReserved: false });
    expect(sim.counters(DEV).cxlReset).toBe(1);
    // Read back: the reset wiped both decoders; Disable Caching was cleared afterwards.
    expect((await readDecoder(sim, 0)).committed).toBe(false);
    expect((await readDecoder(sim, 1)).committed).toBe(false);
    expect((await sim.configRead(DEV, CONTROL2, 2)) & DISABLE_CACHING).toBe(0);

    const res = await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    expect(res.decoders.map((d) => d.action)).toEqual(["committed", "committed"]);
    const d0 = await readDecoder(sim, 0);
    const d1 = await readDecoder(sim, 1);
    expect([d0.committed, d0.base, d0.size]).toEqual([true, 0x1_0000_0000n, 0x1000_0000n]);
    expect([d1.committed, d1.base, d1.size]).toEqual([true, 0x1_1000_0000n, 0x2000_0000n]);
    expect((await sim.configRead(DEV, 4, 2)) & 0x4).toBe(0x4); // Bus Master back on, read back
    const v = await operations.verify(ctx, { bdf: DEV, scope: "full", image });
    expect(v.mismatches).toEqual([]);
    expect(v.passed).toBe(true);
    expect(events.filter((e) => e.kind === "decoder.committed").map((e) => e.data.decoder)).toEqual([0, 1]);
  });

  it("touches nothing for 100 ms after Initiate, then reads only Status2", async () => {
    const { ctx, rec } = rig();
    await operations.save(ctx, { bdf: DEV });
    rec.clear();
    await operations.reset(ctx, { bdf: DEV, method: "cxl" });
    const i = rec.log.findIndex(
      (a) => a.op === "configWrite" && a.offset === CONTROL2 && a.value & INITIATE_RESET,
    );
    expect(i).toBeGreaterThanOrEqual(0);
    const t0 = rec.log[i]!.t;
    const after = rec.log.slice(i + 1);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((a) => a.t >= t0 + 100)).toBe(true);
    // Up to the last Status2 read, nothing else was accessed.
    const lastStatus = after.findLastIndex((a) => a.offset === STATUS2);
    expect(after.slice(0, lastStatus + 1).every((a) => a.op === "configRead" && a.offset === STATUS2)).toBe(
      true,
    );
  });

  it("never re-issues a stale command: Control2 writes carry Initiate bits only where meant", async () => {
    const { ctx, rec } = rig({ device: cachingDevice });
    // A device that reads back both Initiate bits set in Control2.
    rec.readHook = (a) =>
      a.op === "configRead" && a.offset === CONTROL2 ? a.value | INITIATE_WBI | INITIATE_RESET : a.value;
    await operations.save(ctx, { bdf: DEV });
    await operations.quiesce(ctx, { bdf: DEV, scope: "full" });
    await operations.reset(ctx, { bdf: DEV, method: "cxl" });
    const writes = rec.writes().filter((a) => a.offset === CONTROL2);
    // Disable Caching, Initiate WB+I, Initiate CXL Reset, Disable Caching cleared.
    expect(writes.length).toBe(4);
    expect(writes.map((w) => w.value & (INITIATE_WBI | INITIATE_RESET))).toEqual([
      0,
      INITIATE_WBI,
      INITIATE_RESET,
      0,
    ]);
  });

  it("sets Mem Clr Enable only when asked, and refuses it on a device that cannot", async () => {
    const asked = rig();
    await operations.reset(asked.ctx, { bdf: DEV, method: "cxl", memClear: true });
    expect(asked.sim.counters(DEV).memCleared).toBe(1);
    const notAsked = rig();
    await notAsked.sim.configWrite(DEV, CONTROL2, 2, MEM_CLR); // stale Mem Clr Enable left by someone
    await operations.reset(notAsked.ctx, { bdf: DEV, method: "cxl" });
    expect(notAsked.sim.counters(DEV).memCleared).toBe(0);
    const initiate = notAsked.rec.writes().find((w) => w.offset === CONTROL2 && w.value & INITIATE_RESET);
    expect(initiate!.value & MEM_CLR).toBe(0);
    const unable = rig({ device: { memClrCapable: false } });
    const err = await rejection(operations.reset(unable.ctx, { bdf: DEV, method: "cxl", memClear: true }));
    expect(err.kind).toBe("unsupported");
    expect(err.details).toMatchObject({ reason: "mem-clr-unsupported", register: "dvsec.capability" });
    expect(unable.sim.counters(DEV).cxlReset).toBe(0);
  });

  it("refuses a device that is not CXL Reset capable", async () => {
    const { ctx, sim } = rig({ device: { cxlResetCapable: false } });
    const err = await rejection(operations.reset(ctx, { bdf: DEV, method: "cxl" }));
    expect(err.details).toMatchObject({ reason: "cxl-reset-unsupported", field: "cxlResetCapable" });
    expect(sim.counters(DEV).cxlReset).toBe(0);
  });

  it("cxl-reset-stuck: reset-timeout after the deadline and one more read; Disable Caching cleared", async () => {
    const { ctx, sim, rec } = rig({ device: { ...cachingDevice, cxlResetTimeout: 2 } }); // declared 1 s
    await operations.quiesce(ctx, { bdf: DEV, scope: "full" });
    expect((await sim.configRead(DEV, CONTROL2, 2)) & DISABLE_CACHING).toBe(DISABLE_CACHING);
    sim.faults.set(DEV, { name: "cxl-reset-stuck" });
    rec.clear();
    const err = await rejection(operations.reset(ctx, { bdf: DEV, method: "cxl" }));
    expect(err.kind).toBe("reset-timeout");
    expect(err.details).toMatchObject({ register: "dvsec.status2", deadlineMs: 1000 });
    const t0 = rec.log.find((a) => a.op === "configWrite" && a.value & INITIATE_RESET)!.t;
    const statusReads = rec.log.filter((a) => a.op === "configRead" && a.offset === STATUS2);
    expect(statusReads.at(-1)!.t).toBeGreaterThanOrEqual(t0 + 1000);
    // Polled about every 20 ms, not in a tight loop.
    expect(statusReads.length).toBeLessThanOrEqual(Math.ceil(900 / 20) + 2);
    expect((await sim.configRead(DEV, CONTROL2, 2)) & DISABLE_CACHING).toBe(0);
  });

  it("cxl-reset-error: reset-error naming Status2; Disable Caching cleared", async () => {
    const { ctx, sim } = rig({ device: cachingDevice });
    await operations.quiesce(ctx, { bdf: DEV, scope: "full" });
    sim.faults.set(DEV, { name: "cxl-reset-error" });
    const err = await rejection(operations.reset(ctx, { bdf: DEV, method: "cxl" }));
    expect(err.kind).toBe("reset-error");
    expect(err.details.register).toBe("dvsec.status2");
    expect(Number(err.details.value) & 0x4).toBe(0x4);
    expect((await sim.configRead(DEV, CONTROL2, 2)) & DISABLE_CACHING).toBe(0);
  });

  it("reserved CXL Reset Timeout encodings: 100 s deadline and an event saying so", async () => {
    const { ctx, events } = rig({ device: { cxlResetTimeout: 6 } });
    const r = await operations.reset(ctx, { bdf: DEV, method: "cxl" });
    expect(r.details).toMatchObject({ timeoutReserved: true, deadlineMs: 100_000 });
    expect(events.find((e) => e.kind === "reset.timeout-reserved")?.data).toMatchObject({
      code: 6,
      usingMs: 100_000,
    });
    const p = await operations.probe(ctx, { bdf: DEV });
    expect(p.cxl).toMatchObject({ cxlResetTimeoutMs: 100_000, cxlResetTimeoutReserved: true });
  });
});

describe("CXL Reset of a multi-function device", () => {
  it("is issued on function 0, wipes every function's decoders; each function restores from its image", async () => {
    const fn1 = "0000:01:00.1";
    const { ctx, sim, rec } = rig({
      device: {
        functions: [{ fn: 1, firmware: { decoders: [{ base: 0x2_0000_0000, size: 0x1000_0000 }] } }],
      },
    });
    const images = [await operations.save(ctx, { bdf: DEV }), await operations.save(ctx, { bdf: fn1 })];
    expect(images[1]!.identity.functions).toEqual([DEV, fn1]);
    const r = await operations.reset(ctx, { bdf: fn1, method: "cxl" });
    expect(r.target).toBe(DEV);
    expect(
      rec
        .writes()
        .filter((w) => w.value & INITIATE_RESET)
        .map((w) => w.bdf),
    ).toEqual([DEV]);
    expect((await readDecoder(sim, 0, DEV)).committed).toBe(false);
    expect((await readDecoder(sim, 0, fn1)).committed).toBe(false);
    for (const image of images) {
      const bdf = image.identity.bdf;
      await operations.restore(ctx, { bdf, scope: "full", image });
      expect((await operations.verify(ctx, { bdf, scope: "full", image })).passed).toBe(true);
    }
    const d = await readDecoder(sim, 0, fn1);
    expect([d.committed, d.base]).toEqual([true, 0x2_0000_0000n]);
  });
});

describe("quiesce full: cache write-back", () => {
  it("cache-invalid-stuck: cache-flush-timeout; Disable Caching and Bus Master back as they were", async () => {
    const { ctx, sim, rec } = rig({ device: cachingDevice });
    sim.faults.set(DEV, { name: "cache-invalid-stuck" });
    const err = await rejection(operations.quiesce(ctx, { bdf: DEV, scope: "full" }));
    expect(err.kind).toBe("cache-flush-timeout");
    expect(err.details).toMatchObject({ register: "dvsec.status2", timeoutMs: 100 });
    expect((await sim.configRead(DEV, CONTROL2, 2)) & DISABLE_CACHING).toBe(0);
    expect((await sim.configRead(DEV, 4, 2)) & 0x4).toBe(0x4);
    // Polled about every 100 µs for 100 ms.
    const polls = rec.log.filter((a) => a.op === "configRead" && a.offset === STATUS2).length;
    expect(polls).toBeGreaterThan(500);
    expect(polls).toBeLessThanOrEqual(1002);
  });

  it("a device with caching off is only taken off the bus", async () => {
    const { ctx, sim, rec } = rig();
    const q = await operations.quiesce(ctx, { bdf: DEV, scope: "full" });
    expect(q.cache).toBe("not-needed");
    expect(rec.writes().some((w) => w.offset === CONTROL2)).toBe(false);
    expect((await sim.configRead(DEV, 4, 2)) & 0x4).toBe(0);
  });
});

describe("reset with quiesce (one operation)", () => {
  it("quiesces first (Bus Master off, cache written back), then resets; the result carries the quiesce", async () => {
    const { ctx, sim, events } = rig({ device: cachingDevice });
    await operations.save(ctx, { bdf: DEV });
    const r = await operations.reset(ctx, { bdf: DEV, method: "cxl", quiesce: { scope: "full" } });
    expect(r.quiesce).toMatchObject({ cache: "flushed", wbInvInitiated: true, busMasterWas: true });
    expect(sim.counters(DEV).cacheFlushes).toBe(1);
    expect(sim.counters(DEV).cxlReset).toBe(1);
    const kinds = events.map((e) => e.kind);
    expect(kinds.indexOf("quiesce.bus-master-off")).toBeGreaterThan(-1);
    expect(kinds.indexOf("quiesce.completed")).toBeLessThan(kinds.indexOf("reset.started"));
    expect((await readDecoder(sim, 0)).committed).toBe(false);
  });

  it("a quiesce that fails issues no reset and leaves the device as it was", async () => {
    const { ctx, sim, events } = rig({ device: cachingDevice });
    sim.faults.set(DEV, { name: "cache-invalid-stuck" });
    const err = await rejection(
      operations.reset(ctx, { bdf: DEV, method: "cxl", quiesce: { scope: "full" } }),
    );
    expect(err.kind).toBe("cache-flush-timeout");
    expect(sim.counters(DEV).cxlReset).toBe(0);
    expect(events.map((e) => e.kind)).not.toContain("reset.started");
    expect((await sim.configRead(DEV, CONTROL2, 2)) & DISABLE_CACHING).toBe(0);
    expect((await sim.configRead(DEV, 4, 2)) & 0x4).toBe(0x4);
    expect((await readDecoder(sim, 0)).committed).toBe(true);
  });
});
