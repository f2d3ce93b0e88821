// `cxlrc image show HOST BDF [--json]`: the last saved image of a function (the device's last known good
// state, kept in JetStream KV after every reset), decoded.
import { subjects } from "../../../shared/bus/subjects.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { ImageSchema } from "../../../shared/image/schema.ts";
import { BUS_OPTIONS, checkBdfArg, checkHostArg, parseFlags, takePositionals } from "../args.ts";
import { control, resolveServer, withBus } from "../bus.ts";
import { EXIT, UsageError } from "../exit.ts";
import { coloursFor } from "../format/colour.ts";
import { formatImage } from "../format/image.ts";

export const usage = `Usage: cxlrc image show HOST BDF [--json]

Show the last image saved for a function: what the coordinator restores from and verifies against. The
image holds the device identity, the PCI config state, the CXL DVSEC registers (raw and decoded), the
Register Locator, HDM global control and every decoder, CONFIG_LOCK, when and how fast it was taken, and
its checksum.

Options:
  --json         the stored record as JSON
  --server URL   NATS server (default $CXLRC_NATS_URL or nats://127.0.0.1:4222)
  -h, --help     this text

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

export async function run(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action !== "show") {
    throw new UsageError(
      action === undefined
        ? "missing the action: show (see cxlrc image --help)"
        : `unknown action ${JSON.stringify(action)}: show`,
    );
  }
  const { values, positionals } = parseFlags("image", rest, { ...BUS_OPTIONS, json: { type: "boolean" } });
  const [h, b] = takePositionals("image", positionals, ["HOST", "BDF"]);
  const host = checkHostArg(h!);
  const bdf = checkBdfArg(b!);
  return withBus("image", resolveServer(values.server), async (nc) => {
    const reply = await control(nc, subjects.image, { host, bdf });
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
    const { image, meta } = unwrap(reply);
    const parsed = ImageSchema.safeParse(image);
    if (!parsed.success) {
      process.stdout.write(`${JSON.stringify(reply, null, 2)}\n`);
      process.stderr.write("cxlrc image: the stored image does not match this version's schema; shown raw\n");
      return EXIT.ok;
    }
    process.stdout.write(
      `${formatImage(parsed.data, coloursFor(process.stdout), {
        ...(typeof meta.savedAt === "string" ? { savedAt: meta.savedAt } : {}),
        ...(typeof meta.requestId === "string" ? { requestId: meta.requestId } : {}),
        ...(typeof meta.revision === "number" ? { revision: meta.revision } : {}),
      })}\n`,
    );
    return EXIT.ok;
  });
}
