// `cxlrc demo --backend kernel` end to end, as a child process: Debian's kernel under QEMU with a CXL
// Type-3 device; in the guest the kernel's own reset wipes the HDM decoders (the seed's bug, read back), then
// cxlrc resets the device over the bus inside the guest and the decoders read back Committed. QEMU is gone
// afterwards (by pid), also after Ctrl-C; a host that cannot have the kernel package gets one line, exit 3.
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { DeviceState } from "../../services/lab/guest/device-state.ts";
import { requireExecutable } from "../../services/lab/vm.ts";
import { lines, runCli, startCli, waitForOutput } from "./run-cli.ts";

/** First run: apt-get download of the kernel and the initramfs build; warm: one boot (~30 s under TCG). */
const DEMO_TIMEOUT_MS = 400_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface KernelDemoSummary {
  ok: boolean;
  backend: string;
  kernel: { package: string; version: string; release: string; guestRelease: string | null };
  topology: string;
  processes: Record<string, number>;
  scenarios: Array<{
    id: string;
    host: string;
    bdf: string;
    outcome: string | null;
    reason: string | null;
    scope: string | null;
    method: string | null;
    asExpected: boolean;
    phasesMs: Record<string, number | null>;
    readback?: { before?: DeviceState; after: DeviceState };
  }>;
}

const decoder0 = (s: DeviceState | undefined) => {
  if (!s || !Array.isArray(s.decoders)) throw new Error(`decoders not read back: ${JSON.stringify(s)}`);
  return s.decoders[0];
};

const temps: string[] = [];
afterAll(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

describe("cxlrc demo --backend kernel", () => {
  it(
    "--json: the kernel's reset wipes the decoders; cxlrc's reset over the bus ends verified, Committed read back; QEMU gone",
    async () => {
      const r = await runCli(["demo", "--backend", "kernel", "--json", "--no-install"], {
        killAfterMs: DEMO_TIMEOUT_MS,
      });
      expect(r.code, r.stderr).toBe(0);
      const s = JSON.parse(r.stdout) as KernelDemoSummary;
      expect(s).toMatchObject({ ok: true, backend: "kernel", topology: "single" });
      expect(s.kernel.package).toMatch(/^linux-image-/);
      expect(s.kernel.guestRelease).toBe(s.kernel.release);
      expect(s.scenarios.map((x) => [x.id, x.outcome])).toEqual([
        ["kernel-reset-wipes-decoders", "decoders-wiped"],
        ["full-sbr", "verified"],
        ["io-no-flr", "refused"],
      ]);
      const by = (id: string) => s.scenarios.find((x) => x.id === id)!;

      // The seed's bug: committed by firmware, `echo 1 > reset` (method bus), PCI state back, decoders wiped.
      const bug = by("kernel-reset-wipes-decoders");
      expect(bug).toMatchObject({ method: "kernel:bus", asExpected: true });
      const committed = decoder0(bug.readback?.before);
      expect(committed).toMatchObject({ committed: true, errorNotCommitted: false });
      expect(decoder0(bug.readback?.after)).toMatchObject({ committed: false, size: "0x0", base: "0x0" });
      expect(bug.readback?.after.command).toBe(bug.readback?.before?.command);

      // cxlrc through the bus in the guest: every phase ran, the decoder reads back Committed, same range.
      const fixed = by("full-sbr");
      expect(fixed).toMatchObject({ scope: "full", method: "sbr", asExpected: true });
      for (const g of ["gate", "save", "reset", "restore", "verify"])
        expect(fixed.phasesMs[g], g).toBeGreaterThan(0);
      expect(decoder0(fixed.readback?.after)).toMatchObject({
        committed: true,
        errorNotCommitted: false,
        base: committed?.base,
        size: committed?.size,
      });
      expect(by("io-no-flr")).toMatchObject({ reason: "flr-unsupported", asExpected: true });

      expect(s.processes.qemu).toBeGreaterThan(0);
      expect(alive(s.processes.qemu!)).toBe(false);
    },
    DEMO_TIMEOUT_MS,
  );

  it(
    "Ctrl-C while QEMU runs: exit 1, interrupted, the QEMU it started is gone",
    async () => {
      const demo = startCli(["demo", "--backend", "kernel", "--no-install"], {
        killAfterMs: DEMO_TIMEOUT_MS,
      });
      const out = await waitForOutput(demo, (o) => /QEMU \(pid \d+/.test(o));
      const pid = Number(/QEMU \(pid (\d+)/.exec(out)![1]);
      expect(alive(pid)).toBe(true);
      demo.child.kill("SIGINT");
      const r = await demo.done;
      expect(r.code).toBe(1);
      expect(lines(r.stderr)).toEqual(["cxlrc demo: interrupted; QEMU stopped"]);
      expect(alive(pid)).toBe(false);
    },
    DEMO_TIMEOUT_MS,
  );

  it("no kernel package to be had, or no QEMU: one line naming what is missing, exit 3", async () => {
    // A host whose apt knows no linux-image-amd64 and cannot update its lists.
    const bin = mkdtempSync(join(tmpdir(), "cxlrc-kdemo-bin-"));
    const cache = mkdtempSync(join(tmpdir(), "cxlrc-kdemo-cache-"));
    temps.push(bin, cache);
    symlinkSync(requireExecutable("qemu-system-x86_64", "qemu-system-x86"), join(bin, "qemu-system-x86_64"));
    writeFileSync(join(bin, "apt-cache"), "#!/bin/sh\nexit 0\n");
    writeFileSync(join(bin, "apt-get"), "#!/bin/sh\necho 'E: no network here' >&2\nexit 100\n");
    for (const f of ["apt-cache", "apt-get"]) chmodSync(join(bin, f), 0o755);
    const noKernel = await runCli(["demo", "--backend", "kernel", "--no-install"], {
      env: { PATH: bin, CXLRC_LAB_CACHE: cache },
    });
    expect(noKernel.code).toBe(3);
    expect(lines(noKernel.stderr)).toHaveLength(1);
    expect(noKernel.stderr).toMatch(/^cxlrc demo: .*linux-image-amd64/);
    expect(noKernel.stderr).not.toMatch(/\n\s+at /);

    const noQemu = await runCli(["demo", "--backend", "kernel", "--json"], {
      env: { PATH: cache, CXLRC_LAB_CACHE: cache },
    });
    expect(noQemu.code).toBe(3);
    expect(lines(noQemu.stderr)).toEqual([
      "cxlrc demo: qemu-system-x86_64 is not installed: the kernel lab needs the Debian package qemu-system-x86",
    ]);
    expect(noQemu.stdout).toBe("");
  });
});
