// An image is validated once per content (shared/image/validated.ts): the image save made comes back for
// restore and verify without a second schema and checksum pass, and nothing that differs from it in any
// value gets through on the strength of a checksum it has seen before.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { canonicalJson, computeImageChecksum, sealImage } from "../../shared/image/checksum.ts";
import type { Image } from "../../shared/image/schema.ts";
import { ValidatedImages, validatedImages } from "../../shared/image/validated.ts";
import { DEV, rig } from "./fixtures.ts";
import { rejection } from "./helpers.ts";

/** The image as it travels (JSON text and back), like a restore request carries it. */
const overTheWire = (image: Image): Image => JSON.parse(JSON.stringify(image)) as Image;

async function saved() {
  const r = rig({ device: { firmware: { decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }] } } });
  const image = await operations.save(r.ctx, { bdf: DEV });
  return { ...r, image };
}

describe("validated images", () => {
  it("the saved image, back over the wire for restore and verify, is recognised without validating again", async () => {
    const { ctx, image } = await saved();
    const before = validatedImages.stats();
    await operations.restore(ctx, { bdf: DEV, scope: "full", image: overTheWire(image) });
    expect(
      (await operations.verify(ctx, { bdf: DEV, scope: "full", image: overTheWire(image) })).passed,
    ).toBe(true);
    const after = validatedImages.stats();
    expect(after.hits - before.hits).toBe(2);
    expect(after.misses - before.misses).toBe(0);
  });

  it("a tampered copy carrying the known checksum is refused, before any write", async () => {
    const { ctx, rec, image } = await saved();
    const bad = overTheWire(image);
    bad.cxl!.hdm!.decoders[0]!.registers.baseLow!.raw = "0x20000000";
    rec.clear();
    const err = await rejection(operations.restore(ctx, { bdf: DEV, scope: "full", image: bad }));
    expect(err.kind).toBe("bad-input");
    expect(err.details.path).toBe("image.checksum");
    expect(rec.writes()).toEqual([]);
    // An extra key, or a key whose value went missing, is a schema error as before.
    const extra = { ...overTheWire(image), note: "x" };
    expect((await rejection(operations.verify(ctx, { bdf: DEV, scope: "full", image: extra }))).kind).toBe(
      "bad-input",
    );
    const { takenAt: _t, ...missing } = overTheWire(image);
    const m = await rejection(operations.verify(ctx, { bdf: DEV, scope: "full", image: missing }));
    expect(m.details.path).toBe("image.takenAt");
  });

  it("editing the image object after save does not make the edit acceptable", async () => {
    const { ctx, image } = await saved();
    image.pci.header[4] = "0xdead0000";
    const err = await rejection(operations.restore(ctx, { bdf: DEV, scope: "full", image }));
    expect(err.kind).toBe("bad-input");
    expect(err.details.path).toBe("image.checksum");
  });

  it("an image of another function is refused even when it is known", async () => {
    const { ctx, image } = await saved();
    const err = await rejection(
      operations.verify(ctx, { bdf: "0000:01:00.1", scope: "io", image: overTheWire(image) }),
    );
    expect(err.details.path).toBe("image.identity.bdf");
  });

  it("keeps at most its capacity, the least recently used dropped first", async () => {
    const { image } = await saved();
    const { checksum: _c, ...body } = image;
    const variant = (n: number) => sealImage({ ...body, durationMs: n });
    const cache = new ValidatedImages(2);
    const [a, b, c] = [variant(1), variant(2), variant(3)];
    cache.parse(overTheWire(a));
    cache.parse(overTheWire(b));
    cache.parse(overTheWire(a)); // a is now the most recently used
    cache.parse(overTheWire(c)); // drops b
    expect(cache.stats()).toEqual({ kept: 2, hits: 1, misses: 3 });
    cache.parse(overTheWire(a));
    cache.parse(overTheWire(b));
    expect(cache.stats()).toEqual({ kept: 2, hits: 2, misses: 4 });
  });

  it("keeps room for each agent of the process (reserve), back to its base once they stop", async () => {
    const { image } = await saved();
    const { checksum: _c, ...body } = image;
    const variants = [1, 2, 3, 4].map((n) => sealImage({ ...body, durationMs: n }));
    const cache = new ValidatedImages(2);
    const releases = [cache.reserve(2), cache.reserve(2)];
    expect(cache.capacity).toBe(4);
    for (const v of variants) cache.parse(overTheWire(v));
    for (const v of variants) cache.parse(overTheWire(v));
    // Two agents' worth: all four saved images recognised when they come back.
    expect(cache.stats()).toEqual({ kept: 4, hits: 4, misses: 4 });
    for (const release of releases) release();
    releases[0]!(); // released once only
    expect(cache.capacity).toBe(2);
  });
});

describe("canonical JSON (the checksum's input)", () => {
  it("sorts keys at every level by code unit, drops undefined values, writes the rest as JSON.stringify", () => {
    const value = {
      b: [1, "two", null, true, { z: 1, a: -0 }],
      a: { é: "\u00e9\n", B: 2.5, "10": 0, "2": 1e21, gone: undefined },
      "": false,
    };
    expect(canonicalJson(value)).toBe(
      '{"":false,"a":{"10":0,"2":1e+21,"B":2.5,"é":"é\\n"},"b":[1,"two",null,true,{"a":0,"z":1}]}',
    );
    expect(() => canonicalJson({ x: Number.NaN })).toThrow(TypeError);
    expect(() => canonicalJson({ x: 1n })).toThrow(TypeError);
  });

  it("an image's checksum is the SHA-256 of that text without the checksum key", async () => {
    const { image } = await saved();
    const { checksum, ...body } = image;
    const hex = createHash("sha256").update(canonicalJson(body)).digest("hex");
    expect(checksum).toBe(`sha256:${hex}`);
    expect(computeImageChecksum(overTheWire(image))).toBe(checksum);
  });
});
