// HDM decoder commit rules (docs/cxl-registers.md "Commit rules"): each rule holds once and is violated once.
import { describe, expect, it } from "vitest";
import { encodeRegister } from "../../shared/cxl/regdef.ts";
import { HDM, HDM_DECODER } from "../../shared/cxl/registers.ts";
import { DEV, MiB256, regs, rig } from "./helpers.ts";

const ctl = (v: Record<string, boolean | number>) => encodeRegister(HDM_DECODER.control, v);
const COMMIT = ctl({ commit: true });

/** simpleHost: decoder 0 committed by firmware at 0x1_0000_0000, 256 MiB; decoder 1 free. */
async function setup(device = {}) {
  const { h, clock } = rig({ device, timings: { commitDelayMs: 1 } });
  return { h, clock, r: await regs(h, DEV) };
}

describe("HDM decoder commit", () => {
  it("Commit → Committed after commitDelayMs, not before", async () => {
    const { clock, r } = await setup();
    await r.program(1, 0x1_1000_0000n, MiB256);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    expect((await r.decoder(1)).committed).toBe(false);
    await clock.sleep(1);
    const d = await r.decoder(1);
    expect(d).toMatchObject({
      committed: true,
      errorNotCommitted: false,
      base: 0x1_1000_0000n,
      size: MiB256,
    });
  });

  it("HDM Decoder Enable clear in Global Control → Error Not Committed", async () => {
    const { clock, r } = await setup();
    await r.hdmWrite(HDM.globalControl, 0);
    await r.program(1, 0x1_1000_0000n, MiB256);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1);
    expect(await r.decoder(1)).toMatchObject({ committed: false, errorNotCommitted: true });
  });

  it("size zero → Error Not Committed", async () => {
    const { clock, r } = await setup();
    await r.program(1, 0x1_1000_0000n, 0n);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1);
    expect(await r.decoder(1)).toMatchObject({ committed: false, errorNotCommitted: true });
  });

  it("base and size are 256 MiB aligned by construction: bits 27:0 read zero", async () => {
    const { clock, r } = await setup();
    await r.program(1, 0x1_1800_0000n, 0x1800_0000n);
    const d = await r.decoder(1);
    expect(d.base).toBe(0x1_1000_0000n);
    expect(d.size).toBe(MiB256);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1);
    expect((await r.decoder(1)).committed).toBe(true);
  });

  it("in order: decoder 1 cannot commit while decoder 0 is not committed", async () => {
    const { clock, r } = await setup({ firmware: { decoders: [] } });
    await r.hdmWrite(HDM.globalControl, encodeRegister(HDM.globalControl, { hdmDecoderEnable: true }));
    await r.program(1, 0x1_1000_0000n, MiB256);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1);
    expect(await r.decoder(1)).toMatchObject({ committed: false, errorNotCommitted: true });
  });

  it("in order: decoder 1 cannot commit while decoder 0 is still committing", async () => {
    const { clock, r } = await setup({ firmware: { decoders: [] } });
    await r.hdmWrite(HDM.globalControl, encodeRegister(HDM.globalControl, { hdmDecoderEnable: true }));
    await r.program(0, 0x1_0000_0000n, MiB256);
    await r.program(1, 0x1_1000_0000n, MiB256);
    await r.decWrite(0, HDM_DECODER.control, COMMIT);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1);
    expect((await r.decoder(0)).committed).toBe(true);
    expect((await r.decoder(1)).errorNotCommitted).toBe(true);
  });

  it("a decoder's base must not be below the previous decoder's end", async () => {
    const { clock, r } = await setup();
    await r.program(1, 0x1_0000_0000n, MiB256); // overlaps decoder 0 (0x1_0000_0000 + 256 MiB)
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1);
    expect(await r.decoder(1)).toMatchObject({ committed: false, errorNotCommitted: true });
  });

  it("clearing Commit after an error clears Error Not Committed; a corrected decoder then commits", async () => {
    const { clock, r } = await setup();
    await r.program(1, 0x1_0000_0000n, MiB256);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1);
    await r.decWrite(1, HDM_DECODER.control, 0);
    expect(await r.decoder(1)).toMatchObject({ commit: false, errorNotCommitted: false });
    await r.program(1, 0x1_1000_0000n, MiB256);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1);
    expect((await r.decoder(1)).committed).toBe(true);
  });
});

describe("HDM decoder decommit and locks", () => {
  it("decommits in decreasing order only: clearing Commit on 0 while 1 is committed is ignored", async () => {
    const { clock, r } = await setup();
    await r.program(1, 0x1_1000_0000n, MiB256);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1);
    await r.decWrite(0, HDM_DECODER.control, 0);
    await clock.sleep(1);
    expect(await r.decoder(0)).toMatchObject({ commit: true, committed: true });
    await r.decWrite(1, HDM_DECODER.control, 0);
    await clock.sleep(1);
    await r.decWrite(0, HDM_DECODER.control, 0);
    await clock.sleep(1);
    expect((await r.decoder(1)).committed).toBe(false);
    expect((await r.decoder(0)).committed).toBe(false);
  });

  it("a committed decoder ignores writes to base, size and control fields (strict model)", async () => {
    const { r } = await setup();
    await r.decWrite(0, HDM_DECODER.baseHigh, 7);
    await r.decWrite(0, HDM_DECODER.sizeLow, 0x3000_0000);
    await r.decWrite(0, HDM_DECODER.control, ctl({ commit: true, interleaveWays: 1 }));
    const d = await r.decoder(0);
    expect(d).toMatchObject({ base: 0x1_0000_0000n, size: MiB256, ways: 0, committed: true });
  });

  it("Lock On Commit + Committed: read-only, Commit cannot be cleared, until a reset", async () => {
    const { clock, r } = await setup();
    await r.program(1, 0x1_1000_0000n, MiB256);
    await r.decWrite(1, HDM_DECODER.control, ctl({ commit: true, lockOnCommit: true }));
    await clock.sleep(1);
    expect(await r.decoder(1)).toMatchObject({ committed: true, lockOnCommit: true });
    await r.decWrite(1, HDM_DECODER.control, 0);
    await clock.sleep(1);
    await r.decWrite(1, HDM_DECODER.baseHigh, 9);
    expect(await r.decoder(1)).toMatchObject({ commit: true, committed: true, base: 0x1_1000_0000n });
  });

  it("an uncommitted decoder with Lock On Commit set is still writable", async () => {
    const { r } = await setup();
    await r.decWrite(1, HDM_DECODER.control, ctl({ lockOnCommit: true }));
    await r.decWrite(1, HDM_DECODER.baseHigh, 2);
    expect((await r.decoder(1)).base).toBe(0x2_0000_0000n);
  });
});
