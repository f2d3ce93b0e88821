// The qtest client and the QEMU process it owns: answers in order, errors name the command, and QEMU never
// outlives the backend (close, failed start, Node exiting without close, Node killed).
import { spawn } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { createQemuBackend, type QemuBackend } from "../../services/agent/backends/qemu/qemu-backend.ts";
import { buildTopology } from "../../services/agent/backends/qemu/topology.ts";
import { CxlrcError } from "../../shared/errors.ts";

const BACKEND_MODULE = fileURLToPath(
  new URL("../../services/agent/backends/qemu/qemu-backend.ts", import.meta.url),
);
const QTEST_MODULE = fileURLToPath(new URL("../../services/agent/backends/qemu/qtest.ts", import.meta.url));

/** True while a process with this pid exists (signal 0 only checks). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw e;
  }
}

/** Give the kernel a moment to reap a killed process; the assertion after it is on the state, not on time. */
const REAP_GRACE_MS = 5000;
async function untilGone(pid: number): Promise<void> {
  const deadline = Date.now() + REAP_GRACE_MS;
  while (processExists(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

const opened: QemuBackend[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((b) => b.close()));
});

async function start(): Promise<QemuBackend> {
  const b = await createQemuBackend({ topology: "single" });
  opened.push(b);
  return b;
}

/** Reach the qtest client behind the backend for protocol-level checks. */
function qtestOf(b: QemuBackend) {
  return (b as unknown as { q: import("../../services/agent/backends/qemu/qtest.ts").QtestClient }).q;
}

describe("qtest client", () => {
  it("answers a pipelined batch in order", async () => {
    const b = await start();
    const q = qtestOf(b);
    // ECAM of 0c:00.0 (root port) and 0d:00.0 (Type-3): vendor/device ids, interleaved with writes.
    const answers = await q.batch([
      "readl 0xb0c00000",
      "readw 0xb0d00000",
      "readw 0xb0d00002",
      "readb 0xb0c0000e",
    ]);
    expect(answers.map((a) => Number(a))).toEqual([0x70758086, 0x8086, 0x0d93, 0x01]);
  });

  it("rejects a FAIL answer with the command, and keeps working afterwards", async () => {
    const b = await start();
    const q = qtestOf(b);
    const err = await q.batch(["readl 0xb0d00000", "no_such_command 1", "readw 0xb0d00002"]).catch((e) => e);
    expect(err).toBeInstanceOf(CxlrcError);
    expect(err.kind).toBe("backend");
    expect(err.details.command).toBe("no_such_command 1");
    expect(err.details.answer).toMatch(/^FAIL/);
    // The batch was drained: the next answer belongs to the next command.
    expect(Number(await q.command("readw 0xb0d00002"))).toBe(0x0d93);
  });

  it("fails pending and later commands when QEMU dies", async () => {
    const b = await start();
    const pid = b.describe().pid;
    process.kill(pid, "SIGKILL");
    const err = await b.configRead("0000:0d:00.0", 0, 4).catch((e) => e);
    expect(err).toBeInstanceOf(CxlrcError);
    expect(err.kind).toBe("backend");
    expect(err.message).toMatch(/QEMU exited|socket/);
    await b.close();
    expect(processExists(pid)).toBe(false);
  });
});

describe("QEMU process lifetime", () => {
  it("is gone after close(), and close() is idempotent", async () => {
    const b = await createQemuBackend({ topology: "single" });
    const { pid } = b.describe();
    expect(processExists(pid)).toBe(true);
    await b.close();
    expect(processExists(pid)).toBe(false);
    await b.close();
    await expect(b.configRead("0000:0d:00.0", 0, 4)).rejects.toMatchObject({ kind: "backend" });
  });

  it("is gone after a start that fails on bad QEMU arguments, and the error carries QEMU's words", async () => {
    const err = await createQemuBackend({
      topology: "single",
      extraArgs: ["-device", "cxlrc-no-such-device"],
    }).catch((e) => e);
    expect(err).toBeInstanceOf(CxlrcError);
    expect(err.kind).toBe("backend");
    expect(err.message).toContain("cxlrc-no-such-device");
    expect(typeof err.details.pid).toBe("number");
    expect(processExists(err.details.pid)).toBe(false);
  });

  it("reports a missing QEMU binary as a backend error", async () => {
    const err = await createQemuBackend({
      topology: "single",
      qemuBinary: "/nonexistent/qemu-system-x86_64",
    }).catch((e) => e);
    expect(err).toBeInstanceOf(CxlrcError);
    expect(err.kind).toBe("backend");
    expect(err.message).toContain("/nonexistent/qemu-system-x86_64");
    if (typeof err.details.pid === "number") expect(processExists(err.details.pid)).toBe(false);
  });

  // A Node process that starts a backend, prints QEMU's pid, then ends without close(): the exit hook
  // (or, when killed, the parent-death signal) must take QEMU with it.
  const backendScript = (thenWhat: string) =>
    [
      `import { createQemuBackend } from ${JSON.stringify(BACKEND_MODULE)};`,
      `const b = await createQemuBackend({ topology: "single" });`,
      `console.log("DIR " + b.describe().dir);`,
      `console.log("PID " + b.describe().pid);`,
      thenWhat,
    ].join("\n");
  // Without the parent-death signal, so only the exit hook can kill QEMU.
  const bareQtestScript = (thenWhat: string) =>
    [
      `import { QtestClient } from ${JSON.stringify(QTEST_MODULE)};`,
      `const q = await QtestClient.start({ args: ["-machine", "q35"], killOnParentDeath: false });`,
      `console.log("PID " + q.pid);`,
      thenWhat,
    ].join("\n");

  async function runChild(script: string, kill: boolean): Promise<{ pid: number; dir: string | null }> {
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    const pid = await new Promise<number>((resolve, reject) => {
      child.stdout.on("data", (d) => {
        out += String(d);
        const m = /PID (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once("exit", (code) => reject(new Error(`child exited (${code}) before printing a pid: ${out}`)));
    });
    expect(processExists(pid)).toBe(true);
    if (kill) child.kill("SIGKILL");
    await new Promise((r) =>
      child.exitCode !== null || child.signalCode !== null ? r(null) : child.once("exit", r),
    );
    return { pid, dir: /DIR (\S+)/.exec(out)?.[1] ?? null };
  }

  it("is killed when the Node process exits without close()", async () => {
    const { pid } = await runChild(bareQtestScript("process.exit(0);"), false);
    // The exit hook kills synchronously, before the Node process is gone.
    await untilGone(pid);
    expect(processExists(pid)).toBe(false);
  });

  it.runIf(existsSync("/usr/bin/setpriv"))("is killed when the Node process is SIGKILLed", async () => {
    const { pid, dir } = await runChild(backendScript("setInterval(() => {}, 1000);"), true);
    await untilGone(pid);
    expect(processExists(pid)).toBe(false);
    // Nobody ran the exit hook: the temp dir is ours to remove.
    expect(dir).toMatch(/cxlrc-qemu-/);
    rmSync(dir!, { recursive: true, force: true });
  });
});

describe("topology command lines", () => {
  it("gives every Type-3 its own memory and LSA backend files", () => {
    for (const name of ["single", "two-root-ports", "switch"] as const) {
      const plan = buildTopology(name, "/tmp/x");
      const type3 = plan.devices.filter((d) => d.driver === "cxl-type3");
      expect(type3.length).toBe(name === "single" ? 1 : 2);
      const backends = type3.flatMap((d) => [d.props.memdev, d.props.lsa]);
      expect(new Set(backends).size).toBe(backends.length);
      expect(plan.backingFiles.length).toBe(backends.length);
      expect(plan.args).toContain("q35,cxl=on");
    }
  });
});
