// `cxlrc status` / `cxlrc devices` with devices driven by other coordinators (fleet status): an OWNER column
// and a summary line appear only then; a single coordinator's output is unchanged.
import { describe, expect, it } from "vitest";
import { colours } from "../../services/cli/format/colour.ts";
import { devicesOf, formatDevices, formatStatus } from "../../services/cli/format/status.ts";

const plain = colours(false);

const dev = (host: string, owner: string, local: boolean) => ({
  host,
  bdf: "0000:01:00.0",
  state: "ready",
  requestId: null,
  leaseHeld: false,
  scopeViolations: 0,
  quarantineReason: null,
  owner,
  local,
});

describe("status with devices of other coordinators", () => {
  it("adds an OWNER column and names who drives the others", () => {
    const reply = { id: "ca", devices: [dev("fa", "ca", true), dev("fb", "cb", false)], breaker: {} };
    const table = formatDevices(devicesOf(reply), plain).split("\n");
    expect(table[0]).toMatch(/^HOST\s+DEVICE\s+STATE\s+LEASE\s+OWNER\s+REQUEST/);
    expect(table[1]).toMatch(/^fa\s+0000:01:00\.0\s+ready\s+-\s+ca \(here\)/);
    expect(table[2]).toMatch(/^fb\s+0000:01:00\.0\s+ready\s+-\s+cb\s/);
    expect(formatStatus(reply, plain)).toMatch(/1 device\(s\) driven by other coordinators .*: cb 1/);
  });

  it("leaves a single coordinator's output as it was", () => {
    const reply = { id: "ca", devices: [dev("fa", "ca", true)], breaker: {} };
    expect(formatDevices(devicesOf(reply), plain).split("\n")[0]).not.toMatch(/OWNER/);
    expect(formatStatus(reply, plain)).not.toMatch(/other coordinators/);
  });
});
