import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { computeImageChecksum, sealImage, verifyImageChecksum } from "../../shared/image/checksum.ts";
import { ImageSchema, parseImage } from "../../shared/image/schema.ts";
import { DEV, rig } from "./fixtures.ts";

async function catchErr(p: () => unknown): Promise<CxlrcError> {
  try {
    await p();
  } catch (e) {
    if (e instanceof CxlrcError) return e;
    throw e;
  }
  throw new Error("expected a CxlrcError");
}

describe("save", () => {
  it("produces a schema-valid, checksummed image of the device's PCI and CXL state", async () => {
    const { ctx, sim } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    expect(ImageSchema.safeParse(image).success).toBe(true);
    expect(verifyImageChecksum(image)).toBe(true);
    expect(image.version).toBe(1);
    expect(image.identity).toMatchObject({ host: sim.name, bdf: DEV, vendorId: 0x8086, functions: [DEV] });
    // The saved Command equals what the device reads now.
    const cmd = await sim.configRead(DEV, 4, 2);
    expect(Number(image.pci.header[1]) & 0xffff).toBe(cmd);
    const hdm = image.cxl?.hdm;
    expect(hdm?.decoderCount).toBe(2);
    expect(hdm?.decoders[0]?.registers.control).toMatchObject({ committed: true });
    expect(hdm?.decoders[0]?.registers.baseHigh?.raw).toBe("0x00000001");
    expect(image.cxl?.component).toEqual({ bar: 0, offset: 0x10000 });
    expect(image.cxl?.dvsec.registers.control2).toBeDefined();
    // Travels as JSON unchanged.
    expect(parseImage(JSON.parse(JSON.stringify(image)))).toEqual(image);
  });

  it("detects tampering through the checksum", async () => {
    const { ctx } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    const tampered = structuredClone(image);
    tampered.cxl!.hdm!.decoders[0]!.registers.baseHigh!.raw = "0x00000002";
    expect(verifyImageChecksum(tampered)).toBe(false);
    const err = await catchErr(() => parseImage(tampered));
    expect(err.kind).toBe("bad-input");
    expect(err.details.path).toBe("image.checksum");
    // Key order does not matter, content does.
    const reordered = Object.fromEntries(Object.entries(image).reverse());
    expect(computeImageChecksum(reordered as typeof image)).toBe(image.checksum);
  });

  it("names the path of a schema error", async () => {
    const { ctx } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    const bad = structuredClone(image) as unknown as { identity: { bdf: string } };
    bad.identity.bdf = "01:00.0";
    const err = await catchErr(() => parseImage(bad));
    expect(err.kind).toBe("bad-input");
    expect(err.details.path).toBe("image.identity.bdf");
    const { checksum: _c, ...body } = image;
    const extra = sealImage({ ...body, version: 2 as 1 });
    expect((await catchErr(() => parseImage(extra))).details.path).toBe("image.version");
  });

  it("refuses to guess a reserved HDM decoder count", async () => {
    const { ctx, rec } = rig();
    // The HDM Capability register reads decoder count code 13 (reserved).
    rec.readHook = (a) =>
      a.op === "mmioRead" && a.offset === 0x10000 + 0x1100 ? (a.value & ~0xf) | 13 : a.value;
    const err = await catchErr(() => operations.save(ctx, { bdf: DEV }));
    expect(err.kind).toBe("decode");
    expect(err.details).toMatchObject({ register: "hdm.hdmCapability", code: 13 });
    expect(String(err.details.value)).toMatch(/d$/);
    const perr = await catchErr(() => operations.probe(ctx, { bdf: DEV }));
    expect(perr.kind).toBe("decode");
  });
});
