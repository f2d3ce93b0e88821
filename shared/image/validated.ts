// Images this process has already validated, by checksum. An image comes back unchanged for restore and
// verify (the one save produced, through the coordinator's store): it is recognised by comparing it value by
// value with the copy kept under its checksum, which costs a walk instead of the schema and a SHA-256 over
// its canonical JSON. Anything that differs in any value or key is validated in full (parseImage), so a
// tampered image with a valid-looking checksum is still refused.
import { remember } from "../remember.ts";
import { type Image, parseImage } from "./schema.ts";

/**
 * Default bound on images kept (5–10 KiB each; least recently used dropped first). Every save makes a new
 * image and one is needed only from its save to its verify: enough for a host's devices resetting at once.
 */
export const VALIDATED_IMAGES_KEPT = 256;

export class ValidatedImages {
  private readonly byChecksum = new Map<string, Image>();
  private hitCount = 0;
  private missCount = 0;
  /** Capacity reserved by the agents running in this process (reserve()). */
  private reserved = 0;

  constructor(private readonly base = VALIDATED_IMAGES_KEPT) {}

  /** Images kept at most: the base, or what the agents of this process reserved together if more. */
  get capacity(): number {
    return Math.max(this.base, this.reserved);
  }

  /**
   * Room for `n` more images while the caller runs (an agent: VALIDATED_IMAGES_KEPT for its host's devices).
   * A process running many agents (a simulated fleet, tests) keeps enough for each host's resets at once, as
   * each agent in its own process would; returns the release.
   */
  reserve(n: number): () => void {
    this.reserved += n;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= n;
    };
  }

  /**
   * The image `input` is, as parseImage returns it (a new object, the caller's own): a copy of the kept
   * image when `input` equals it value for value, else parseImage(input) (which throws "bad-input" naming
   * the path), then kept.
   */
  parse(input: unknown): Image {
    const checksum = (input as { checksum?: unknown } | null)?.checksum;
    const kept = typeof checksum === "string" ? this.byChecksum.get(checksum) : undefined;
    if (kept && sameJson(input, kept)) {
      this.hitCount++;
      this.touch(kept);
      // The values compared, not `input` itself: nothing can change between this check and its use.
      return copyJson(kept) as Image;
    }
    this.missCount++;
    const image = parseImage(input);
    this.remember(image);
    return image;
  }

  /**
   * Keep a copy of `image`, which the caller has just checked or sealed (schema-valid, checksum matching).
   * The copy is the cache's own: editing `image` afterwards changes nothing here.
   */
  remember(image: Image): void {
    this.touch(copyJson(image) as Image);
  }

  stats(): { kept: number; hits: number; misses: number } {
    return { kept: this.byChecksum.size, hits: this.hitCount, misses: this.missCount };
  }

  private touch(image: Image): void {
    remember(this.byChecksum, image.checksum, image, this.capacity);
  }
}

/** The process's images (content-addressed: sharing them between agents in one process is safe). */
export const validatedImages = new ValidatedImages();

/**
 * Equal as JSON data: same primitives (===), arrays of the same length, objects with the same own keys.
 * Anything else (a NaN, an extra or missing key, a key whose value is undefined) counts as different.
 */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  for (const k of ka) if (!Object.hasOwn(rb, k) || !sameJson(ra[k], rb[k])) return false;
  return true;
}

/** A deep copy of JSON data (what a schema-valid image is: plain objects, arrays, primitives). */
function copyJson(value: unknown): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return value.map(copyJson);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = copyJson(v);
  return out;
}
