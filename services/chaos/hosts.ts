// Simulated hosts for chaos runs: the device simulator is the host's hardware and outlives its agent; the
// agent runs in this process on a NATS connection of its own, as if it ran on that machine.
//
// kill: the agent "process" dies at once: its connection is closed without draining and its backend view is
// cut, so an operation in the middle of its register writes stops at the next access (the device keeps the
// half-done state, as real hardware would). restart: a new agent (empty operation cache, as a new process
// has) on a new connection, over the same hardware. pause: every register access of the agent blocks until
// resume (a hung agent: its event loop still answers the bus). freeze: the whole agent stops, as under SIGSTOP:
// its register accesses block and its connection's bytes are held both ways until resume (relay.ts: only runs
// whose faults freeze or cut off an agent connect their agents through relays). slow: every register access takes
// `ms` longer. partition: the agent cut off from the bus (its connections dropped, new ones refused) while it
// runs on, its operations going on on the hardware, until heal. reboot: the host goes down whole, as on a power loss or a kernel panic: its agent is killed and
// its devices are powered on again as the host boots them (firmware's decoders, the drivers bound at boot:
// SimHost.boot()), whatever a reset had left in them; the agent starts again with its restart.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectBus } from "../../shared/bus/client.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { type HardwareBackend, realClock } from "../../shared/hw/backend.ts";
import { type Logger, silentLogger } from "../../shared/log.ts";
import { createSimHost, type Fleet, type SimHost, type SimTimings } from "../../shared/sim/index.ts";
import { type AgentHandle, type AgentTimeouts, startAgent } from "../agent/service.ts";
import { type BusRelays, startRelays } from "./relay.ts";

/** One incarnation of the agent process's view of the hardware. */
interface Life {
  dead: boolean;
  /** Resolves when a pause ends; null when running. */
  paused: Promise<void> | null;
  unpause: () => void;
  slowMs: number;
  /** Backend calls running now (an agent killed with calls > 0 was killed mid-operation). */
  calls: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function newLife(): Life {
  return { dead: false, paused: null, unpause: () => undefined, slowMs: 0, calls: 0 };
}

function killed(host: string): CxlrcError {
  return new CxlrcError("backend", `agent ${host} was killed (chaos)`);
}

/** The sim seen through one agent life: every access checks the life first (and after, for the result). */
export function lifeBackend(
  host: string,
  sim: SimHost,
  life: Life,
): HardwareBackend & { faults: SimHost["faults"] } {
  const gate = async () => {
    if (life.dead) throw killed(host);
    while (life.paused) await life.paused;
    if (life.slowMs > 0) await sleep(life.slowMs);
    if (life.dead) throw killed(host);
  };
  const wrap =
    <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      await gate();
      life.calls++;
      try {
        const r = await fn(...a);
        if (life.dead) throw killed(host);
        return r;
      } finally {
        life.calls--;
      }
    };
  return {
    kind: sim.kind,
    clock: sim.clock,
    capabilities: sim.capabilities,
    faults: sim.faults,
    listFunctions: wrap(() => sim.listFunctions()),
    configRead: wrap((bdf: string, offset: number, width: 1 | 2 | 4) => sim.configRead(bdf, offset, width)),
    configWrite: wrap((bdf: string, offset: number, width: 1 | 2 | 4, value: number) =>
      sim.configWrite(bdf, offset, width, value),
    ),
    configReadAll: wrap((bdf: string) => sim.configReadAll(bdf)),
    mmioRead32: wrap((bdf: string, bar: number, offset: number) => sim.mmioRead32(bdf, bar, offset)),
    mmioWrite32: wrap((bdf: string, bar: number, offset: number, value: number) =>
      sim.mmioWrite32(bdf, bar, offset, value),
    ),
    holders: wrap((bdf: string) => sim.holders(bdf)),
    kernelReset: wrap((bdf: string, method: string) => sim.kernelReset(bdf, method)),
    vfioReset: wrap((bdf: string) => sim.vfioReset(bdf)),
    bindDriver: wrap((bdf: string, driver: string | null, opts?: { override?: string | null }) =>
      sim.bindDriver(bdf, driver, opts),
    ),
    driverOverride: wrap((bdf: string) => sim.driverOverride(bdf)),
    cxlView: wrap((bdf: string) => sim.cxlView(bdf)),
    close: async () => undefined,
  };
}

export type HostState = "up" | "killed" | "paused" | "frozen";

export interface ChaosHost {
  readonly name: string;
  readonly sim: SimHost;
  readonly state: HostState;
  readonly agent: AgentHandle | null;
  /** Incarnations started (1 after the first start). */
  readonly starts: number;
  start(): Promise<void>;
  /** Returns true when an operation was running on the hardware at that moment. */
  kill(): Promise<{ midOperation: boolean }>;
  /** The host down whole (agent killed, devices powered on as at boot); the agent stays down until start(). */
  reboot(): Promise<{ midOperation: boolean }>;
  restart(): Promise<void>;
  pause(): void;
  /** The whole agent stopped (SIGSTOP): hardware and bus. Throws for hosts made without `freezable`. */
  freeze(): void;
  /** Ends a pause or a freeze (the held bytes go out in order). */
  resume(): void;
  /** Cut the agent off from the bus (a network partition) while it runs on. Throws without `relayed`. */
  partition(): void;
  /** Ends a partition: the agent's client reconnects on its own. */
  heal(): void;
  readonly partitioned: boolean;
  slow(ms: number): void;
  stop(): Promise<void>;
}

export interface HostsOptions {
  fleet: Fleet;
  servers: string[];
  timings: Partial<SimTimings>;
  agentTimeouts: Partial<AgentTimeouts>;
  log?: Logger;
  /**
   * Agents connect through relays that can hold their traffic (freeze) or cut it (partition). Default false:
   * straight to the servers.
   */
  relayed?: boolean;
}

export function createHosts(o: HostsOptions): Map<string, ChaosHost> {
  const out = new Map<string, ChaosHost>();
  const log = o.log ?? silentLogger;
  // Each agent's state directory (its fencing table) outlives its restarts, as on a real host.
  const stateRoot = mkdtempSync(join(tmpdir(), "cxlrc-chaos-agents-"));
  for (const spec of o.fleet.hosts) {
    const sim = createSimHost(spec, { clock: realClock, timings: o.timings });
    let life = newLife();
    let agent: AgentHandle | null = null;
    let nc: NatsConnection | null = null;
    let state: HostState = "killed";
    let starts = 0;
    let relays: BusRelays | null = null;
    let starting: Promise<void> | null = null;
    const boot = async () => {
      life = newLife();
      if (o.relayed) relays ??= await startRelays(o.servers);
      nc = await connectBus({
        servers: relays?.urls ?? o.servers,
        ...(relays ? { ignoreClusterUpdates: true } : {}),
        name: `cxlrc-agent ${spec.name} (chaos)`,
        log: log.child({ host: spec.name }),
        reconnectWaitMs: 50,
        reconnectMaxWaitMs: 500,
        timeoutMs: 2000,
        pingIntervalMs: 2000,
      });
      agent = await startAgent({
        nc,
        host: spec.name,
        backend: lifeBackend(spec.name, sim, life),
        log: log.child({ host: spec.name }),
        timeouts: o.agentTimeouts,
        heartbeatMs: 60_000,
        eventWaitMs: 500,
        stopTimeoutMs: 1000,
        stateDir: join(stateRoot, spec.name),
      });
      starts++;
      state = "up";
    };
    const host: ChaosHost = {
      name: spec.name,
      sim,
      get state() {
        return state;
      },
      get agent() {
        return agent;
      },
      get starts() {
        return starts;
      },
      start() {
        // One start at a time: two faults that each bring the agent back (a kill's restart and a reboot's)
        // must not start two agents, one of them never stopped (its connection would outlive the run).
        if (starting) return starting;
        if (state !== "killed") return Promise.resolve();
        starting = boot().finally(() => {
          starting = null;
        });
        return starting;
      },
      async kill() {
        // A start under way finishes first: then it is that agent that dies.
        await starting?.catch(() => undefined);
        if (state === "killed") return { midOperation: false };
        const midOperation = life.calls > 0 || (agent?.stats().inFlight ?? 0) > 0;
        life.dead = true;
        life.unpause();
        state = "killed";
        const c = nc;
        nc = null;
        agent = null;
        // No drain, no goodbye: whatever was not sent is lost, as with SIGKILL (held bytes too).
        await c?.close().catch(() => undefined);
        relays?.discard();
        return { midOperation };
      },
      async reboot() {
        const killed = await host.kill();
        sim.boot();
        return killed;
      },
      async restart() {
        await host.kill();
        await host.start();
      },
      pause() {
        if (state !== "up") return;
        state = "paused";
        life.paused = new Promise<void>((r) => {
          life.unpause = () => {
            life.paused = null;
            r();
          };
        });
      },
      freeze() {
        if (state !== "up") return;
        if (!relays) throw new Error(`agent ${spec.name}: not connected through relays: it cannot be frozen`);
        host.pause();
        relays.freeze();
        state = "frozen";
      },
      get partitioned() {
        return relays?.cut ?? false;
      },
      partition() {
        if (!relays)
          throw new Error(`agent ${spec.name}: not connected through relays: it cannot be cut off`);
        relays.cutOff();
      },
      heal() {
        relays?.heal();
      },
      resume() {
        if (state !== "paused" && state !== "frozen") return;
        state = "up";
        relays?.thaw();
        life.unpause();
      },
      slow(ms) {
        life.slowMs = ms;
      },
      async stop() {
        await starting?.catch(() => undefined);
        const a = agent;
        const c = nc;
        life.unpause();
        state = "killed";
        agent = null;
        nc = null;
        relays?.thaw();
        relays?.heal();
        await a?.stop().catch(() => undefined);
        await c?.close().catch(() => undefined);
        await relays?.close();
        relays = null;
        rmSync(join(stateRoot, spec.name), { recursive: true, force: true });
      },
    };
    out.set(spec.name, host);
  }
  return out;
}
