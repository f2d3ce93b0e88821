// Image checksum: sha256 over a canonical JSON (keys sorted at every level, no whitespace) of the image
// without its `checksum` key, so key order and formatting in transit do not matter, content does.
import { createHash } from "node:crypto";
import type { Image, ImageBody } from "./schema.ts";

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value))
      throw new TypeError("non-finite number in image");
    if (typeof value === "bigint") throw new TypeError("bigint in image: store 64-bit values as hex strings");
    return JSON.stringify(value) ?? "null";
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
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
