// Fault injection: named faults, settable and clearable at run time per device. The schema validates chaos
// messages on the bus; the simulator consults the active faults at the points where each one bites.
import { z } from "zod";
import { HolderSchema } from "./fleet-schema.ts";

const Decoder = z.number().int().min(0).max(31);

export const FaultSpec = z.discriminatedUnion("name", [
  /** Committing decoder n reports Error Not Committed. */
  z.strictObject({ name: z.literal("commit-error"), decoder: Decoder }),
  /** Committing decoder n never completes (neither Committed nor Error Not Committed). */
  z.strictObject({ name: z.literal("commit-stuck"), decoder: Decoder }),
  /** CXL Reset never reports Complete or Error. */
  z.strictObject({ name: z.literal("cxl-reset-stuck") }),
  /** CXL Reset reports Reset Error (state untouched). */
  z.strictObject({ name: z.literal("cxl-reset-error") }),
  /** Cache Write Back and Invalidation never sets Cache Invalid. */
  z.strictObject({ name: z.literal("cache-invalid-stuck") }),
  /** FLR wrongly clears HDM decoders and DVSEC Control: a scope violation. */
  z.strictObject({ name: z.literal("flr-clears-hdm") }),
  /** After any reset the device stays not ready (all-ones) for `ms` instead of the configured window. */
  z.strictObject({ name: z.literal("long-not-ready"), ms: z.number().nonnegative() }),
  /** The device reads all-ones forever (surprise removal, dead link). */
  z.strictObject({ name: z.literal("gone") }),
  /**
   * Writes to the named register arrive with `bit` flipped (e.g. "decoder0.baseLow", bit 28). Register names
   * are `<block>.<register>`: pci, bridge, pcie, dvsec, port, hdm, decoder<n> (see SimHost.registerNames()).
   */
  z.strictObject({
    name: z.literal("bit-flip"),
    register: z.string().min(1),
    bit: z.number().int().min(0).max(31),
  }),
  /** Adds a holder of the device (driver in use, process, VFIO group…). */
  z.strictObject({ name: z.literal("holder"), kind: HolderSchema.shape.kind, detail: z.string().min(1) }),
  /** The host range of every committed decoder is online (in use by the OS). */
  z.strictObject({ name: z.literal("memory-online") }),
]);
export type FaultSpec = z.output<typeof FaultSpec>;
export type FaultName = FaultSpec["name"];

export interface FaultApi {
  /** Arm a fault (validated; a fault with the same identity replaces the old one). */
  set(bdf: string, fault: FaultSpec | unknown): void;
  /** Disarm one fault by name (every instance of it), or all faults of the device. */
  clear(bdf: string, name?: FaultName): void;
  list(bdf: string): FaultSpec[];
}

/** Two faults with the same identity replace each other: one commit-error per decoder, one bit-flip per register… */
export function faultKey(f: FaultSpec): string {
  switch (f.name) {
    case "commit-error":
    case "commit-stuck":
      return `${f.name}:${f.decoder}`;
    case "bit-flip":
      return `${f.name}:${f.register}:${f.bit}`;
    case "holder":
      return `${f.name}:${f.kind}:${f.detail}`;
    default:
      return f.name;
  }
}
