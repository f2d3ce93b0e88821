// Read-only decode of this machine's real config spaces (/sys/bus/pci/devices/*/config). No CXL device is
// expected here: the point is that the walk succeeds on every real device and agrees with lspci about which
// capabilities exist. Reads beyond 64 bytes need root; lspci then says "<access denied>" and only the walk
// is checked.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeConfigSpace } from "../../shared/cxl/decode.ts";
import { parseDump } from "../../shared/cxl/dump.ts";

const SYSFS = "/sys/bus/pci/devices";
const LSPCI = "/usr/bin/lspci";
const devices = existsSync(SYSFS) ? readdirSync(SYSFS).sort() : [];

/** Capability offsets lspci lists per device (`lspci -D -v`), or null when it could not read them. */
function lspciCapabilities(): Map<string, number[] | null> {
  const out = execFileSync(LSPCI, ["-D", "-v"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const map = new Map<string, number[] | null>();
  let bdf = "";
  for (const line of out.split("\n")) {
    if (line !== "" && !line.startsWith("\t")) {
      bdf = line.split(" ")[0]!;
      map.set(bdf, []);
      continue;
    }
    if (line.includes("Capabilities: <access denied>")) map.set(bdf, null);
    const m = /^\tCapabilities: \[([0-9a-f]+)/.exec(line);
    if (m) map.get(bdf)?.push(Number.parseInt(m[1]!, 16));
  }
  return map;
}

describe("this machine's PCI devices", () => {
  it.each(devices)("%s decodes", (bdf) => {
    const raw = new Uint8Array(readFileSync(join(SYSFS, bdf, "config")));
    const [dev] = parseDump(raw);
    const d = decodeConfigSpace(dev!.bytes, { bdf });
    expect(d.vendorId).toMatch(/^0x[0-9a-f]{4}$/);
    expect(d.bdf).toBe(bdf);
    if (d.configSize > 64) expect(d.capabilitiesComplete).toBe(true);
  });

  it("agrees with lspci -v about which capabilities exist", () => {
    const lspci = lspciCapabilities();
    let compared = 0;
    for (const bdf of devices) {
      const raw = new Uint8Array(readFileSync(join(SYSFS, bdf, "config")));
      const d = decodeConfigSpace(parseDump(raw)[0]!.bytes, { bdf });
      const theirs = lspci.get(bdf);
      if (theirs === undefined || theirs === null || d.configSize === 64) continue; // not readable here
      const ours = [...d.capabilities.map((c) => Number(c.offset))];
      // lspci walks the extended list only below a PCI Express (or PCI-X 2.0) capability.
      if (d.pcie) ours.push(...d.extendedCapabilities.map((c) => Number(c.offset)));
      expect(ours, bdf).toEqual(theirs);
      compared++;
    }
    expect(compared).toBeGreaterThan(0);
  });
});
