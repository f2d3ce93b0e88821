// `cxlrc demo --backend kernel` end to end, as a child process: Debian's kernel under QEMU with a CXL
// Type-3 device on the driver the kernel chose (cxl_pci); over the bus inside the guest, a full reset is
// refused while a pmem region of the device is committed and runs, cxl_pci handed over and back, once the
// region is down; on vfio-pci, the kernel's own reset wipes the HDM decoder (the seed's bug, read back) and
// cxlrc's reset through VFIO brings it back Committed. QEMU is gone afterwards (by pid), also after Ctrl-C; a
// host that cannot have the kernel package gets one line, exit 3.
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
    message?: string;
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
    "--json: from the drivers the kernel chose: cxl_pci handed over and back, region refusal, the QEMU 7.2 quirk said, the kernel's reset wipes, VFIO reset verified; QEMU gone",
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
        ["driver-handover", "verified"],
        ["region-busy", "refused"],
        ["region-down", "failed"],
        ["kernel-reset-wipes-decoders", "decoders-wiped"],
        ["vfio", "verified"],
        ["io-no-flr", "refused"],
      ]);
      const by = (id: string) => s.scenarios.find((x) => x.id === id)!;
      for (const x of s.scenarios) expect(x.asExpected, x.id).toBe(true);

      // A pmem region committed on the device cxl_pci holds: refused before anything is saved, region named.
      const busy = by("region-busy");
      expect(busy).toMatchObject({ reason: "device-busy", phasesMs: { save: null, reset: null } });
      expect(busy.message).toMatch(
        /is in use: .*region region0 \(pmem, 0x[0-9a-f]+-0x[0-9a-f]+, through decoder\d+\.0\) is committed/,
      );
      expect(busy.readback?.after).toMatchObject({ driver: "cxl_pci", driverOverride: "(null)" });
      expect(busy.readback?.after.kernel?.regions).toEqual([
        { name: "region0", commit: "1", size: "0x20000000" },
      ]);

      // As the kernel booted it: every phase ran (restore and verify inside the reset's operation, the device
      // being reset alone), cxl_pci bound again, driver_override as it was (none), and the
      // kernel's endpoint port back.
      const handover = by("driver-handover");
      expect(handover).toMatchObject({ scope: "full", method: "sbr" });
      for (const g of ["gate", "save", "reset"]) expect(handover.phasesMs[g], g).toBeGreaterThan(0);
      for (const g of ["restore", "verify"]) expect(handover.phasesMs[g], g).not.toBeNull();
      expect(handover.readback?.after).toMatchObject({ driver: "cxl_pci", driverOverride: "(null)" });
      expect(handover.readback?.after.kernel?.endpoint).not.toBeNull();

      // The region taken down: handed over and back, but QEMU 7.2 kept the decommitted decoder Committed (size
      // 0) and Linux 6.1 refuses the endpoint: the read-back with cxl_pci back differs, and the request fails.
      const down = by("region-down");
      expect(down.readback?.after).toMatchObject({ driver: "cxl_pci", driverOverride: "(null)" });
      expect(down.readback?.after.kernel?.regions).toEqual([]);
      expect(down.readback?.after.kernel?.endpoint).toBeNull();
      expect(down.readback?.after.kernel?.messages.join("\n")).toMatch(/Committed with zero size/);
      expect(down.message ?? down.reason).toMatch(/bound again the device differs from its image/);

      // The seed's bug on the device the operator gave to vfio-pci, decoder 0 programmed by its VM:
      // `echo 1 > reset` (method bus) restores the PCI state and wipes the decoder.
      const bug = by("kernel-reset-wipes-decoders");
      expect(bug).toMatchObject({ method: "kernel:bus" });
      expect(bug.readback?.before).toMatchObject({ driver: "vfio-pci", driverOverride: "vfio-pci" });
      const committed = decoder0(bug.readback?.before);
      expect(committed).toMatchObject({ committed: true, errorNotCommitted: false, size: "0x10000000" });
      expect(decoder0(bug.readback?.after)).toMatchObject({ committed: false, size: "0x0", base: "0x0" });
      expect(bug.readback?.after.command).toBe(bug.readback?.before?.command);

      // cxlrc through VFIO, over the bus: every phase ran, still on vfio-pci, decoder 0 Committed again.
      const vfio = by("vfio");
      expect(vfio).toMatchObject({ scope: "full", method: "vfio" });
      for (const g of ["gate", "save", "reset"]) expect(vfio.phasesMs[g], g).toBeGreaterThan(0);
      for (const g of ["restore", "verify"]) expect(vfio.phasesMs[g], g).not.toBeNull();
      expect(vfio.readback?.after).toMatchObject({ driver: "vfio-pci", driverOverride: "vfio-pci" });
      expect(decoder0(vfio.readback?.after)).toMatchObject({
        committed: true,
        errorNotCommitted: false,
        base: committed?.base,
        size: committed?.size,
      });
      expect(by("io-no-flr")).toMatchObject({ reason: "flr-unsupported" });

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
