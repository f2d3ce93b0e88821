// The chaos scenario file (`cxlrc chaos SCENARIO.json`): a bus (1 or 3 NATS nodes), coordinators, a simulated
// fleet, reset requests at given moments and faults at given moments or on triggers, a seed for the random
// ones and a deadline for the whole run. The zod schema is the type and the validator: objects are strict,
// and every problem is reported with the path of the bad key ("scenario.faults[2].target.nats: ...").
import { readFileSync } from "node:fs";
import { z } from "zod";
import { DEFAULT_POLICY } from "../../machines/policy/defaults.ts";
import { RESET_PHASES } from "../../machines/policy/types.ts";
import { Bdf } from "../../shared/bus/agent-messages.ts";
import { HostName, RequestId } from "../../shared/bus/requests.ts";
import { AGENT_OPS } from "../../shared/bus/subjects.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { LOG_LEVELS } from "../../shared/log.ts";
import { FaultSpec } from "../../shared/sim/faults.ts";
import {
  type Fleet,
  FleetSchema,
  formatIssues,
  type HostSpecInput,
  TimingsSchema,
} from "../../shared/sim/fleet-schema.ts";
import { defaultFleet } from "../../shared/sim/load.ts";
import { DEFAULT_AGENT_TIMEOUTS } from "../agent/ops/timeouts.ts";

const Ms = z.number().int().nonnegative();

/** Every phase a coordinator runs a step in (the step hook's names): binding, probing, then the reset phases. */
export const STEP_PHASES = ["binding", "probing", ...RESET_PHASES] as const;
export type StepPhase = (typeof STEP_PHASES)[number];

/**
 * When a fault fires, besides a moment: exactly one of
 * - step: a coordinator reaches this step (before or after its effect); the coordinator waits for the fault;
 * - event: an event of this kind is seen on cxlrc.evt.> (live, as published);
 * - agentOp: an agent receives this operation (it is running: add delayMs to land mid-operation).
 * requestId, host and bdf narrow any of them (for agentOp the request id is matched against the op id).
 */
export const Trigger = z
  .strictObject({
    step: z.enum(STEP_PHASES).optional(),
    point: z.enum(["before", "after"]).optional(),
    event: z.string().min(1).optional(),
    /** event state.entered: the state. */
    state: z.string().min(1).optional(),
    source: z.enum(["coordinator", "agent"]).optional(),
    agentOp: z.enum(AGENT_OPS).optional(),
    requestId: RequestId.optional(),
    host: HostName.optional(),
    bdf: Bdf.optional(),
    /** The nth match (default the first). */
    nth: z.number().int().min(1).default(1),
  })
  .superRefine((t, ctx) => {
    const kinds = (["step", "event", "agentOp"] as const).filter((k) => t[k] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({
        code: "custom",
        path: [],
        message: `name exactly one of step, event, agentOp (got ${kinds.length === 0 ? "none" : kinds.join(", ")})`,
      });
    }
    if (t.point !== undefined && t.step === undefined) {
      ctx.addIssue({ code: "custom", path: ["point"], message: "only with step" });
    }
    for (const k of ["state", "source"] as const) {
      if (t[k] !== undefined && t.event === undefined) {
        ctx.addIssue({ code: "custom", path: [k], message: "only with event" });
      }
    }
    if (t.agentOp !== undefined && t.bdf !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["bdf"],
        message: "agentOp triggers match host and requestId only",
      });
    }
  });
export type Trigger = z.output<typeof Trigger>;

const CoordinatorRef = z.union([z.number().int().nonnegative(), z.enum(["driver", "random"])]);
const AgentRef = z.union([HostName, z.enum(["driver", "random"])]);
const NatsRef = z.union([z.number().int().nonnegative(), z.enum(["stream-leader", "meta-leader", "random"])]);
const DeviceRef = z.union([z.strictObject({ host: HostName, bdf: Bdf }), z.enum(["driver", "random"])]);

export const FaultTarget = z
  .strictObject({
    coordinator: CoordinatorRef.optional(),
    agent: AgentRef.optional(),
    nats: NatsRef.optional(),
    /** With nats "stream-leader": the stream (a KV bucket's stream is KV_<bucket>). Default KV_cxlrc-images. */
    stream: z.string().min(1).optional(),
    device: DeviceRef.optional(),
  })
  .superRefine((t, ctx) => {
    const given = (["coordinator", "agent", "nats", "device"] as const).filter((k) => t[k] !== undefined);
    if (given.length !== 1) {
      ctx.addIssue({
        code: "custom",
        path: [],
        message: `name exactly one of coordinator, agent, nats, device (got ${given.length === 0 ? "none" : given.join(", ")})`,
      });
    }
    if (t.stream !== undefined && t.nats !== "stream-leader") {
      ctx.addIssue({ code: "custom", path: ["stream"], message: 'only with nats: "stream-leader"' });
    }
  });
export type FaultTarget = z.output<typeof FaultTarget>;

export const FAULT_ACTIONS = [
  "kill",
  "restart",
  "pause",
  "freeze",
  "reboot",
  "partition",
  "heal",
  "resume",
  "device-fault",
  "clear-device-fault",
  "stall",
  "slow",
] as const;
export type FaultAction = (typeof FAULT_ACTIONS)[number];

export const ScheduledFault = z
  .strictObject({
    /** A label for the report. */
    name: z.string().min(1).max(120).optional(),
    /** Moment (ms after the run starts); or `on`. */
    at: Ms.optional(),
    on: Trigger.optional(),
    /** After the moment or the trigger, wait this long first. */
    delayMs: Ms.default(0),
    action: z.enum(FAULT_ACTIONS),
    target: FaultTarget,
    /** device-fault: the simulator fault (shared/sim/faults.ts). clear-device-fault: which one (default all). */
    fault: z.unknown().optional(),
    /**
     * kill or reboot → restart, pause or freeze → resume, partition → heal, device-fault → clear, slow → normal,
     * after this long (a kill or reboot without it stays down, a partition stays until a heal).
     */
    durationMs: Ms.optional(),
    /** stall: how long the coordinator's step is held; slow: added to every backend call of the agent. */
    ms: Ms.optional(),
  })
  .superRefine((f, ctx) => {
    const issue = (path: string[], message: string) => ctx.addIssue({ code: "custom", path, message });
    if ((f.at === undefined) === (f.on === undefined))
      issue(["at"], "give exactly one of at (ms) or on (trigger)");
    const kind =
      f.target.coordinator !== undefined
        ? "coordinator"
        : f.target.agent !== undefined
          ? "agent"
          : f.target.nats !== undefined
            ? "nats"
            : "device";
    const allowed: Record<FaultAction, readonly string[]> = {
      kill: ["coordinator", "agent", "nats"],
      restart: ["coordinator", "agent", "nats"],
      pause: ["coordinator", "agent", "nats"],
      freeze: ["agent"],
      reboot: ["agent"],
      partition: ["coordinator", "agent"],
      heal: ["coordinator", "agent"],
      resume: ["coordinator", "agent", "nats"],
      "device-fault": ["device"],
      "clear-device-fault": ["device"],
      stall: ["coordinator"],
      slow: ["agent"],
    };
    if (!allowed[f.action].includes(kind)) {
      issue(["target"], `action ${f.action} is for ${allowed[f.action].join(" or ")} targets, not ${kind}`);
    }
    const onStep = f.on?.step !== undefined;
    const hasDevice = f.on !== undefined;
    if (f.target.coordinator === "driver" && !onStep) {
      issue(["target", "coordinator"], '"driver" needs a step trigger (on.step): the coordinator running it');
    }
    if ((f.target.agent === "driver" || f.target.device === "driver") && !hasDevice) {
      issue(["target"], '"driver" needs a trigger naming a device');
    }
    if (f.action === "stall" && !onStep) issue(["on"], "stall holds a coordinator's step: give on.step");
    if ((f.action === "stall" || f.action === "slow") && f.ms === undefined)
      issue(["ms"], `${f.action} needs ms`);
    if (f.action === "device-fault") {
      const r = FaultSpec.safeParse(f.fault);
      if (!r.success) issue(["fault"], `not a simulator fault: ${formatIssues(r.error, "fault")}`);
    }
    if (f.action === "clear-device-fault" && f.fault !== undefined) {
      const name = (f.fault as { name?: unknown } | null)?.name;
      if (typeof name !== "string")
        issue(["fault"], 'give { "name": FAULT_NAME } or leave it out (all faults)');
    }
  });
export type ScheduledFault = z.output<typeof ScheduledFault>;

export const RequestSpec = z.strictObject({
  /** Moment (ms after the run starts; with `after`, ms after that request ended). */
  at: Ms.default(0),
  /** Send only once this request (of the scenario) has its outcome. */
  after: RequestId.optional(),
  requestId: RequestId,
  host: HostName,
  bdf: Bdf,
  scope: z.enum(["io", "full"]),
  allowEscalation: z.boolean().default(false),
  memClear: z.boolean().default(false),
  method: z.enum(["cxl", "sbr", "vfio"]).optional(),
  reason: z.string().min(1).max(500).default("chaos"),
  dryRun: z.boolean().default(false),
});
export type RequestSpec = z.output<typeof RequestSpec>;

export const RandomRequests = z.strictObject({
  count: z.number().int().min(1).max(100_000),
  fromMs: Ms.default(0),
  /** Requests are spread uniformly over [fromMs, fromMs + spreadMs]. */
  spreadMs: Ms.default(10_000),
  /** Share of full-scope requests (the rest are io). */
  fullRatio: z.number().min(0).max(1).default(0.5),
  /** Share of io requests that allow escalation. */
  escalateRatio: z.number().min(0).max(1).default(0.5),
  idPrefix: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,40}$/)
    .default("rnd"),
});

export const RANDOM_FAULT_KINDS = [
  "device",
  "agent-kill",
  "agent-slow",
  "agent-freeze",
  "agent-partition",
  "host-reboot",
  "coordinator-kill",
  "coordinator-pause",
  "coordinator-partition",
  "nats-kill",
  "nats-pause",
] as const;
export type RandomFaultKind = (typeof RANDOM_FAULT_KINDS)[number];

export const RandomFaults = z.strictObject({
  count: z.number().int().min(0).max(10_000),
  fromMs: Ms.default(0),
  spreadMs: Ms.default(10_000),
  kinds: z.array(z.enum(RANDOM_FAULT_KINDS)).min(1).default(["device", "agent-kill", "coordinator-kill"]),
  /** How long a killed or paused component stays down (restart / resume after it), and a device fault stays. */
  downMs: Ms.default(1500),
});

const GenerateFleet = z.strictObject({
  hosts: z.number().int().min(1).max(64),
  devicesPerHost: z.number().int().min(1).max(200),
  /** Host names are <prefix><n>. */
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9-]{1,32}$/)
    .default("host"),
  /** Every nth device has no FLR (io requests are refused or escalated). 0 = never. */
  noFlrEvery: z.number().int().min(0).default(5),
  /** Every nth device has two committed decoders. 0 = never. */
  twoDecodersEvery: z.number().int().min(0).default(3),
  /**
   * The driver the kernel bound to every device at boot (e.g. "cxl_pci": it holds the device and claims its
   * BAR, so a full reset hands it over and back). null: none.
   */
  driver: z.string().min(1).max(64).nullable().default(null),
});
export type GenerateFleet = z.output<typeof GenerateFleet>;

const FleetChoice = z.union([
  z.literal("default"),
  z.strictObject({ generate: GenerateFleet }),
  z.strictObject({ hosts: z.array(z.unknown()).min(1) }),
]);

export const ScenarioSchema = z
  .strictObject({
    name: z.string().min(1).max(200).default("chaos"),
    description: z.string().max(2000).optional(),
    /** Seed of every random choice (random requests and faults, "random" targets). */
    seed: z.number().int().default(1),
    /** The whole run, start to report. */
    deadlineMs: z.number().int().min(1000).max(3_600_000).default(120_000),
    /**
     * When everything still down is brought back (killed components restarted, paused ones resumed) so every
     * request can finish. Default: 60% of the deadline, or earlier once every request ended and every timed
     * fault fired.
     */
    settleAtMs: Ms.optional(),
    cluster: z
      .strictObject({
        size: z
          .number()
          .int()
          .refine((n) => n === 1 || n === 3, "1 (one server) or 3 (a cluster)")
          .default(3),
      })
      .default({ size: 3 }),
    coordinators: z
      .strictObject({
        count: z.number().int().min(1).max(8).default(2),
        /** Device lease time. On 3 nodes keep it above leader failover (4–6 s on nats-server 2.9). */
        leaseTtlMs: z.number().int().min(500).max(600_000).default(10_000),
        recoveryIntervalMs: z.number().int().min(100).max(60_000).default(1000),
        /** Redelivery of a request whose coordinator died before acknowledging it. */
        ackWaitMs: z.number().int().min(1000).max(600_000).default(5000),
        /** Policy overrides (machines/policy/defaults.ts keys). */
        policy: z.record(z.string(), z.unknown()).default({}),
        logLevel: z.enum(LOG_LEVELS).default("silent"),
      })
      .default({
        count: 2,
        leaseTtlMs: 10_000,
        recoveryIntervalMs: 1000,
        ackWaitMs: 5000,
        policy: {},
        logLevel: "silent",
      }),
    fleet: FleetChoice.default("default"),
    /** Device timings of every simulated device (shared/sim: commitDelayMs, notReadyMs…). */
    timings: TimingsSchema.default({}),
    /** Agent wait overrides (services/agent/ops/timeouts.ts keys). */
    agentTimeouts: z.record(z.string(), z.number().nonnegative()).default({}),
    requests: z.array(RequestSpec).default([]),
    randomRequests: RandomRequests.optional(),
    faults: z.array(ScheduledFault).default([]),
    randomFaults: RandomFaults.optional(),
  })
  .superRefine((s, ctx) => {
    const ids = new Set<string>();
    const all = new Set(s.requests.map((r) => r.requestId));
    s.requests.forEach((r, i) => {
      if (r.after !== undefined && (!all.has(r.after) || r.after === r.requestId)) {
        ctx.addIssue({
          code: "custom",
          path: ["requests", i, "after"],
          message: `no other request ${r.after} in this scenario`,
        });
      }
      if (ids.has(r.requestId)) {
        ctx.addIssue({
          code: "custom",
          path: ["requests", i, "requestId"],
          message: `duplicate ${r.requestId}`,
        });
      }
      ids.add(r.requestId);
      if (r.at > s.deadlineMs) {
        ctx.addIssue({ code: "custom", path: ["requests", i, "at"], message: "after the deadline" });
      }
    });
    s.faults.forEach((f, i) => {
      const c = f.target.coordinator;
      if (typeof c === "number" && c >= s.coordinators.count) {
        ctx.addIssue({
          code: "custom",
          path: ["faults", i, "target", "coordinator"],
          message: `no coordinator ${c} (count ${s.coordinators.count}: 0..${s.coordinators.count - 1})`,
        });
      }
      const n = f.target.nats;
      if (typeof n === "number" && n >= s.cluster.size) {
        ctx.addIssue({
          code: "custom",
          path: ["faults", i, "target", "nats"],
          message: `no NATS node ${n} (cluster size ${s.cluster.size}: 0..${s.cluster.size - 1})`,
        });
      }
    });
  });
export type Scenario = z.output<typeof ScenarioSchema>;
export type ScenarioInput = z.input<typeof ScenarioSchema>;

/** A validated scenario and its fleet, checked against each other. */
export interface LoadedScenario {
  scenario: Scenario;
  fleet: Fleet;
}

function fail(message: string): never {
  throw new CxlrcError("bad-input", message);
}

/** The generated fleet: per host one root port and one device per bus, firmware decoders at distinct bases. */
export function generateFleet(g: GenerateFleet): Fleet {
  const hosts: HostSpecInput[] = [];
  for (let h = 0; h < g.hosts; h++) {
    const bridges = [];
    const devices = [];
    for (let d = 0; d < g.devicesPerHost; d++) {
      const bus = d + 1;
      const busHex = bus.toString(16).padStart(2, "0");
      const slot = Math.floor(d / 8) + 1;
      const fn = d % 8;
      const port = `0000:00:${slot.toString(16).padStart(2, "0")}.${fn}`;
      bridges.push({ bdf: port, kind: "root-port" as const, secondaryBus: bus });
      const base = 0x1_0000_0000 + (h * 256 + d) * 0x4000_0000;
      const two = g.twoDecodersEvery > 0 && d % g.twoDecodersEvery === g.twoDecodersEvery - 1;
      const decoders = [{ base, size: 0x1000_0000 }];
      if (two) decoders.push({ base: base + 0x1000_0000, size: 0x1000_0000 });
      devices.push({
        bdf: `0000:${busHex}:00.0`,
        parent: port,
        flr: !(g.noFlrEvery > 0 && d % g.noFlrEvery === g.noFlrEvery - 1),
        ...(two ? { ranges: [{ size: 0x2000_0000 }] } : {}),
        firmware: { decoders },
        driver: g.driver,
      });
    }
    hosts.push({ name: `${g.prefix}${h + 1}`, bridges, devices });
  }
  const r = FleetSchema.safeParse({ hosts });
  if (!r.success) fail(`generated fleet is invalid: ${formatIssues(r.error, "fleet")}`);
  return r.data;
}

function fleetOf(s: Scenario): Fleet {
  if (s.fleet === "default") return defaultFleet();
  if ("generate" in s.fleet) return generateFleet(s.fleet.generate);
  const r = FleetSchema.safeParse({ hosts: s.fleet.hosts });
  if (!r.success) fail(`invalid scenario: ${formatIssues(r.error, "scenario.fleet")}`);
  return r.data;
}

/** Every CXL device of the fleet (function 0 addresses), per host. */
export function fleetDevices(fleet: Fleet): Array<{ host: string; bdf: string }> {
  return fleet.hosts.flatMap((h) => h.devices.map((d) => ({ host: h.name, bdf: d.bdf })));
}

/** Validate a parsed scenario object; CxlrcError("bad-input") naming every bad key. */
export function parseScenario(raw: unknown): LoadedScenario {
  const r = ScenarioSchema.safeParse(raw);
  if (!r.success) fail(`invalid scenario: ${formatIssues(r.error, "scenario")}`);
  const scenario = r.data;
  const fleet = fleetOf(scenario);
  const hosts = new Map(fleet.hosts.map((h) => [h.name, new Set(h.devices.map((d) => d.bdf))]));
  const problems: string[] = [];
  const checkDevice = (path: string, host: string, bdf: string) => {
    const devs = hosts.get(host);
    if (!devs) problems.push(`${path}.host: no host ${host} in the fleet (${[...hosts.keys()].join(", ")})`);
    else if (!devs.has(bdf)) problems.push(`${path}.bdf: no device ${bdf} on host ${host}`);
  };
  scenario.requests.forEach((q, i) => {
    checkDevice(`scenario.requests[${i}]`, q.host, q.bdf);
  });
  scenario.faults.forEach((f, i) => {
    const p = `scenario.faults[${i}]`;
    const dev = f.target.device;
    if (dev && typeof dev === "object") checkDevice(`${p}.target.device`, dev.host, dev.bdf);
    const agent = f.target.agent;
    if (agent !== undefined && agent !== "driver" && agent !== "random" && !hosts.has(agent)) {
      problems.push(`${p}.target.agent: no host ${agent} in the fleet`);
    }
    const on = f.on as { host?: string; bdf?: string } | undefined;
    if (on?.host !== undefined && !hosts.has(on.host))
      problems.push(`${p}.on.host: no host ${on.host} in the fleet`);
  });
  for (const k of Object.keys(scenario.coordinators.policy)) {
    if (!(k in DEFAULT_POLICY)) problems.push(`scenario.coordinators.policy.${k}: not a policy key`);
  }
  for (const k of Object.keys(scenario.agentTimeouts)) {
    if (!(k in DEFAULT_AGENT_TIMEOUTS)) problems.push(`scenario.agentTimeouts.${k}: not an agent timeout`);
  }
  if (problems.length > 0) fail(`invalid scenario: ${problems.join("; ")}`);
  return { scenario, fleet };
}

/** Read and validate a scenario file. */
export function loadScenario(path: string): LoadedScenario {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CxlrcError("bad-input", `cannot read scenario ${path}`, { path }, { cause: e });
  }
  return parseScenario(raw);
}
