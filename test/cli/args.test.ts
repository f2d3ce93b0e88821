// Global flags before or after the command, flag errors in one wording, durations with units in every
// duration flag. Pure functions: no process, no bus.
import { describe, expect, it } from "vitest";
import {
  parseDeadline,
  parseDuration,
  parseFlags,
  parseMsFlag,
  parseSince,
} from "../../services/cli/args.ts";
import { allOptionsOf, COMMANDS } from "../../services/cli/command-table.ts";
import { coordinatorConfigInput } from "../../services/cli/commands/serve.ts";
import { UsageError } from "../../services/cli/exit.ts";
import { helpOrVersion, splitArgs } from "../../services/cli/globals.ts";

describe("splitArgs: the command is the first argument that is not a global flag or its value", () => {
  it("finds the command after global flags and hands them on after the command's own arguments", () => {
    expect(splitArgs(["--server", "nats://h:4222", "--json", "status", "--host", "a"])).toEqual({
      command: "status",
      args: ["--host", "a", "--server=nats://h:4222", "--json"],
      help: false,
      version: false,
    });
    expect(splitArgs(["--creds=/x.creds", "--context", "lab", "image", "show", "h", "0d:00.0"]).args).toEqual(
      ["show", "h", "0d:00.0", "--creds=/x.creds", "--context=lab"],
    );
  });

  it("leaves flags after the command to the command", () => {
    expect(splitArgs(["status", "--server", "nats://h:4222"])).toMatchObject({
      command: "status",
      args: ["--server", "nats://h:4222"],
    });
  });

  it("keeps a value that looks like a command name as the flag's value", () => {
    expect(splitArgs(["--context", "status", "devices"]).command).toBe("devices");
  });

  it("puts the globals before the command's own --", () => {
    expect(splitArgs(["--json", "decode", "--", "-weird-file"]).args).toEqual([
      "--json",
      "--",
      "-weird-file",
    ]);
  });

  it("reads -h/--help and -V/--version before the command", () => {
    expect(splitArgs(["-V"])).toMatchObject({ command: undefined, version: true });
    expect(splitArgs(["--help", "reset"])).toMatchObject({ command: "reset", help: true });
  });

  it("refuses a flag before the command that is not global, and a global string flag without its value", () => {
    expect(() => splitArgs(["--scope", "io", "reset"])).toThrow(
      new UsageError("unknown option --scope (see cxlrc --help)"),
    );
    expect(() => splitArgs(["--server"])).toThrow(/option --server needs a value/);
    expect(() => splitArgs(["--json=yes", "status"])).toThrow(/option --json takes no value/);
  });

  it("finds --help/--version after the command but never in a string flag's value", () => {
    const reset = allOptionsOf(COMMANDS.reset);
    expect(helpOrVersion(["alpha", "-h"], reset)).toBe("help");
    expect(helpOrVersion(["alpha", "--version"], reset)).toBe("version");
    expect(helpOrVersion(["alpha", "--reason=--help"], reset)).toBe(null);
    expect(helpOrVersion(["alpha", "--", "--help"], reset)).toBe(null);
  });
});

describe("flag errors read the same for every command", () => {
  it("an unknown option names the option and the command's help", () => {
    expect(() => parseFlags("decode", ["--jsn"], COMMANDS.decode.options)).toThrow(
      new UsageError("unknown option --jsn (see cxlrc decode --help)"),
    );
    expect(() => parseFlags("status", ["-x"], COMMANDS.status.options)).toThrow(
      new UsageError("unknown option -x (see cxlrc status --help)"),
    );
  });

  it("a missing value, a value given to a switch and a value that starts with a dash", () => {
    expect(() => parseFlags("watch", ["--since"], COMMANDS.watch.options)).toThrow(
      new UsageError("option --since needs a value (see cxlrc watch --help)"),
    );
    expect(() => parseFlags("watch", ["--json=1"], COMMANDS.watch.options)).toThrow(
      new UsageError("option --json takes no value"),
    );
    expect(() => parseFlags("reset", ["--reason", "-x"], COMMANDS.reset.options)).toThrow(
      /option --reason needs a value \(one starting with '-' is given as --reason=-VALUE\)/,
    );
  });
});

describe("durations: one set of units for every duration flag", () => {
  const now = Date.parse("2030-01-01T00:00:00Z");

  it("--timeout, --pace: a number with its unit", () => {
    expect(parseDuration("--timeout", "10m")).toBe(600_000);
    expect(parseDuration("--timeout", "1.5h")).toBe(5_400_000);
    expect(parseDuration("--pace", "0ms", true)).toBe(0);
    expect(() => parseDuration("--timeout", "600")).toThrow(
      'bad --timeout "600": a duration like 500ms, 90s, 10m, 1h or 2d',
    );
  });

  it("--deadline: a duration from now, or an ISO time", () => {
    expect(parseDeadline("1h", now)).toBe("2030-01-01T01:00:00.000Z");
    expect(parseDeadline("2030-02-01T10:00:00+01:00", now)).toBe("2030-02-01T09:00:00.000Z");
    expect(() => parseDeadline("soon", now)).toThrow(/bad --deadline "soon": a duration like 500ms/);
  });

  it("--since: a duration back from now, or an ISO time", () => {
    expect(parseSince("2d", now).toISOString()).toBe("2029-12-30T00:00:00.000Z");
    expect(() => parseSince("yesterday", now)).toThrow(/bad --since "yesterday": a duration like 500ms/);
  });

  it("flags named in ms take a bare number of ms or a duration with its unit", () => {
    expect(parseMsFlag("--lease-ttl-ms", "15000")).toBe(15_000);
    expect(parseMsFlag("--lease-ttl-ms", "15s")).toBe(15_000);
    expect(() => parseMsFlag("--heartbeat-ms", "fast")).toThrow(
      /bad --heartbeat-ms "fast": milliseconds, or a duration/,
    );
    expect(coordinatorConfigInput(["--lease-ttl-ms", "20s"], {}).leaseTtlMs).toBe(20_000);
  });

  it("serve reads no NATS context: --context is refused, a selected one is not used", () => {
    expect(() => coordinatorConfigInput(["--context", "ops"], {})).toThrow(
      new UsageError("unknown option --context (see cxlrc serve --help)"),
    );
    const nats = coordinatorConfigInput([], { NATS_CONTEXT: "ops" }).nats as Record<string, unknown>;
    expect(nats.servers).toBe("nats://127.0.0.1:4222");
  });
});
