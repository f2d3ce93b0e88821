// The fault driver: fires each planned fault at its moment or on its trigger (a coordinator's step, a live
// event, an agent operation), resolves its target (an index, "driver", "random", the stream leader…), does
// it, and undoes it after durationMs (restart, resume, clear). Every fault it fired is recorded for the
// report. settle() brings back everything still down so the run can finish.
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { decodeJson, type EventEnvelope } from "../../shared/bus/codec.ts";
import { AGENT_OPS } from "../../shared/bus/subjects.ts";
import type { ClusterHandle } from "../../shared/natsd/cluster.ts";
import type { Rng } from "../../shared/rng.ts";
import { FaultSpec } from "../../shared/sim/faults.ts";
import type { ChaosCoordinator, StepReport } from "./coordinators.ts";
import type { ChaosHost } from "./hosts.ts";
import type { PlannedFault } from "./plan.ts";
import type { Recorder } from "./recorder.ts";
import type { Trigger } from "./scenario.ts";

export interface FaultRecord {
  name: string;
  source: "scenario" | "random" | "undo" | "settle";
  action: string;
  /** What was hit, resolved: "coordinator c1", "agent host2", "nats n2 (leader of KV_cxlrc-images)"… */
  target: string;
  /** ms after the run started. */
  atMs: number;
  trigger: string | null;
  ok: boolean;
  detail?: string;
}

interface TriggerContext {
  host?: string;
  bdf?: string;
  requestId?: string | null;
  coordinator?: ChaosCoordinator;
}

export interface FaultDriverDeps {
  faults: PlannedFault[];
  cluster: ClusterHandle;
  coordinators: ChaosCoordinator[];
  hosts: Map<string, ChaosHost>;
  /** Every device of the fleet (for "random" device targets). */
  devices: Array<{ host: string; bdf: string }>;
  recorder: Recorder;
  nc: NatsConnection;
  rng: Rng;
  t0: number;
  log?: (line: string) => void;
}

export interface FaultDriver {
  readonly records: readonly FaultRecord[];
  /** Called by the coordinators for every step; resolves when the step may go on. */
  onStep(c: ChaosCoordinator, s: StepReport): Promise<void>;
  /** Faults planned but never fired (a trigger that did not come). */
  unfired(): PlannedFault[];
  /** Every timed fault has fired and every undo has run. */
  idle(): boolean;
  /** No more faults; undo what is pending now; restart / resume everything still down. */
  settle(): Promise<void>;
  stop(): void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function describeTrigger(t: Trigger): string {
  const what = t.step
    ? `step ${t.step} (${t.point ?? "before"})`
    : t.event
      ? `event ${t.event}${t.state ? `=${t.state}` : ""}`
      : `agent op ${t.agentOp}`;
  const narrow = [t.requestId, t.host, t.bdf].filter(Boolean).join(" ");
  return `${what}${narrow ? ` of ${narrow}` : ""}${t.nth > 1 ? ` #${t.nth}` : ""}`;
}

export function startFaultDriver(d: FaultDriverDeps): FaultDriver {
  const records: FaultRecord[] = [];
  const timers = new Set<NodeJS.Timeout>();
  /** Undo actions waiting for their durationMs, by key, so settle() can run them at once. */
  const undos = new Map<number, { run: () => Promise<void>; timer: NodeJS.Timeout }>();
  let undoSeq = 0;
  const fired = new Set<PlannedFault>();
  const counts = new Map<PlannedFault, number>();
  let stopped = false;
  let pendingTimed = 0;
  const running = new Set<Promise<unknown>>();
  const now = () => Math.round(performance.now() - d.t0);
  const log = d.log ?? (() => undefined);

  const record = (r: Omit<FaultRecord, "atMs">) => {
    const full = { ...r, atMs: now() };
    records.push(full);
    log(
      `${String(full.atMs).padStart(6)} ms  ${full.ok ? "fault" : "FAULT FAILED"} ${full.action} ${full.target}${full.trigger ? ` on ${full.trigger}` : ""}${full.detail ? ` (${full.detail})` : ""}`,
    );
  };

  const track = <T>(p: Promise<T>): Promise<T> => {
    running.add(p);
    void p.finally(() => running.delete(p)).catch(() => undefined);
    return p;
  };

  const scheduleUndo = (ms: number, undo: () => Promise<void>) => {
    const key = ++undoSeq;
    const run = () =>
      undo().catch((e: unknown) =>
        record({
          name: "undo",
          source: "undo",
          action: "undo",
          target: "?",
          trigger: null,
          ok: false,
          detail: (e as Error).message,
        }),
      );
    const timer = setTimeout(() => {
      undos.delete(key);
      void track(run());
    }, ms);
    undos.set(key, { run, timer });
  };

  // -------------------------------------------------------------------------------------------------
  // Targets

  const upCoordinators = () => d.coordinators.filter((c) => c.state === "up");

  const resolveCoordinator = (f: PlannedFault, ctx: TriggerContext): ChaosCoordinator | null => {
    const ref = f.target.coordinator;
    if (ref === "driver") return ctx.coordinator ?? null;
    if (ref === "random") {
      const live = f.action === "restart" || f.action === "resume" ? d.coordinators : upCoordinators();
      return live.length > 0 ? d.rng.pick(live) : null;
    }
    return typeof ref === "number" ? (d.coordinators[ref] ?? null) : null;
  };

  const resolveHost = (f: PlannedFault, ctx: TriggerContext): ChaosHost | null => {
    const ref = f.target.agent;
    if (ref === "driver") return ctx.host ? (d.hosts.get(ctx.host) ?? null) : null;
    if (ref === "random") return d.rng.pick([...d.hosts.values()]);
    return ref ? (d.hosts.get(ref) ?? null) : null;
  };

  const resolveNats = async (f: PlannedFault): Promise<{ index: number; why: string } | null> => {
    const ref = f.target.nats;
    if (typeof ref === "number") return { index: ref, why: "" };
    if (ref === "stream-leader") {
      const stream = f.target.stream ?? "KV_cxlrc-images";
      const i = await d.cluster.streamLeader(stream, 5000);
      return i < 0 ? null : { index: i, why: `leader of ${stream}` };
    }
    if (ref === "meta-leader") {
      const name = await d.cluster.metaLeader(5000).catch(() => "");
      const i = d.cluster.indexOf(name);
      return i < 0 ? null : { index: i, why: "meta leader" };
    }
    const running = d.cluster.nodes.filter((n) => n.running && !n.paused).map((n) => n.index);
    return running.length > 0 ? { index: d.rng.pick(running), why: "random" } : null;
  };

  const resolveDevice = (f: PlannedFault, ctx: TriggerContext): { host: ChaosHost; bdf: string } | null => {
    const ref = f.target.device;
    if (ref === "driver") {
      const h = ctx.host ? d.hosts.get(ctx.host) : undefined;
      return h && ctx.bdf ? { host: h, bdf: ctx.bdf } : null;
    }
    if (ref === "random") {
      if (d.devices.length === 0) return null;
      const pick = d.rng.pick(d.devices);
      const h = d.hosts.get(pick.host);
      return h ? { host: h, bdf: pick.bdf } : null;
    }
    if (ref && typeof ref === "object") {
      const h = d.hosts.get(ref.host);
      return h ? { host: h, bdf: ref.bdf } : null;
    }
    return null;
  };

  // -------------------------------------------------------------------------------------------------
  // Actions

  /** A coordinator or agent cut off from the bus while it runs on (and healed after durationMs), or healed. */
  const partitionOrHeal = (
    f: PlannedFault,
    base: Pick<FaultRecord, "name" | "source" | "action" | "trigger">,
    target: string,
    unit: { partition(): void; heal(): void },
  ): void => {
    if (f.action === "heal") {
      unit.heal();
      record({ ...base, target, ok: true });
      return;
    }
    unit.partition();
    record({
      ...base,
      target,
      ok: true,
      detail: `cut off from the bus, ${f.durationMs !== undefined ? `healed in ${f.durationMs} ms` : "until healed"}`,
    });
    if (f.durationMs !== undefined) {
      scheduleUndo(f.durationMs, async () => {
        unit.heal();
        record({ name: base.name, source: "undo", action: "heal", target, trigger: null, ok: true });
      });
    }
  };

  const execute = async (f: PlannedFault, ctx: TriggerContext, trigger: string | null): Promise<void> => {
    if (f.delayMs > 0) await sleep(f.delayMs);
    if (stopped) return;
    const name = f.name ?? `${f.action}`;
    const source = f.source;
    const base = { name, source, action: f.action, trigger };
    try {
      if (f.target.coordinator !== undefined) {
        const c = resolveCoordinator(f, ctx);
        if (!c) return record({ ...base, target: "coordinator (none to hit)", ok: false });
        const target = `coordinator ${c.id}`;
        switch (f.action) {
          case "kill":
            await c.kill();
            record({
              ...base,
              target,
              ok: true,
              detail: `pid killed, ${f.durationMs !== undefined ? `restart in ${f.durationMs} ms` : "stays down"}`,
            });
            if (f.durationMs !== undefined) {
              scheduleUndo(f.durationMs, async () => {
                if (stopped || c.state !== "killed") return;
                await c.start();
                record({ name, source: "undo", action: "restart", target, trigger: null, ok: true });
              });
            }
            return;
          case "restart":
            if (c.state === "killed" || c.state === "stopped") await c.start();
            else await c.restart();
            return record({ ...base, target, ok: true });
          case "pause":
            c.pause();
            record({ ...base, target, ok: true, detail: "SIGSTOP" });
            if (f.durationMs !== undefined) {
              scheduleUndo(f.durationMs, async () => {
                if (c.state !== "paused") return;
                c.resume();
                record({ name, source: "undo", action: "resume", target, trigger: null, ok: true });
              });
            }
            return;
          case "resume":
            c.resume();
            return record({ ...base, target, ok: true, detail: "SIGCONT" });
          case "partition":
          case "heal":
            return partitionOrHeal(f, base, target, c);
          case "stall":
            record({ ...base, target, ok: true, detail: `step held ${f.ms} ms` });
            await sleep(f.ms ?? 0);
            return;
          default:
            return record({ ...base, target, ok: false, detail: "not a coordinator action" });
        }
      }
      if (f.target.agent !== undefined) {
        const h = resolveHost(f, ctx);
        if (!h) return record({ ...base, target: "agent (none to hit)", ok: false });
        const target = `agent ${h.name}`;
        switch (f.action) {
          case "kill":
          case "reboot": {
            // A reboot is the host down whole: its agent killed as by a kill, its devices powered on as at boot.
            const reboot = f.action === "reboot";
            const { midOperation } = await (reboot ? h.reboot() : h.kill());
            const back = f.durationMs !== undefined ? `restart in ${f.durationMs} ms` : "stays down";
            record({
              ...base,
              target: reboot ? `host ${h.name}` : target,
              ok: true,
              detail: reboot
                ? `agent ${midOperation ? "mid-operation" : "idle"}, devices powered on as at boot, agent ${back}`
                : `${midOperation ? "mid-operation" : "idle"}, ${back}`,
            });
            if (f.durationMs !== undefined) {
              scheduleUndo(f.durationMs, async () => {
                if (stopped || h.state !== "killed") return;
                await h.start();
                record({ name, source: "undo", action: "restart", target, trigger: null, ok: true });
              });
            }
            return;
          }
          case "restart":
            if (h.state === "killed") await h.start();
            else await h.restart();
            return record({ ...base, target, ok: true });
          case "pause":
          case "freeze":
            // A pause hangs the agent's register accesses; a freeze stops it whole, its bus traffic too.
            if (f.action === "freeze") h.freeze();
            else h.pause();
            record({
              ...base,
              target,
              ok: true,
              ...(f.action === "freeze" ? { detail: "hardware and bus held (SIGSTOP)" } : {}),
            });
            if (f.durationMs !== undefined) {
              scheduleUndo(f.durationMs, async () => {
                h.resume();
                record({ name, source: "undo", action: "resume", target, trigger: null, ok: true });
              });
            }
            return;
          case "resume":
            h.resume();
            return record({ ...base, target, ok: true });
          case "partition":
          case "heal":
            return partitionOrHeal(f, base, target, h);
          case "slow":
            h.slow(f.ms ?? 0);
            record({ ...base, target, ok: true, detail: `+${f.ms} ms per register access` });
            if (f.durationMs !== undefined) {
              scheduleUndo(f.durationMs, async () => {
                h.slow(0);
                record({
                  name,
                  source: "undo",
                  action: "slow",
                  target,
                  trigger: null,
                  ok: true,
                  detail: "normal speed",
                });
              });
            }
            return;
          default:
            return record({ ...base, target, ok: false, detail: "not an agent action" });
        }
      }
      if (f.target.nats !== undefined) {
        // One node impaired at a time: a kill or pause waits until every stream is whole again (a node back
        // from the last fault has caught up); otherwise it is a quorum loss, not a node failure.
        if ((f.action === "kill" || f.action === "pause") && d.cluster.size > 1) {
          try {
            await d.cluster.waitHealthy(30_000);
          } catch (e) {
            return record({ ...base, target: "nats", ok: false, detail: `skipped: ${(e as Error).message}` });
          }
          if (stopped) return;
        }
        const n = await resolveNats(f);
        if (!n) return record({ ...base, target: "nats (no node found)", ok: false });
        const node = d.cluster.nodes[n.index];
        const target = `nats ${node?.name ?? n.index}${n.why ? ` (${n.why})` : ""}`;
        switch (f.action) {
          case "kill":
            await d.cluster.kill(n.index);
            record({
              ...base,
              target,
              ok: true,
              detail: f.durationMs !== undefined ? `restart in ${f.durationMs} ms` : "stays down",
            });
            if (f.durationMs !== undefined) {
              scheduleUndo(f.durationMs, async () => {
                if (stopped || node?.running) return;
                await d.cluster.restart(n.index);
                record({ name, source: "undo", action: "restart", target, trigger: null, ok: true });
              });
            }
            return;
          case "restart":
            await d.cluster.restart(n.index);
            return record({ ...base, target, ok: true });
          case "pause":
            d.cluster.pause(n.index);
            record({ ...base, target, ok: true, detail: "SIGSTOP" });
            if (f.durationMs !== undefined) {
              scheduleUndo(f.durationMs, async () => {
                d.cluster.resume(n.index);
                record({ name, source: "undo", action: "resume", target, trigger: null, ok: true });
              });
            }
            return;
          case "resume":
            d.cluster.resume(n.index);
            return record({ ...base, target, ok: true });
          default:
            return record({ ...base, target, ok: false, detail: "not a NATS action" });
        }
      }
      const dev = resolveDevice(f, ctx);
      if (!dev) return record({ ...base, target: "device (none found)", ok: false });
      const target = `device ${dev.host.name} ${dev.bdf}`;
      if (f.action === "device-fault") {
        const spec = FaultSpec.parse(f.fault);
        dev.host.sim.faults.set(dev.bdf, spec);
        record({ ...base, target, ok: true, detail: spec.name });
        if (f.durationMs !== undefined) {
          scheduleUndo(f.durationMs, async () => {
            dev.host.sim.faults.clear(dev.bdf, spec.name);
            record({
              name,
              source: "undo",
              action: "clear-device-fault",
              target,
              trigger: null,
              ok: true,
              detail: spec.name,
            });
          });
        }
        return;
      }
      const which = (f.fault as { name?: FaultSpec["name"] } | undefined)?.name;
      dev.host.sim.faults.clear(dev.bdf, which);
      return record({ ...base, target, ok: true, detail: which ?? "all" });
    } catch (e) {
      record({ ...base, target: JSON.stringify(f.target), ok: false, detail: (e as Error).message });
    }
  };

  const fire = (f: PlannedFault, ctx: TriggerContext, trigger: string | null): Promise<void> => {
    fired.add(f);
    return track(execute(f, ctx, trigger));
  };

  /** Counts a match; true when this one is the nth. */
  const nthMatch = (f: PlannedFault): boolean => {
    if (fired.has(f)) return false;
    const n = (counts.get(f) ?? 0) + 1;
    counts.set(f, n);
    return n === (f.on?.nth ?? 1);
  };

  // Timed faults.
  for (const f of d.faults) {
    if (f.at === undefined) continue;
    pendingTimed++;
    const t = setTimeout(
      () => {
        timers.delete(t);
        void fire(f, {}, null).finally(() => {
          pendingTimed--;
        });
      },
      Math.max(0, d.t0 + f.at - performance.now()),
    );
    timers.add(t);
  }

  // Event triggers (live).
  const eventFaults = d.faults.filter((f) => f.on?.event !== undefined);
  const offLive =
    eventFaults.length === 0
      ? () => undefined
      : d.recorder.onLive((e: EventEnvelope) => {
          if (stopped) return;
          for (const f of eventFaults) {
            const t = f.on!;
            if (e.kind !== t.event) continue;
            if (t.source !== undefined && e.source !== t.source) continue;
            if (t.requestId !== undefined && e.requestId !== t.requestId) continue;
            if (t.host !== undefined && e.host !== t.host) continue;
            if (t.bdf !== undefined && e.bdf !== t.bdf) continue;
            if (t.state !== undefined && (e.data as { state?: unknown }).state !== t.state) continue;
            if (!nthMatch(f)) continue;
            void fire(
              f,
              { host: e.host, ...(e.bdf ? { bdf: e.bdf } : {}), requestId: e.requestId ?? null },
              describeTrigger(t),
            );
          }
        });

  // Agent operation triggers: a plain subscription sees every request the agents' queue group gets.
  const opFaults = d.faults.filter((f) => f.on?.agentOp !== undefined);
  const subs: Subscription[] = [];
  for (const op of new Set(opFaults.map((f) => f.on!.agentOp!))) {
    if (!AGENT_OPS.includes(op)) continue;
    subs.push(
      d.nc.subscribe(`cxlrc.agent.*.${op}`, {
        callback: (_err, m) => {
          if (stopped) return;
          const host = m.subject.split(".")[2] ?? "";
          let body: { opId?: string; bdf?: string } = {};
          try {
            body = decodeJson(m) as typeof body;
          } catch {
            return;
          }
          for (const f of opFaults) {
            const t = f.on!;
            if (t.agentOp !== op) continue;
            if (t.host !== undefined && t.host !== host) continue;
            if (t.requestId !== undefined && !body.opId?.startsWith(`${t.requestId}/`)) continue;
            if (!nthMatch(f)) continue;
            void fire(
              f,
              { host, ...(body.bdf ? { bdf: body.bdf } : {}), requestId: body.opId?.split("/")[0] ?? null },
              describeTrigger(t),
            );
          }
        },
      }),
    );
  }

  // Step triggers.
  const stepFaults = d.faults.filter((f) => f.on?.step !== undefined);

  return {
    records,
    async onStep(c, s) {
      if (stopped || stepFaults.length === 0) return;
      const hits: PlannedFault[] = [];
      for (const f of stepFaults) {
        const t = f.on!;
        if (t.step !== s.phase || (t.point ?? "before") !== s.point) continue;
        if (t.requestId !== undefined && s.requestId !== t.requestId) continue;
        if (t.host !== undefined && s.host !== t.host) continue;
        if (t.bdf !== undefined && s.bdf !== t.bdf) continue;
        if (nthMatch(f)) hits.push(f);
      }
      // The coordinator waits for its faults (a kill of itself never returns to it).
      for (const f of hits) {
        await fire(
          f,
          { host: s.host, bdf: s.bdf, requestId: s.requestId, coordinator: c },
          describeTrigger(f.on!),
        );
      }
    },
    unfired: () => d.faults.filter((f) => !fired.has(f)),
    idle: () => pendingTimed === 0 && undos.size === 0 && running.size === 0,
    async settle() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      offLive();
      for (const s of subs) s.unsubscribe();
      const pending = [...undos.values()];
      undos.clear();
      for (const u of pending) {
        clearTimeout(u.timer);
        await u.run().catch(() => undefined);
      }
      await Promise.allSettled([...running]);
      // Whatever is still down comes back (a failure to bring something back is recorded, not thrown).
      const back = async (target: string, action: string, fn: () => Promise<void> | void) => {
        try {
          await fn();
          record({ name: "settle", source: "settle", action, target, trigger: null, ok: true });
        } catch (e) {
          record({
            name: "settle",
            source: "settle",
            action,
            target,
            trigger: null,
            ok: false,
            detail: (e as Error).message,
          });
        }
      };
      for (const [i, n] of d.cluster.nodes.entries()) {
        if (n.paused) await back(`nats ${n.name}`, "resume", () => d.cluster.resume(i));
        else if (!n.running) await back(`nats ${n.name}`, "restart", () => d.cluster.restart(i));
      }
      for (const h of d.hosts.values()) {
        if (h.state === "paused" || h.state === "frozen") h.resume();
        if (h.partitioned) await back(`agent ${h.name}`, "heal", () => h.heal());
        h.slow(0);
        if (h.state === "killed") await back(`agent ${h.name}`, "restart", () => h.start());
      }
      for (const c of d.coordinators) {
        if (c.partitioned) await back(`coordinator ${c.id}`, "heal", () => c.heal());
        if (c.state === "paused") await back(`coordinator ${c.id}`, "resume", () => c.resume());
        else if (c.state === "killed") await back(`coordinator ${c.id}`, "restart", () => c.start());
      }
    },
    stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      for (const u of undos.values()) clearTimeout(u.timer);
      undos.clear();
      offLive();
      for (const s of subs) s.unsubscribe();
    },
  };
}
