// The chaos runner's own parts without a bus: the scenario schema (bad keys are named), the seeded plan, and
// the invariant checker on hand-made traces (each invariant is shown to catch what it is about).
import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { RESET_PHASES } from "../../machines/policy/types.ts";
import { killEveryStep } from "../../services/chaos/builders.ts";
import {
  type CheckInput,
  checkChaosInvariants,
  type FunctionReading,
} from "../../services/chaos/invariants.ts";
import { planScenario } from "../../services/chaos/plan.ts";
import type { RecordedEvent } from "../../services/chaos/recorder.ts";
import type { ChaosReport } from "../../services/chaos/report.ts";
import {
  generateFleet,
  loadScenario,
  parseScenario,
  type RequestSpec,
} from "../../services/chaos/scenario.ts";
import { SWEEP_STEPS, sweepLine, sweepRuns } from "../../services/chaos/sweep.ts";
import type { ImageRecord } from "../../services/coordinator/store.ts";
import type { EventEnvelope } from "../../shared/bus/codec.ts";

const scenarioFile = (name: string) =>
  new URL(`../../services/chaos/scenarios/${name}.json`, import.meta.url).pathname;

describe("scenario files", () => {
  it("every bundled scenario is valid", () => {
    const names = readdirSync(new URL("../../services/chaos/scenarios/", import.meta.url))
      .filter((f) => f.endsWith(".json"))
      .map((f) => f.slice(0, -5));
    expect(names).toEqual(expect.arrayContaining(["agent-frozen", "fleet-random", "pause"]));
    for (const name of names) {
      const { scenario, fleet } = loadScenario(scenarioFile(name));
      expect(scenario.name.length).toBeGreaterThan(0);
      expect(fleet.hosts.length).toBeGreaterThan(0);
    }
    expect(parseScenario(killEveryStep()).scenario.faults).toHaveLength(2 * RESET_PHASES.length);
  });

  it("names the bad key: unknown fields, bad targets, devices not in the fleet, policy keys", () => {
    const bad = (raw: unknown) => {
      try {
        parseScenario(raw);
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error("accepted");
    };
    expect(
      bad({ requests: [{ requestId: "a", host: "alpha", bdf: "0000:01:00.0", scope: "io", colour: 1 }] }),
    ).toMatch(/scenario\.requests\[0\].*"colour"/);
    expect(bad({ cluster: { size: 2 } })).toMatch(/scenario\.cluster\.size: 1 \(one server\) or 3/);
    expect(bad({ faults: [{ at: 1, action: "kill", target: { nats: 4 } }] })).toMatch(
      /scenario\.faults\[0\]\.target\.nats: no NATS node 4/,
    );
    expect(bad({ faults: [{ at: 1, action: "kill", target: { agent: "alpha", nats: 0 } }] })).toMatch(
      /scenario\.faults\[0\]\.target: name exactly one of coordinator, agent, nats, device/,
    );
    expect(bad({ faults: [{ at: 1, action: "freeze", target: { coordinator: 0 } }] })).toMatch(
      /scenario\.faults\[0\]\.target: action freeze is for agent targets, not coordinator/,
    );
    expect(bad({ faults: [{ at: 1, action: "reboot", target: { nats: 0 } }] })).toMatch(
      /scenario\.faults\[0\]\.target: action reboot is for agent targets, not nats/,
    );
    expect(bad({ faults: [{ at: 1, action: "partition", target: { nats: 0 } }] })).toMatch(
      /scenario\.faults\[0\]\.target: action partition is for coordinator or agent targets, not nats/,
    );
    expect(bad({ faults: [{ at: 1, action: "stall", target: { coordinator: 0 }, ms: 5 }] })).toMatch(
      /scenario\.faults\[0\]\.on: stall holds a coordinator's step/,
    );
    expect(
      bad({ faults: [{ at: 1, on: { step: "resetting" }, action: "kill", target: { coordinator: 0 } }] }),
    ).toMatch(/scenario\.faults\[0\]\.at: give exactly one of at/);
    expect(
      bad({
        faults: [
          {
            at: 1,
            action: "device-fault",
            target: { device: { host: "alpha", bdf: "0000:01:00.0" } },
            fault: { name: "melt" },
          },
        ],
      }),
    ).toMatch(/scenario\.faults\[0\]\.fault: not a simulator fault/);
    expect(bad({ requests: [{ requestId: "a", host: "alpha", bdf: "0000:0f:00.0", scope: "io" }] })).toMatch(
      /scenario\.requests\[0\]\.bdf: no device 0000:0f:00.0 on host alpha/,
    );
    expect(bad({ requests: [{ requestId: "a", host: "zulu", bdf: "0000:01:00.0", scope: "io" }] })).toMatch(
      /scenario\.requests\[0\]\.host: no host zulu/,
    );
    expect(bad({ coordinators: { policy: { maxConcurrentPerHots: 3 } } })).toMatch(
      /scenario\.coordinators\.policy\.maxConcurrentPerHots: not a policy key/,
    );
    expect(
      bad({ requests: [{ requestId: "a", after: "b", host: "alpha", bdf: "0000:01:00.0", scope: "io" }] }),
    ).toMatch(/scenario\.requests\[0\]\.after: no other request b/);
  });

  it("a generated fleet has the asked shape (and is a valid fleet)", () => {
    const fleet = generateFleet({
      hosts: 5,
      devicesPerHost: 10,
      prefix: "node",
      noFlrEvery: 5,
      twoDecodersEvery: 3,
      driver: null,
    });
    expect(fleet.hosts.map((h) => h.name)).toEqual(["node1", "node2", "node3", "node4", "node5"]);
    expect(fleet.hosts.every((h) => h.devices.length === 10)).toBe(true);
    expect(fleet.hosts[0]!.devices.filter((d) => !d.flr)).toHaveLength(2);
    expect(fleet.hosts[0]!.devices.filter((d) => d.firmware.decoders.length === 2)).toHaveLength(3);
  });
});

describe("seeded plan", () => {
  const loaded = loadScenario(scenarioFile("fleet-random"));

  it("the same seed gives the same requests and faults; another seed other ones", () => {
    const a = planScenario(loaded.scenario, loaded.fleet);
    const b = planScenario(loaded.scenario, loaded.fleet);
    const c = planScenario({ ...loaded.scenario, seed: 2 }, loaded.fleet);
    expect(a).toEqual(b);
    expect(a.requests).toHaveLength(200);
    expect(a.faults).toHaveLength(loaded.scenario.randomFaults!.count);
    expect(c.requests.map((q) => `${q.host}/${q.bdf}/${q.scope}`)).not.toEqual(
      a.requests.map((q) => `${q.host}/${q.bdf}/${q.scope}`),
    );
    const ids = new Set(a.requests.map((q) => q.requestId));
    expect(ids.size).toBe(200);
  });

  it("a random agent freeze, partition or host reboot hits one host, undone after downMs", () => {
    const s = {
      ...loaded.scenario,
      randomFaults: {
        ...loaded.scenario.randomFaults!,
        count: 40,
        kinds: ["agent-freeze" as const, "agent-partition" as const, "host-reboot" as const],
      },
    };
    const faults = planScenario(s, loaded.fleet).faults;
    expect(faults).toHaveLength(40);
    expect(new Set(faults.map((f) => f.action))).toEqual(new Set(["freeze", "partition", "reboot"]));
    const hosts = new Set(loaded.fleet.hosts.map((h) => h.name));
    for (const f of faults) {
      expect(f.durationMs).toBe(s.randomFaults.downMs);
      expect(hosts.has(String(f.target.agent))).toBe(true);
    }
  });

  it("a random coordinator partition cuts one of the scenario's coordinators off for downMs", () => {
    const s = {
      ...loaded.scenario,
      randomFaults: {
        ...loaded.scenario.randomFaults!,
        count: 10,
        kinds: ["coordinator-partition" as const],
      },
    };
    const faults = planScenario(s, loaded.fleet).faults;
    expect(faults.map((f) => f.action)).toEqual(Array(10).fill("partition"));
    for (const f of faults) {
      expect(f.target.coordinator).toBeGreaterThanOrEqual(0);
      expect(f.target.coordinator).toBeLessThan(s.coordinators.count);
      expect(f.durationMs).toBe(s.randomFaults.downMs);
    }
  });

  it("random NATS faults never overlap (a 3-node cluster keeps its quorum)", () => {
    const s = {
      ...loaded.scenario,
      randomFaults: { ...loaded.scenario.randomFaults!, count: 40, kinds: ["nats-kill" as const] },
    };
    const natsFaults = planScenario(s, loaded.fleet).faults.filter((f) => f.target.nats !== undefined);
    expect(natsFaults.length).toBe(40);
    for (let i = 1; i < natsFaults.length; i++) {
      const prev = natsFaults[i - 1]!;
      expect(natsFaults[i]!.at!).toBeGreaterThanOrEqual(prev.at! + prev.durationMs!);
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// Invariants on hand-made traces

const HOST = "h1";
const BDF = "0000:01:00.0";
let seq = 0;
let clock = Date.parse("2026-01-01T00:00:00.000Z");

function ev(
  kind: string,
  o: {
    requestId?: string;
    coordinator?: string;
    data?: Record<string, unknown>;
    source?: string;
    opId?: string;
    bdf?: string;
    space?: "evt" | "agt";
  } = {},
): RecordedEvent {
  seq++;
  clock += 10;
  const event: EventEnvelope = {
    v: 1,
    id: `e${seq}`,
    time: new Date(clock).toISOString(),
    source: o.source ?? "coordinator",
    host: HOST,
    bdf: o.bdf ?? BDF,
    kind,
    ...(o.requestId ? { requestId: o.requestId } : {}),
    ...(o.opId ? { opId: o.opId } : {}),
    data: { ...(o.source === "agent" ? {} : { coordinator: o.coordinator ?? "c0", atMs: clock }), ...o.data },
  } as EventEnvelope;
  // Stored under the subject space of its source (agents publish under cxlrc.agt.>), unless a test says otherwise.
  const space = o.space ?? (o.source === "agent" ? "agt" : "evt");
  return { seq, subject: `cxlrc.${space}.${HOST}.x.${kind}`, event };
}

const request: RequestSpec = {
  at: 0,
  requestId: "r1",
  host: HOST,
  bdf: BDF,
  scope: "full",
  allowEscalation: false,
  memClear: false,
  reason: "t",
  dryRun: false,
};
const plan = {
  kind: "plan",
  requestId: "r1",
  scope: "full",
  method: "cxl",
  escalated: false,
  targets: [BDF],
};

/** A full reset of r1 by `coordinator`, as the coordinator publishes it. */
function fullReset(coordinator = "c0", outcome = "verified"): RecordedEvent[] {
  const c = { requestId: "r1", coordinator };
  return [
    ev("request.received", { ...c, data: { request: { ...request } } }),
    ev("plan", { ...c, data: { plan, request: { ...request } } }),
    ev("state.entered", { ...c, data: { state: "persistingImage" } }),
    ev("image.persisted", { ...c, data: { image: { key: "h1.0000-01-00-0", revision: 3 } } }),
    ev("state.entered", { ...c, data: { state: "resetting" } }),
    ev("reset.started", { ...c, data: { scope: "full", method: "cxl", targets: [BDF], memClear: false } }),
    ev("op.started", {
      source: "agent",
      opId: "r1/resetting/0",
      data: { op: "reset", params: { bdf: BDF } },
    }),
    ev("op.completed", { source: "agent", opId: "r1/resetting/0", data: { op: "reset" } }),
    ev("state.entered", { ...c, data: { state: "restoring" } }),
    ev("state.entered", { ...c, data: { state: "verifying" } }),
    ev("verify.passed", {
      ...c,
      data: { scope: "full", round: 0, result: { passed: true, mismatches: [] } },
    }),
    ev(outcome, { ...c, data: { outcome, scope: "full", method: "cxl", repaired: false } }),
    ev("state.entered", { ...c, data: { state: "ready" } }),
  ];
}

const image: ImageRecord = {
  v: 1,
  host: HOST,
  bdf: BDF,
  images: {
    [BDF]: {
      cxl: {
        hdm: {
          decoders: [
            {
              index: 0,
              registers: {
                baseLow: { raw: "0x00000000" },
                baseHigh: { raw: "0x00000001" },
                sizeLow: { raw: "0x10000000" },
                sizeHigh: { raw: "0x00000000" },
                control: { raw: "0x00000600", committed: true },
              },
            },
          ],
        },
      },
    },
  },
  savedAt: "2026-01-01T00:00:00.000Z",
  requestId: "r1",
  opId: "r1/persistingImage/0",
  coordinator: "c0",
};

const intact: FunctionReading = {
  host: HOST,
  bdf: BDF,
  device: BDF,
  readable: true,
  decoders: [{ index: 0, committed: true, base: 0x1_0000_0000n, size: 0x1000_0000n }],
};

function input(events: RecordedEvent[], over: Partial<CheckInput> = {}): CheckInput {
  return {
    events,
    requests: [{ spec: request, submitted: true }],
    resets: [{ host: HOST, bdf: BDF, resets: 1, detail: { flr: 0, cxlReset: 1, conventionalReset: 0 } }],
    images: new Map([["h1.0000-01-00-0", image]]),
    imageRevisions: new Map([["h1.0000-01-00-0@3", true]]),
    liveImageChecks: [{ requestId: "r1", host: HOST, bdf: BDF, ok: true, message: "" }],
    readings: [intact],
    ...over,
  };
}

const names = (r: ReturnType<typeof checkChaosInvariants>) => [
  ...new Set(r.violations.map((v) => v.invariant)),
];

describe("chaos invariants", () => {
  it("a clean full reset passes every check", () => {
    const r = checkChaosInvariants(input(fullReset()));
    expect(r.violations).toEqual([]);
    expect(r.checks).toBeGreaterThan(10);
    for (const k of [
      "one-outcome",
      "single-driver",
      "one-reset-per-request",
      "image-kept",
      "decoders-intact",
    ]) {
      expect(r.byInvariant[k]?.checks).toBeGreaterThan(0);
    }
  });

  it("one-outcome: a second terminal event, or none, is a violation", () => {
    const twice = [
      ...fullReset(),
      ev("refused", { requestId: "r1", coordinator: "c1", data: { refusal: { reason: "in-progress" } } }),
    ];
    expect(names(checkChaosInvariants(input(twice)))).toContain("one-outcome");
    const none = fullReset().filter((e) => e.event.kind !== "verified");
    expect(names(checkChaosInvariants(input(none)))).toContain("one-outcome");
  });

  it("one-outcome: an outcome claimed from the agents' subject space is nobody's word", () => {
    // An agent's event saying source "coordinator", kind "verified": stored under cxlrc.agt.>, not counted.
    const forged = ev("verified", {
      requestId: "r1",
      coordinator: "c0",
      space: "agt",
      data: { outcome: "verified" },
    });
    const withoutOutcome = fullReset().filter((e) => e.event.kind !== "verified");
    expect(names(checkChaosInvariants(input([...withoutOutcome, forged])))).toContain("one-outcome");
    // The real outcome plus the forged one is still exactly one outcome.
    expect(checkChaosInvariants(input([...fullReset(), forged])).violations).toEqual([]);
  });

  it("single-driver: another coordinator acting while one drives the device is a violation", () => {
    const events = fullReset("c0");
    // c1 acts on the device between c0's first and last events of r1.
    const intruder = ev("state.entered", {
      requestId: "r1",
      coordinator: "c1",
      data: { state: "restoring" },
    });
    intruder.event.time = new Date(Date.parse(events[6]!.event.time) - 5).toISOString();
    events.splice(6, 0, intruder);
    const r = checkChaosInvariants(input(events));
    expect(names(r)).toContain("single-driver");
    // A takeover after c0 stopped acting is not (the coordinator says "recovered" when it takes one over).
    const before = fullReset("c0").slice(0, 6);
    const recovered = ev("recovered", {
      requestId: "r1",
      coordinator: "c1",
      data: { state: "resetting", previousOwner: "c0" },
    });
    const handover = [...before, recovered, ...fullReset("c1").slice(6)];
    expect(names(checkChaosInvariants(input(handover)))).not.toContain("single-driver");
    // Nor is a coordinator that took the request, died before storing it, and another taking it afresh.
    const died = fullReset("c1").slice(0, 3);
    const afresh = [...died, ...fullReset("c0")];
    // (Nor anything else: the lifecycle judges the request from its last take.)
    expect(names(checkChaosInvariants(input(afresh)))).toEqual([]);
    // But the first coordinator acting again after the takeover (woken from SIGSTOP) is.
    const woken = ev("state.entered", { requestId: "r1", coordinator: "c0", data: { state: "restoring" } });
    const twice = [...before, recovered, woken];
    expect(names(checkChaosInvariants(input(twice)))).toContain("single-driver");
  });

  it("one-reset-per-request: more resets on the device than requests that reset it", () => {
    const r = checkChaosInvariants(
      input(fullReset(), {
        resets: [{ host: HOST, bdf: BDF, resets: 2, detail: { flr: 0, cxlReset: 2, conventionalReset: 0 } }],
      }),
    );
    expect(names(r)).toEqual(["one-reset-per-request"]);
    const twiceOnAgent = [
      ...fullReset(),
      ev("op.completed", { source: "agent", opId: "r1/resetting/0", data: { op: "reset" } }),
    ];
    expect(names(checkChaosInvariants(input(twiceOnAgent)))).toContain("one-reset-per-request");
  });

  it("decoders-intact: a decoder of the image wiped on the device needs a quarantined or failed event", () => {
    const wiped: FunctionReading = {
      ...intact,
      decoders: [{ index: 0, committed: false, base: 0n, size: 0n }],
    };
    expect(names(checkChaosInvariants(input(fullReset(), { readings: [wiped] })))).toEqual([
      "decoders-intact",
    ]);
    const quarantined = fullReset("c0", "quarantined");
    expect(names(checkChaosInvariants(input(quarantined, { readings: [wiped] })))).not.toContain(
      "decoders-intact",
    );
    const moved: FunctionReading = {
      ...intact,
      decoders: [{ index: 0, committed: true, base: 0x2_0000_0000n, size: 0x1000_0000n }],
    };
    expect(names(checkChaosInvariants(input(fullReset(), { readings: [moved] })))).toEqual([
      "decoders-intact",
    ]);
  });

  it("image-kept: a reset without its image, or a failed request whose image is gone", () => {
    const live = [{ requestId: "r1", host: HOST, bdf: BDF, ok: false, message: "not in the store" }];
    expect(names(checkChaosInvariants(input(fullReset(), { liveImageChecks: live })))).toEqual([
      "image-kept",
    ]);
    const failed = fullReset("c0", "failed");
    expect(
      names(checkChaosInvariants(input(failed, { imageRevisions: new Map([["h1.0000-01-00-0@3", false]]) }))),
    ).toContain("image-kept");
    expect(
      names(checkChaosInvariants(input(fullReset(), { images: new Map([["h1.0000-01-00-0", null]]) }))),
    ).toContain("image-kept");
  });

  it("lifecycle: a reset before the image was persisted (machines/invariants.ts)", () => {
    const events = fullReset().filter((e) => e.event.kind !== "image.persisted");
    expect(names(checkChaosInvariants(input(events)))).toContain("lifecycle:no-reset-before-persist");
  });
});

describe("sweep (cxlrc chaos --sweep)", () => {
  const raw = {
    name: "one-kill",
    fleet: "default",
    requests: [{ requestId: "r1", host: "alpha", bdf: "0000:02:00.0", scope: "full" }],
    faults: [
      {
        name: "owner killed",
        on: { step: "resetting", requestId: "r1" },
        action: "kill",
        target: { coordinator: "driver" },
        durationMs: 1000,
      },
      { at: 500, action: "pause", target: { agent: "alpha" }, durationMs: 100 },
    ],
  };

  it("runs the scenario once per reset step, its step faults moved there and every other fault kept", () => {
    const loaded = parseScenario(raw);
    const runs = sweepRuns(loaded);
    expect(runs.map((r) => r.step)).toEqual([...RESET_PHASES]);
    expect(SWEEP_STEPS).toEqual([...RESET_PHASES]);
    for (const { step, loaded: one } of runs) {
      expect(one.scenario.name).toBe(`one-kill@${step}`);
      const [moved, kept] = one.scenario.faults;
      expect(moved!.on).toEqual({ step, requestId: "r1", nth: 1 });
      expect(moved!.name).toBe(`owner killed on ${step}`);
      expect(kept).toEqual(loaded.scenario.faults[1]);
      expect(one.scenario.requests).toEqual(loaded.scenario.requests);
      expect(one.fleet).toBe(loaded.fleet);
    }
    // The scenario itself is left as it was.
    expect(loaded.scenario.faults[0]!.on!.step).toBe("resetting");
    expect(
      sweepRuns(loaded, ["gating", "verifying"]).map((r) => r.loaded.scenario.faults[0]!.on!.step),
    ).toEqual(["gating", "verifying"]);
  });

  it("refuses a scenario with no fault on a step, naming it", () => {
    const loaded = parseScenario({ ...raw, faults: [raw.faults[1]] });
    expect(() => sweepRuns(loaded)).toThrow(
      "scenario one-kill: --sweep moves the faults that fire on a step (on.step), and it has none",
    );
  });

  it("a line per step: passed, VIOLATED, or not reached when its faults never fired", () => {
    const report = (over: { ok?: boolean; unfired?: string[]; violations?: number }): ChaosReport =>
      ({
        ok: over.ok ?? true,
        requests: { outcomes: { verified: 2 }, list: [] },
        faults: { injected: over.unfired?.length ? 0 : 1, unfired: over.unfired ?? [] },
        invariants: { violations: over.violations ?? 0 },
        timings: { totalMs: 12_340 },
      }) as unknown as ChaosReport;
    expect(sweepLine("resetting", report({}))).toBe(
      "  resetting            passed      violations 0, faults 1; verified 2 (12.3 s)",
    );
    expect(sweepLine("verifying", report({ ok: false, violations: 2 }))).toMatch(
      /^ {2}verifying +VIOLATED +violations 2,/,
    );
    expect(
      sweepLine("committingDecoders", report({ unfired: ["owner killed on committingDecoders"] })),
    ).toMatch(/not reached .*unfired: owner killed on committingDecoders/);
    // A request not verified is named under its step's line, with why.
    const refused = {
      ...report({}),
      requests: {
        outcomes: { verified: 1, refused: 1 },
        list: [
          {
            requestId: "r1",
            host: "a",
            bdf: "0000:01:00.0",
            scope: "full",
            outcome: "verified",
            by: "c0",
            detail: "",
          },
          {
            requestId: "r2",
            host: "a",
            bdf: "0000:02:00.0",
            scope: "full",
            outcome: "refused",
            by: "c1",
            detail: "save-failed: image not saved",
          },
        ],
      },
    } as unknown as ChaosReport;
    expect(sweepLine("savingImage", refused).split("\n")).toEqual([
      "  savingImage          passed      violations 0, faults 1; verified 1, refused 1 (12.3 s)",
      "      r2 refused by c1 (save-failed: image not saved)",
    ]);
  });
});
