// Image checksum: sha256 over a canonical JSON (keys sorted at every level, no whitespace) of the image
// without its `checksum` key, so key order and formatting in transit do not matter, content does.
import { createHash } from "node:crypto";
import type { Image, ImageBody } from "./schema.ts";

/** Code-unit order, as Array.prototype.sort without a comparator, without converting keys again. */
const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new TypeError("non-finite number in image");
      return JSON.stringify(value);
    case "bigint":
      throw new TypeError("bigint in image: store 64-bit values as hex strings");
    case "object": {
      if (value === null) return "null";
      // Built with loops: the image is checksummed on every save (this runs once per key and element).
      if (Array.isArray(value)) {
        let s = "[";
        for (let i = 0; i < value.length; i++) s += (i > 0 ? "," : "") + canonicalJson(value[i]);
        return `${s}]`;
      }
      const obj = value as Record<string, unknown>;
      let s = "";
      for (const k of Object.keys(obj).sort(byCodeUnit)) {
        const v = obj[k];
        if (v !== undefined) s += `${s.length > 0 ? "," : ""}${JSON.stringify(k)}:${canonicalJson(v)}`;
      }
      return `{${s}}`;
    }
    default:
      // undefined, functions, symbols: as JSON.stringify in an array.
      return JSON.stringify(value) ?? "null";
  }
}

export function computeImageChecksum(body: ImageBody | Image): string {
  const { checksum: _drop, ...rest } = body as Image;
  return `sha256:${createHash("sha256").update(canonicalJson(rest)).digest("hex")}`;
}

/** The body with its checksum attached. */
export function sealImage(body: ImageBody): Image {
  return { ...body, checksum: computeImageChecksum(body) };
}

/** True when the stored checksum matches the image's contents. */
export function verifyImageChecksum(image: Image): boolean {
  return typeof image.checksum === "string" && image.checksum === computeImageChecksum(image);
}
