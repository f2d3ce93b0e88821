// `cxlrc image show HOST BDF [--verified] [--json]`: the last saved image of a function, or its last known
// good image (the last one a reset verified on the device), decoded; a line says which one it is.

import { clientOn } from "../../../client/index.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { ImageSchema } from "../../../shared/image/schema.ts";
import { checkBdfArg, checkHostArg, parseFlags, takePositionals, takeTarget } from "../args.ts";
import { busTarget, withBus } from "../bus.ts";
import { COMMANDS } from "../command-table.ts";
import { EXIT } from "../exit.ts";
import { coloursFor } from "../format/colour.ts";
import { formatImage } from "../format/image.ts";
import { BUS_USAGE } from "../help.ts";

export const usage = `Usage: cxlrc image show HOST BDF [--verified] [--json]

Show the last image saved for a function: what the coordinator restores from and verifies against during a
reset. With --verified, its last known good image instead: the last image a reset verified on the device,
which \`cxlrc release --restore\` puts back. A line under the title says which one is shown and whether
the last saved image is also the last known good one. The image holds the device identity, the PCI config
state, the CXL DVSEC registers (raw and decoded), the Register Locator, HDM global control and every
decoder, CONFIG_LOCK, when and how fast it was taken, and its checksum.

Options:
  --verified     the last known good (verified) image instead of the last saved one
  --json         the coordinator's reply as JSON (both images)
  -h, --help     this text

${BUS_USAGE}

Exit codes: 0 shown, 2 bad input (also: no image stored for that function), 3 bus or coordinator
unavailable.`;

type Json = Record<string, unknown>;

/** The image inside the reply (the reply is the stored record { image, savedAt, requestId, ... }). */
function unwrap(reply: unknown): { image: unknown; meta: Json } {
  const r = (reply && typeof reply === "object" ? reply : {}) as Json;
  const rec = (r.record && typeof r.record === "object" ? r.record : r) as Json;
  if (rec.identity) return { image: rec, meta: {} };
  return {
    image: rec.image,
    meta: { ...rec, ...(typeof r.revision === "number" ? { revision: r.revision } : {}) },
  };
}

/** Which image is shown, and how it relates to the other one. */
function whichLine(r: Json, good: Json | null, showVerified: boolean): string {
  const v = (good?.verified && typeof good.verified === "object" ? good.verified : {}) as Json;
  const goodText = good
    ? `verified ${String(v.at ?? "?")} by request ${String(v.requestId ?? good.requestId ?? "-")}`
    : "";
  if (showVerified) {
    return `  shown: the last known good image (${goodText}); the last saved image is revision ${String(r.revision ?? "?")}${r.verified === true ? " (the same image)" : ""}`;
  }
  if (r.verified === true)
    return `  shown: the last saved image, which is also the last known good one (${goodText})`;
  if (good) {
    return `  shown: the last saved image, NOT verified; the last known good one is revision ${String(good.revision ?? "?")} (${goodText}; --verified shows it)`;
  }
  return "  shown: the last saved image; no image of this function has been verified yet";
}

export async function run(argv: string[]): Promise<number> {
  const spec = COMMANDS.image;
  const { rest } = takeTarget("image", argv, Object.keys(spec.targets), spec.options);
  const { values, positionals } = parseFlags("image", rest, spec.options);
  const [h, b] = takePositionals("image", positionals, ["HOST", "BDF"]);
  const host = checkHostArg(h!);
  const bdf = checkBdfArg(b!);
  return withBus("image", busTarget(values), async (nc) => {
    const reply = await clientOn(nc, { name: "cxlrc image" }).image(host, bdf);
    if (reply === null || reply === undefined) {
      throw new CxlrcError(
        "device-absent",
        `no image saved for ${host} ${bdf} (it was never reset by cxlrc)`,
      );
    }
    if (values.json) {
      process.stdout.write(`${JSON.stringify(reply, null, 2)}\n`);
      return EXIT.ok;
    }
    const r = (reply && typeof reply === "object" ? reply : {}) as Json;
    const good = (
      r.lastKnownGood && typeof r.lastKnownGood === "object" ? r.lastKnownGood : null
    ) as Json | null;
    if (values.verified && !good) {
      throw new CxlrcError(
        "bad-input",
        `no verified image of ${host} ${bdf}: no reset of it has been verified yet (the last saved image is revision ${String(r.revision ?? "?")})`,
      );
    }
    const { image, meta } = values.verified ? unwrap(good) : unwrap(reply);
    const which = whichLine(r, good, values.verified === true);
    const parsed = ImageSchema.safeParse(image);
    if (!parsed.success) {
      process.stdout.write(`${JSON.stringify(reply, null, 2)}\n`);
      process.stderr.write("cxlrc image: the stored image does not match this version's schema; shown raw\n");
      return EXIT.ok;
    }
    const text = formatImage(parsed.data, coloursFor(process.stdout), {
      ...(typeof meta.savedAt === "string" ? { savedAt: meta.savedAt } : {}),
      ...(typeof meta.requestId === "string" ? { requestId: meta.requestId } : {}),
      ...(typeof meta.revision === "number" ? { revision: meta.revision } : {}),
    }).split("\n");
    text.splice(1, 0, which);
    process.stdout.write(`${text.join("\n")}\n`);
    return EXIT.ok;
  });
}
