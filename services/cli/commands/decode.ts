// `cxlrc decode FILE [--json] [--component FILE2] [--all | --device BDF]`: decode a config space dump
// (binary or lspci -x/-xxx/-xxxx hex) and optionally a component register block. Read-only, offline.
import { type DecodedComponentBlock, decodeComponentBlock } from "../../../shared/cxl/component.ts";
import { type DecodedConfig, decodeConfigSpace } from "../../../shared/cxl/decode.ts";
import { type DumpDevice, parseDump } from "../../../shared/cxl/dump.ts";
import { formatHuman } from "../../../shared/cxl/format.ts";
import { CxlrcError, isCxlrcError } from "../../../shared/errors.ts";
import { parseFlags } from "../args.ts";
import { COMMANDS } from "../command-table.ts";
import { EXIT, UsageError } from "../exit.ts";
import { readFileBytes } from "../files.ts";

export const usage = `Usage: cxlrc decode FILE [--json] [--component FILE2] [--all | --device BDF]

Decode a PCI config space: the CXL DVSECs (PCIe DVSEC for CXL Devices, Register Locator, port
extensions), the capability lists and the FLR capability.

FILE is a raw binary config space (64, 256 or 4096 bytes, e.g. /sys/bus/pci/devices/*/config) or an
lspci -x / -xxx / -xxxx hex dump; "-" reads standard input. A dump holding several devices decodes
the first unless --all or --device is given.

Options:
  --json              one JSON object (with --all: an array of objects)
  --component FILE2   also decode a CXL component register block (the 64 KiB block the Register
                      Locator names): the CXL.cache/mem capability array and the HDM decoders
  --all               decode every device in the dump
  --device BDF        decode the device with this address (e.g. 0d:00.0 or 0000:0d:00.0)
  -h, --help          this text

Exit codes: 0 decoded, 2 bad input (missing or unreadable file, garbage, short dump, a config space
that cannot be decoded).`;

async function readInput(file: string): Promise<Uint8Array> {
  if (file !== "-") return readFileBytes(file);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}

/** Re-word a decoder error as bad input about the named file (exit 2, one line). */
function aboutFile<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isCxlrcError(e) && (e.kind === "bad-input" || e.kind === "decode")) {
      throw new CxlrcError("bad-input", `${file}: ${e.message}`, e.details);
    }
    throw e;
  }
}

/** The address in a sysfs path (…/0000:0d:00.0/config), for binary input that carries none. */
function bdfFromPath(file: string): string | null {
  const parts = file.split("/");
  const dir = parts.length >= 2 ? parts[parts.length - 2]! : "";
  return /^[0-9a-f]{4,6}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i.test(dir) ? dir : null;
}

function sameBdf(a: string, b: string): boolean {
  const norm = (s: string) => (s.split(":").length === 2 ? `0000:${s}` : s).toLowerCase();
  return norm(a) === norm(b);
}

function pick(devices: DumpDevice[], file: string, all: boolean, bdf: string | undefined): DumpDevice[] {
  if (bdf !== undefined) {
    const found = devices.filter((d) => d.bdf !== null && sameBdf(d.bdf, bdf));
    if (found.length === 0) {
      const have = devices.map((d) => d.bdf ?? "(no address)").join(", ");
      throw new CxlrcError("bad-input", `${file}: no device ${bdf} in the dump (it holds ${have})`);
    }
    return found;
  }
  return all ? devices : devices.slice(0, 1);
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("decode", argv, COMMANDS.decode.options);
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? "missing FILE (see cxlrc decode --help)" : "expected one FILE",
    );
  }
  if (values.all && values.device !== undefined)
    throw new UsageError("--all and --device exclude each other");
  const file = positionals[0]!;

  const input = await readInput(file);
  const devices = aboutFile(file, () => parseDump(input));
  const chosen = pick(devices, file, values.all === true, values.device);
  const decoded: DecodedConfig[] = chosen.map((d) =>
    aboutFile(file, () => decodeConfigSpace(d.bytes, { bdf: d.bdf ?? bdfFromPath(file) })),
  );

  let component: DecodedComponentBlock | null = null;
  if (values.component !== undefined) {
    const compFile = values.component;
    const bytes = await readInput(compFile);
    component = aboutFile(compFile, () => decodeComponentBlock(bytes));
  }

  if (values.json) {
    const objs = decoded.map((d, i) => (component && i === 0 ? { ...d, component } : d));
    const out = values.all ? objs : objs[0];
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    process.stdout.write(decoded.map((d, i) => formatHuman(d, i === 0 ? component : null)).join("\n"));
  }
  return EXIT.ok;
}
