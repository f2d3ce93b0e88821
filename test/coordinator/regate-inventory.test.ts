// The regate's read: the host inventory is asked afresh only when the plan holds other functions than the
// device (their holders come from it); a one-function plan's gates read only the device's own probe.
import { describe, expect, it } from "vitest";
import { regateNeedsInventory } from "../../services/coordinator/effects/agent-actors.ts";

describe("regateNeedsInventory", () => {
  it("is false for the device alone, true as soon as another function is in the plan", () => {
    expect(regateNeedsInventory("0000:01:00.0", ["0000:01:00.0"])).toBe(false);
    expect(regateNeedsInventory("0000:01:00.0", [])).toBe(false);
    expect(regateNeedsInventory("0000:01:00.0", ["0000:01:00.0", "0000:01:00.1"])).toBe(true);
    expect(regateNeedsInventory("0000:05:00.0", ["0000:05:01.0"])).toBe(true);
  });
});
