// Coordinators of a chaos run, each a real child process (coordinator-process.ts) that can be SIGKILLed,
// restarted under the same id (it takes its leases back at once), SIGSTOPped / SIGCONTed, and, when `relayed`,
// cut off from the bus while it runs on (relay.ts: a network partition) and healed. Every step the
// child reports goes to `onStep`, and the child waits until it resolves: that is how a fault lands at an
// exact lifecycle step (and a killed child never hears back). Every child dies with this process.
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { killOnExit } from "../../shared/children.ts";
import { runningSources, siblingModule } from "../../shared/module-file.ts";
import type { ChildMessage, CoordinatorProcessConfig, ParentMessage } from "./coordinator-process.ts";
import { type BusRelays, startRelays } from "./relay.ts";

export type CoordinatorState = "starting" | "up" | "paused" | "killed" | "stopped";

export type StepReport = Extract<ChildMessage, { t: "step" }>;

export interface ChaosCoordinator {
  readonly index: number;
  readonly id: string;
  readonly state: CoordinatorState;
  readonly pid: number | null;
  /** Processes spawned (1 after the first start; a process killed while starting counts too). */
  readonly starts: number;
  /** The last ~16 KiB of the process's stderr (its log when logLevel is not silent). */
  logs(): string;
  /** Steps of the running process waiting for the runner's go-ahead (diagnostics of a stuck run). */
  pendingSteps(): Array<{ phase: string; point: string; requestId: string | null; waitingMs: number }>;
  start(): Promise<void>;
  /** SIGKILL, now. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  pause(): void;
  resume(): void;
  /** Cut the process off from the bus (its connections dropped, new ones refused). Throws without `relayed`. */
  partition(): void;
  heal(): void;
  readonly partitioned: boolean;
  /** Graceful stop (leases released), SIGKILL after 5 s. */
  stop(): Promise<void>;
}

/** What every child is started with (its id and index aside), and how many. */
export interface CoordinatorsOptions extends Omit<CoordinatorProcessConfig, "id" | "index"> {
  count: number;
  /** Where the children's stderr goes as well (besides the kept tail). */
  logSink?: (index: number, text: string) => void;
  /** Every step the coordinator runs; the child waits for the returned promise. */
  onStep: (c: ChaosCoordinator, step: StepReport) => Promise<void>;
  /** How long a child may take to start serving. Default 60 s. */
  startTimeoutMs?: number;
}

const ENTRY = siblingModule("./coordinator-process", import.meta.url);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export function createCoordinators(o: CoordinatorsOptions): ChaosCoordinator[] {
  const startTimeoutMs = o.startTimeoutMs ?? 60_000;
  return Array.from({ length: o.count }, (_, index) => {
    const id = `c${index}`;
    let child: ChildProcess | null = null;
    let exited: Promise<void> = Promise.resolve();
    let state: CoordinatorState = "stopped";
    let starts = 0;
    let tail = "";
    const pending = new Map<number, { step: StepReport; since: number }>();
    // Made at the first start (with `relayed`), kept across restarts: a partition outlives a process.
    let relays: BusRelays | null = null;
    const cfg: CoordinatorProcessConfig = {
      id,
      index,
      servers: o.servers,
      leaseTtlMs: o.leaseTtlMs,
      replicas: o.replicas,
      recoveryIntervalMs: o.recoveryIntervalMs,
      ackWaitMs: o.ackWaitMs,
      policy: o.policy,
      logLevel: o.logLevel,
    };

    const unit: ChaosCoordinator = {
      index,
      id,
      get state() {
        return state;
      },
      get pid() {
        return child?.pid ?? null;
      },
      get starts() {
        return starts;
      },
      logs: () => tail,
      pendingSteps: () =>
        [...pending.values()].map(({ step, since }) => ({
          phase: step.phase,
          point: step.point,
          requestId: step.requestId,
          waitingMs: Math.round(performance.now() - since),
        })),
      get partitioned() {
        return relays?.cut ?? false;
      },
      partition() {
        if (!relays) throw new Error(`coordinator ${id}: not connected through relays: it cannot be cut off`);
        relays.cutOff();
      },
      heal() {
        relays?.heal();
      },
      async start() {
        if (state === "up" || state === "paused" || state === "starting") return;
        state = "starting";
        if (o.relayed && !relays) {
          relays = await startRelays(o.servers);
          cfg.servers = relays.urls;
          cfg.relayed = true;
        }
        const c = fork(ENTRY, [], {
          cwd: ROOT,
          execArgv: runningSources(import.meta.url) ? ["--import", "tsx"] : [],
          env: { ...process.env, CXLRC_CHAOS_COORDINATOR: JSON.stringify(cfg) },
          stdio: ["ignore", "ignore", "pipe", "ipc"],
          serialization: "json",
        });
        child = c;
        pending.clear();
        starts++;
        killOnExit(c);
        c.stderr?.on("data", (b: Buffer) => {
          const s = b.toString("utf8");
          tail = (tail + s).slice(-16_384);
          o.logSink?.(index, s);
        });
        exited = new Promise<void>((resolve) => {
          c.on("exit", () => {
            if (child === c) {
              child = null;
              if (state !== "stopped") state = "killed";
            }
            resolve();
          });
        });
        const ready = new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () =>
              reject(
                new Error(
                  `coordinator ${id} did not start within ${startTimeoutMs} ms:\n${tail.slice(-2000)}`,
                ),
              ),
            startTimeoutMs,
          );
          c.on("message", (m: ChildMessage) => {
            if (m.t === "ready") {
              clearTimeout(timer);
              resolve();
            } else if (m.t === "fatal") {
              clearTimeout(timer);
              reject(new Error(`coordinator ${id} failed to start: ${m.message}`));
            } else if (m.t === "step") {
              pending.set(m.seq, { step: m, since: performance.now() });
              const go = () => {
                pending.delete(m.seq);
                if (child === c && c.connected) c.send({ t: "go", seq: m.seq } satisfies ParentMessage);
              };
              // A fault that failed must not leave the coordinator waiting: it goes on either way.
              o.onStep(unit, m).then(go, go);
            }
          });
          void exited.then(() => {
            clearTimeout(timer);
            // Killed on purpose while starting (a fault hit a step of its recovery): not a failure to start.
            if (child !== c) resolve();
            else reject(new Error(`coordinator ${id} exited before it was ready:\n${tail.slice(-2000)}`));
          });
        });
        try {
          await ready;
        } catch (e) {
          c.kill("SIGKILL");
          await exited;
          throw e;
        }
        if (child !== c) return;
        state = "up";
      },
      async kill() {
        const c = child;
        if (!c) return;
        state = "killed";
        child = null;
        c.kill("SIGKILL");
        await exited;
      },
      async restart() {
        await unit.kill();
        await unit.start();
      },
      pause() {
        if (!child || state !== "up") return;
        child.kill("SIGSTOP");
        state = "paused";
      },
      resume() {
        if (!child || state !== "paused") return;
        child.kill("SIGCONT");
        state = "up";
      },
      async stop() {
        const c = child;
        state = "stopped";
        relays?.heal();
        if (c) {
          c.kill("SIGCONT");
          if (c.connected) c.send({ t: "stop" } satisfies ParentMessage);
          const t = setTimeout(() => c.kill("SIGKILL"), 5000);
          await exited;
          clearTimeout(t);
          child = null;
        }
        await relays?.close();
        relays = null;
      },
    };
    return unit;
  });
}
