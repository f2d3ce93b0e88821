// The fleet page on the deployed security model: connected as the SRE principal (read-only: status, images,
// replays, live events), it shows a reset a controller ran, decodes the device's image and replays the stream;
// nothing on the page needs more than the SRE role may do.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientOn } from "../../client/index.ts";
import { startUi, type UiHandle } from "../../services/ui/server.ts";
import { SIMPLE_DEVICE } from "../../shared/sim/index.ts";
import { until } from "../coordinator/helpers.ts";
import { type SecureBus, startSecureBus } from "../security/env.ts";
import { type SecureHost, startSecureHost } from "../security/one-host.ts";
import { TEST_ROSTER } from "../security/roster.ts";

const BDF = SIMPLE_DEVICE;

describe("the fleet page as the SRE principal", () => {
  let bus: SecureBus;
  let host: SecureHost;
  let ui: UiHandle;
  beforeAll(async () => {
    bus = await startSecureBus(TEST_ROSTER);
    host = await startSecureHost(bus, { hosts: ["sim-a"] });
    ui = await startUi({ nc: (await bus.connectAs("sre")).nc, listen: { host: "127.0.0.1", port: 0 } });
  }, 60_000);
  afterAll(async () => {
    await ui?.close();
    await host?.stop();
    await bus?.stop();
  });

  it("follows a controller's reset to verified, shows the decoded image and replays the stream", async () => {
    const controller = clientOn((await bus.connectAs("controller")).nc);
    const h = await controller.reset({ host: "sim-a", bdf: BDF, scope: "full", reason: "secure page" });
    expect((await h.outcome).kind).toBe("verified");

    let label = "";
    const shown = await until(async () => {
      const fleet = (await (await fetch(new URL("api/fleet", ui.url))).json()) as {
        bus: { connected: boolean };
        devices: Array<{ host: string; bdf: string; label: string }>;
      };
      label = fleet.devices.find((d) => d.host === "sim-a" && d.bdf === BDF)?.label ?? "";
      return fleet.bus.connected && label === `sim-a ${BDF}: ready (verified)`;
    });
    expect({ shown, label }).toEqual({ shown: true, label: `sim-a ${BDF}: ready (verified)` });

    const image = await fetch(new URL(`api/devices/sim-a/${BDF}/image`, ui.url));
    expect(image.status).toBe(200);
    expect(await image.text()).toMatch(/decoder0/);

    // A replay from a time goes through the coordinator's replay endpoint, which the SRE role may call.
    const ac = new AbortController();
    const replay = await fetch(new URL(`api/events?host=sim-a&since=1h`, ui.url), { signal: ac.signal });
    expect(replay.status).toBe(200);
    const reader = replay.body!.getReader();
    let text = "";
    while (!/reset\.completed/.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    ac.abort();
    expect(text).toMatch(/reset\.completed/);
    expect(text).not.toMatch(/permission|denied/i);
  });
});
