// `startUi`: the SRE's live fleet page. One HTTP server (node:http) on 127.0.0.1 by default, one link to the
// bus as the SRE principal (read only; the browser never sees the bus or its credentials), one fleet model fed
// by that link, and two server-sent event hubs (fleet changes, listed events). `cxlrc serve ui` and the demo
// call it with connection options, or with a connection they already hold.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { NatsConnection } from "@nats-io/transport-node";
import { feedEvent } from "../../client/feed-event.ts";
import { connect } from "../../client/index.ts";
import { type Logger, silentLogger } from "../../shared/log.ts";
import { loadAssets } from "./assets.ts";
import { startBusLink } from "./bus.ts";
import { parseUiConfig, type UiConfig, type UiConfigInput } from "./config.ts";
import { createFleet, type FleetChange } from "./fleet.ts";
import { createHandler, type UiContext } from "./routes.ts";
import { createHub } from "./sse.ts";

export { parseListen, parseUiConfig, type UiConfig, type UiConfigInput } from "./config.ts";

export type StartUiOptions = UiConfigInput & {
  /** A connection the caller owns (used as it is, left open by close()); else one is opened from the options. */
  nc?: NatsConnection;
  log?: Logger;
};

export interface UiHandle {
  /** Where the page is: http://HOST:PORT/ */
  readonly url: string;
  readonly config: UiConfig;
  close(): Promise<void>;
}

export async function startUi(opts: StartUiOptions = {}): Promise<UiHandle> {
  const { nc, log: givenLog, ...rest } = opts;
  const config = parseUiConfig(rest);
  const log = (givenLog ?? silentLogger).child({ service: "ui" });
  const assets = loadAssets();
  const fleet = createFleet({
    historyPerDeviceMax: config.historyPerDeviceMax,
    recentEventsMax: config.recentEventsMax,
  });
  const fleetHub = createHub({ keepAliveMs: config.keepAliveMs });
  const eventHub = createHub({ keepAliveMs: config.keepAliveMs });

  const publish = (c: FleetChange) => {
    for (const cell of c.cells) fleetHub.broadcast({ event: "cell", data: cell });
    if (c.counters) fleetHub.broadcast({ event: "counters", data: fleet.counters() });
    if (c.event) eventHub.broadcast({ event: "evt", data: c.event });
  };
  const link = startBusLink({
    ...(nc ? { nc } : {}),
    connect: () =>
      connect({
        name: config.name,
        timeoutMs: config.timeoutMs,
        ...(config.servers !== undefined ? { servers: config.servers } : {}),
        ...(config.user !== undefined ? { user: config.user, pass: config.pass ?? "" } : {}),
        ...(config.token !== undefined ? { token: config.token } : {}),
        ...(config.credsFile !== undefined ? { credsFile: config.credsFile } : {}),
        requester: "ui",
      }),
    timeoutMs: config.timeoutMs,
    historyWindowMs: config.historyWindowMs,
    retryMs: config.busRetryMs,
    statusRefreshMs: config.statusRefreshMs,
    log,
    onStatus: (reply) => {
      const c = fleet.applyStatus(reply);
      publish(c);
      fleetHub.broadcast({ event: "coordinator", data: fleet.view().coordinator });
    },
    onEvent: (e) => {
      const item = feedEvent(e.subject, e.envelope);
      if (!item) return;
      const c = fleet.applyEvent(item);
      publish(c);
      // An outcome moves the breaker and quarantine reasons the status reply knows best.
      if (c.counters) link.refreshStatus();
    },
    onState: (s) => {
      fleetHub.broadcast({ event: "bus", data: s });
      eventHub.broadcast({ event: "bus", data: s });
    },
  });

  let port = 0;
  const ctx: UiContext = {
    config,
    fleet,
    fleetHub,
    eventHub,
    link,
    assets,
    log,
    port: () => port,
    replays: { active: 0 },
  };
  const server = createServer(createHandler(ctx));
  server.keepAliveTimeout = 5000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.listen.port, config.listen.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (e) {
    fleetHub.close();
    eventHub.close();
    await link.close();
    throw e;
  }
  port = (server.address() as AddressInfo).port;
  const hostPart = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  const url = `http://${hostPart}:${port}/`;
  log.info({ url }, "fleet page serving");
  return {
    url,
    config,
    async close() {
      fleetHub.close();
      eventHub.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await link.close();
    },
  };
}
