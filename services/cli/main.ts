// `cxlrc` entry: one binary, subcommands. Each subcommand lives in commands/<name>.ts and exports
// `run(argv): Promise<number>` (the exit code) and `usage` (its --help text).
import { describeError, isCxlrcError } from "../../shared/errors.ts";
import { EXIT, UsageError } from "./exit.ts";

interface Command {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<number>; usage: string }>;
}

const COMMANDS: Record<string, Command> = {
  demo: {
    summary: "start here: a whole cxlrc on this machine (bus, coordinator, simulated hosts), a mix of resets",
    load: () => import("./commands/demo.ts"),
  },
  reset: {
    summary: "reset a device (io: FLR; full: CXL Reset, SBR, VFIO) and optionally follow it to the end",
    load: () => import("./commands/reset.ts"),
  },
  plan: {
    summary: "dry run of a reset: scope, method, functions, gates, deadlines; touches nothing",
    load: () => import("./commands/plan.ts"),
  },
  status: {
    summary: "the fleet: devices per state, leases, the circuit breaker",
    load: () => import("./commands/status.ts"),
  },
  devices: {
    summary: "every device the coordinator knows: state, lease, scope violations, quarantine",
    load: () => import("./commands/devices.ts"),
  },
  image: {
    summary: "image show HOST BDF: the last saved image of a function, decoded",
    load: () => import("./commands/image.ts"),
  },
  release: {
    summary: "take a device out of quarantine",
    load: () => import("./commands/release.ts"),
  },
  watch: {
    summary: "follow the event stream live (or from --since), one line per event",
    load: () => import("./commands/watch.ts"),
  },
  serve: {
    summary: "run the coordinator or an agent (config file, CXLRC_* env, flags)",
    load: () => import("./commands/serve.ts"),
  },
  decode: {
    summary: "decode a config space dump (binary or lspci -x hex)",
    load: () => import("./commands/decode.ts"),
  },
  chaos: {
    summary: "run a chaos scenario (kill, pause, break anything mid-reset) and check that nothing was lost",
    load: () => import("./commands/chaos.ts"),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    "cxlrc: reset coordinator for CXL devices",
    "",
    "Usage: cxlrc <command> [options]   (cxlrc <command> --help for details)",
    "",
    "Commands:",
    ...lines,
    "",
    `Exit codes: ${EXIT.ok} ok, ${EXIT.failure} operation failed or refused, ${EXIT.usage} bad input (flags, files, config), ${EXIT.unavailable} bus or service unavailable.`,
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === "--version") {
    process.stdout.write("cxlrc 0.1.0\n");
    return EXIT.ok;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`cxlrc: unknown command "${name}" (see cxlrc --help)\n`);
    return EXIT.usage;
  }
  const mod = await cmd.load();
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`${mod.usage}\n`);
    return EXIT.ok;
  }
  try {
    return await mod.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`cxlrc ${name}: ${e.message}\n`);
      return EXIT.usage;
    }
    const bad = isCxlrcError(e) && e.kind === "bad-input";
    process.stderr.write(`cxlrc ${name}: ${describeError(e)}\n`);
    if (process.env.CXLRC_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return bad ? EXIT.usage : EXIT.failure;
  }
}
