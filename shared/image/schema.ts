// The image: everything a restore needs and a verify compares, saved before any destructive step
// (reset-rules.md "The image"). Versioned and self-describing: raw register values (the truth a restore
// writes back) beside their decoded fields (for humans and diffs). The zod schema is the type and the
// validator; objects are strict, so an unknown key fails instead of escaping the checksum.
import { z } from "zod";
import { CxlrcError } from "../errors.ts";
import { BDF_RE } from "../hw/backend.ts";
import { verifyImageChecksum } from "./checksum.ts";

export const IMAGE_VERSION = 1;

export const Hex = z.string().regex(/^0x[0-9a-f]+$/, 'lowercase hex "0x…"');
const Bdf = z.string().regex(BDF_RE, 'a PCI address "DDDD:BB:DD.F" in lowercase hex');
const Offset = z.number().int().nonnegative();

/** A register as saved: raw value plus one key per field (decodeRegister's output). */
export const RegisterSnapshot = z.object({ raw: Hex }).catchall(z.union([z.boolean(), z.number()]));
export type RegisterSnapshot = z.infer<typeof RegisterSnapshot>;
const Registers = z.record(z.string(), RegisterSnapshot);

export const ImageIdentity = z.strictObject({
  host: z.string().min(1),
  bdf: Bdf,
  vendorId: z.number().int().min(0).max(0xffff),
  deviceId: z.number().int().min(0).max(0xffff),
  classCode: z.number().int().min(0).max(0xffffff),
  /** Device Serial Number (ext cap id 3), 16 hex digits, or null. */
  serial: Hex.nullable(),
  /** Every function of the device (same bus and device number), this one included. */
  functions: z.array(Bdf).min(1),
});

/** PCI config state as the kernel's pci_save_state keeps it. */
export const ImagePci = z.strictObject({
  /** Config dwords 0x00..0x3c as read. */
  header: z.array(Hex).length(16),
  /** Offset of the PCI Express capability, or null. */
  pcieCapOffset: Offset.nullable(),
  /** PCIE_SAVED registers (devCtl, linkCtl, slotCtl, rootCtl, devCtl2, linkCtl2) by name. */
  pcie: Registers,
});

export const ImageDecoder = z.strictObject({
  index: z.number().int().min(0).max(31),
  /** baseLow, baseHigh, sizeLow, sizeHigh, control, dpaSkipLow, dpaSkipHigh. */
  registers: Registers,
});
export type ImageDecoder = z.infer<typeof ImageDecoder>;

export const ImageHdm = z.strictObject({
  /** Offset of the HDM Decoder capability from the component block start. */
  capabilityOffset: Offset,
  capability: RegisterSnapshot,
  decoderCount: z.number().int().min(1).max(32),
  globalControl: RegisterSnapshot,
  decoders: z.array(ImageDecoder),
});

export const ImageCxl = z.strictObject({
  /** DVSEC id 0: location and every register (capability, control, control2, status2, lock, ranges…). */
  dvsec: z.strictObject({
    offset: Offset,
    revision: z.number().int().min(0).max(15),
    length: Offset,
    registers: Registers,
  }),
  registerLocator: z
    .strictObject({
      offset: Offset,
      blocks: z.array(
        z.strictObject({ bir: z.number().int().min(0).max(7), blockId: z.number().int(), offset: Hex }),
      ),
    })
    .nullable(),
  /** The 64 KiB component register block: BAR index and offset in the BAR. */
  component: z.strictObject({ bar: z.number().int().min(0).max(5), offset: Offset }).nullable(),
  hdm: ImageHdm.nullable(),
  /** DVSEC Lock CONFIG_LOCK as saved (restored last when set). */
  configLock: z.boolean(),
});

/**
 * The driver the kernel had bound when the image was taken, handed over for the reset (issue #17): the
 * config space and DVSEC were read under it (as the driver had the device: Mem_Enable included), the HDM
 * decoders from the BAR once the driver let go of it (`hdmSource`). Absent when no driver was bound.
 */
export const ImageDriver = z.strictObject({
  name: z.string().min(1).max(64),
  /** driver_override as found (null: none), put back with the driver. */
  override: z.string().min(1).max(64).nullable(),
  /** Where the HDM decoder registers were read: the BAR under the driver, or after the unbind. */
  hdmSource: z.enum(["bar-under-driver", "bar-after-unbind"]),
  /** Config-space registers that read differently after the unbind than under the driver (e.g. Mem_Enable). */
  changedByUnbind: z.array(z.string()),
  /**
   * Their values after the unbind ("dvsec.control", "pci.command" → raw): the device as the driver left it.
   * The restore puts these back, not the driver's (cxl_pci refuses HDM operation when it finds Mem_Enable set
   * at probe: it takes it for firmware's); the driver sets its own again when it is bound, and the hand-back
   * verifies the image with the driver in place.
   */
  unbound: z.record(z.string(), Hex).optional(),
  /**
   * The kernel's view of the endpoint decoders under the driver (/sys/bus/cxl), one line each, and where it
   * disagreed with the BAR's registers read after the unbind. Absent when the backend has no such view.
   */
  kernelView: z
    .strictObject({
      /** The kernel's endpoint port of the device then (null: it had none, e.g. its probe had failed). */
      endpoint: z.string().min(1).max(64).nullable().optional(),
      decoders: z.array(z.string()),
      differences: z.array(z.string()),
    })
    .optional(),
});
export type ImageDriver = z.infer<typeof ImageDriver>;

export const ImageSchema = z.strictObject({
  version: z.literal(IMAGE_VERSION),
  identity: ImageIdentity,
  pci: ImagePci,
  /** null for a function without DVSEC id 0. */
  cxl: ImageCxl.nullable(),
  driver: ImageDriver.optional(),
  /** Wall-clock time the save finished, ISO 8601. */
  takenAt: z.iso.datetime(),
  /** How long the save took on the backend's clock. */
  durationMs: z.number().nonnegative(),
  agentVersion: z.string().min(1),
  /** "sha256:" + hex over the canonical JSON of everything but this key (see checksum.ts). */
  checksum: z.string().regex(/^sha256:[0-9a-f]{64}$/, '"sha256:" and 64 hex digits'),
});
export type Image = z.infer<typeof ImageSchema>;
export type ImageBody = Omit<Image, "checksum">;
export type ImageCxl = z.infer<typeof ImageCxl>;
export type ImageHdm = z.infer<typeof ImageHdm>;

function pathOf(path: readonly PropertyKey[]): string {
  return path
    .map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`))
    .join("")
    .replace(/^\./, "");
}

/** Validate an image (schema then checksum); errors are "bad-input" naming the path of the bad key. */
export function parseImage(input: unknown): Image {
  const r = ImageSchema.safeParse(input);
  if (!r.success) {
    const first = r.error.issues[0];
    const path = first ? pathOf(first.path) : "";
    const all = r.error.issues.map((i) => `image${i.path.length ? "." : ""}${pathOf(i.path)}: ${i.message}`);
    throw new CxlrcError("bad-input", `invalid image: ${all.join("; ")}`, {
      path: `image.${path}`,
      issues: all,
    });
  }
  if (!verifyImageChecksum(r.data)) {
    throw new CxlrcError("bad-input", "image checksum does not match its contents (corrupted or edited)", {
      path: "image.checksum",
      value: r.data.checksum,
    });
  }
  return r.data;
}
