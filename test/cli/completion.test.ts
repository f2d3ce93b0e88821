// `cxlrc completion bash|zsh|fish`: every command, every flag and every sub-target of the command table is in
// each script, and each shell that is installed here accepts its script (bash always is).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { COMMANDS, type CommandSpec } from "../../services/cli/command-table.ts";
import { GLOBAL_OPTIONS } from "../../services/cli/globals.ts";
import { lines, runCli } from "./run-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "cxlrc-completion-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The path of a shell, or null when it is not installed. */
function which(shell: string): string | null {
  try {
    return execFileSync("sh", ["-c", `command -v ${shell}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

const table = Object.entries(COMMANDS) as Array<[string, CommandSpec]>;

describe.each(["bash", "zsh", "fish"] as const)("cxlrc completion %s", (shell) => {
  let script = "";

  it("prints the script (exit 0) naming every command, flag and sub-target of the table", async () => {
    const r = await runCli(["completion", shell]);
    expect(r.code, r.stderr).toBe(0);
    script = r.stdout;
    // fish names flags without their dashes (-l server); bash and zsh with them.
    const flag = (name: string) =>
      shell === "fish" ? new RegExp(`-l ${name}\\b`) : new RegExp(`--${name}\\b`);
    for (const name of Object.keys(GLOBAL_OPTIONS)) expect(script, name).toMatch(flag(name));
    for (const [name, spec] of table) {
      expect(script, name).toMatch(new RegExp(`\\b${name}\\b`));
      const sets = [spec.options, ...Object.values(spec.targets ?? {})];
      for (const set of sets)
        for (const f of Object.keys(set)) expect(script, `${name} --${f}`).toMatch(flag(f));
      for (const t of Object.keys(spec.targets ?? {}))
        expect(script, `${name} ${t}`).toMatch(new RegExp(`\\b${t}\\b`));
    }
  });

  it("is accepted by the shell when it is installed (bash always is)", () => {
    const path = which(shell);
    if (shell === "bash") expect(path).not.toBeNull();
    if (path === null) return;
    const file = join(dir, `cxlrc.${shell}`);
    writeFileSync(file, script);
    const check = shell === "fish" ? ["--no-execute", file] : ["-n", file];
    expect(() => execFileSync(path, check, { stdio: "pipe" })).not.toThrow();
  });
});

describe("completion in bash", () => {
  it("completes commands, a command's flags and its sub-targets", async () => {
    const script = (await runCli(["completion", "bash"])).stdout;
    const file = join(dir, "complete.bash");
    writeFileSync(file, script);
    const complete = (...words: string[]) =>
      execFileSync(
        "bash",
        [
          "-c",
          `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _cxlrc; printf '%s\\n' "\${COMPREPLY[@]}"`,
        ],
        { encoding: "utf8" },
      )
        .split("\n")
        .filter(Boolean);
    expect(complete("cxlrc", "--server", "nats://x:4222", "br")).toEqual(["breaker"]);
    expect(complete("cxlrc", "serve", "--config", "f.json", "")).toEqual(["coordinator", "agent", "ui"]);
    expect(complete("cxlrc", "serve", "agent", "--heart")).toEqual(["--heartbeat-ms"]);
    expect(complete("cxlrc", "breaker", "close", "--op")).toEqual(["--operator"]);
    expect(complete("cxlrc", "reset", "alpha", "--scope", "")).toEqual(["io", "full"]);
  });

  it("a shell it does not know is bad input: exit 2, one line", async () => {
    const r = await runCli(["completion", "ksh"]);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toEqual(['cxlrc completion: unknown shell "ksh": bash, zsh or fish']);
    expect(r.stdout).toBe("");
  });
});
