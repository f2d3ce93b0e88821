// State snapshots of a device (config space + component block): written as binary files and decoded with
// the project's decoders (shared/cxl/decode.ts, shared/cxl/component.ts).
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeComponentBlock } from "../../shared/cxl/component.ts";
import { decodeConfigSpace } from "../../shared/cxl/decode.ts";
import { DEV, PORT, rig } from "./helpers.ts";

describe("device snapshot", () => {
  it("config space (4 KiB) written as a binary decodes as a CXL Type-2 device", () => {
    const { h } = rig();
    const snap = h.snapshot(DEV);
    const file = join(mkdtempSync(join(tmpdir(), "snap-")), "config.bin");
    writeFileSync(file, snap.config);
    const d = decodeConfigSpace(new Uint8Array(readFileSync(file)), { bdf: DEV });
    expect(d.configSize).toBe(4096);
    expect(d.flrCapable).toBe(true);
    expect(d.cxlDevice).not.toBeNull();
    expect(d.registerLocator).not.toBeNull();
    expect(d.cxlDevice).toMatchObject({
      capability: { cacheCapable: true, memCapable: true, cxlResetCapable: true, cxlResetTimeoutMs: 100 },
      control: { ioEnable: true, memEnable: true },
    });
  });

  it("the component block (64 KiB) decodes: HDM capability with 2 decoders, decoder 0 committed", () => {
    const { h } = rig();
    const file = join(mkdtempSync(join(tmpdir(), "snap-")), "component.bin");
    writeFileSync(file, h.snapshot(DEV).component);
    const block = decodeComponentBlock(new Uint8Array(readFileSync(file)));
    expect(block.hdm).not.toBeNull();
    expect(block.hdm!.decoderCount).toBe(2);
    expect(block.hdm!.globalControl.hdmDecoderEnable).toBe(true);
    expect(block.hdm!.decoders[0]).toMatchObject({
      base: "0x100000000",
      size: "0x10000000",
      control: { commit: true, committed: true, errorNotCommitted: false },
    });
    expect(block.hdm!.decoders[1]).toMatchObject({ size: "0x0", control: { committed: false } });
  });

  it("a bridge snapshot decodes with its CXL port DVSEC", () => {
    const { h } = rig();
    const d = decodeConfigSpace(h.snapshot(PORT).config, { bdf: PORT });
    expect(d.headerType).toBe(1);
    expect(d.portExtensions).not.toBeNull();
  });

  it("a snapshot is a copy: later writes do not change it", async () => {
    const { h } = rig();
    const snap = h.snapshot(DEV);
    await h.configWrite(DEV, 0x04, 2, 0);
    expect(snap.config[0x04]).not.toBe(0);
  });
});
