// The demo's coordinator: the real one with the default policy, on its own connection, discovering the
// devices of every demo host at start (so `cxlrc status` lists them before their first reset).
import type { NatsConnection } from "@nats-io/transport-node";
import { connectBus } from "../../shared/bus/client.ts";
import type { Logger } from "../../shared/log.ts";
import { startCoordinator } from "../coordinator/service.ts";

export interface DemoCoordinator {
  stop(): Promise<void>;
}

export async function startDemoCoordinator(opts: {
  url: string;
  log: Logger;
  hosts: string[];
}): Promise<DemoCoordinator> {
  const nc: NatsConnection = await connectBus({
    servers: opts.url,
    name: "cxlrc-coordinator demo",
    log: opts.log,
    coalesceWrites: true,
    waitForServer: false,
  });
  const coordinator = await startCoordinator({
    nc,
    id: "demo",
    log: opts.log.child({ service: "coordinator" }),
  });
  return {
    async stop() {
      await coordinator.stop().catch(() => undefined);
      await nc.close().catch(() => undefined);
    },
  };
}
