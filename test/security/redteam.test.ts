// The red team: cxlrc's own principals attack the bus on the real deploy configuration (accounts, TLS client
// certificates, users generated from shared/bus/permissions.ts), with the real coordinator, two simulated
// agents and the real CLI. Every class of issue #20 is tried, every attempt counted, and each must have no
// success:
// 1. reply-subject redirects: a request, or a JetStream publish, whose reply subject is a JetStream or KV API
//    subject that would purge or delete a stream, a message or a consumer, or overwrite a key, sent to every
//    responder (coordinator control endpoints, agents, service discovery, JetStream PubAcks). The stored state
//    read back before and after must agree, and a witness in the streams' account sees nothing arrive there;
// 2. forged outcomes from an agent, believed by nobody (the CLI prints the real outcome and exits non-zero, the
//    real outcome is stored);
// 3. cross-host delivery through a reader's consumer (readers get no JetStream API at all);
// 4. a controller outside its hosts (refused by the server, or by the coordinator when only the body lies);
// 5. 10,000 malformed requests, intake still serving, no redelivery loop;
// 6. rate limits per authenticated principal: a controller's flood does not starve the operator.
// The figures (attempts, successes by class) are printed at the end for the README.

import { setTimeout as sleep } from "node:timers/promises";
import { AckPolicy, DeliverPolicy, type JetStreamManager, jetstream } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import { type CoordinatorHandle, startCoordinator } from "../../services/coordinator/service.ts";
import { getJsm, requestJson } from "../../shared/bus/client.ts";
import { type EventEnvelope, encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import type { AccountName, Roster } from "../../shared/bus/permissions.ts";
import type { ResetRequestInput } from "../../shared/bus/requests.ts";
import { AGENT_OPS, BUCKETS, deviceKey, STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { isCallerInbox } from "../../shared/bus/trust.ts";
import { realClock } from "../../shared/hw/backend.ts";
import { createSimHost, SIMPLE_DEVICE, type SimHost, simpleHost } from "../../shared/sim/index.ts";
import { lines, startCli } from "../cli/run-cli.ts";
import { type Conn, type SecureBus, startSecureBus, until } from "./env.ts";
import { attempt, type Fate, holdableOperations, jsApiSucceeded } from "./redteam/attempts.ts";
import { credentialsEnv } from "./redteam/cli-env.ts";
import {
  changes,
  damagingTargets,
  looksLikeAnswer,
  type Snapshot,
  type StreamPolicy,
  snapshot,
  type Target,
  watchTargets,
} from "./redteam/damage.ts";
import { Tally } from "./redteam/tally.ts";

const DEV = SIMPLE_DEVICE;
/** Redelivery time of the request consumer: short, so that "no redelivery after ack_wait" is seen quickly. */
const ACK_WAIT_MS = 2000;
/** A durable consumer on the events stream that is not the attackers': "another's consumer". */
const VICTIM = "redteam-victim";

const CLASSES = {
  control: "1. reply redirect: coordinator control endpoints",
  agents: "1. reply redirect: agent endpoints",
  discovery: "1. reply redirect: service discovery",
  pubacks: "1. reply redirect: JetStream PubAcks",
  forged: "2. forged outcomes from an agent",
  consumers: "3. reader consumers / cross-host delivery",
  scope: "4. controller outside its hosts",
  malformed: "5. malformed requests (intake keeps serving)",
  starve: "6. rate-limit starvation of another principal",
  cluster: "1. reply redirects on the 3-node cluster",
} as const;
const tally = new Tally(Object.values(CLASSES));

/** The security roster, with the controller scoped to host sim-a. */
const ROSTER: Roster = {
  principals: [
    { name: "coord-1", role: "coordinator" },
    { name: "agent-sim-a", role: "agent", host: "sim-a", backend: "sim" },
    { name: "agent-sim-b", role: "agent", host: "sim-b", backend: "sim" },
    { name: "controller", role: "controller", hosts: ["sim-a"] },
    { name: "sre", role: "sre" },
    { name: "operator", role: "operator" },
    { name: "chaos", role: "chaos" },
  ],
};

let bus: SecureBus;
let coord: Conn;
let agentConnA: Conn;
let controller: Conn;
let sre: Conn;
let operator: Conn;
let chaos: Conn;
let coordinator: CoordinatorHandle;
let jsm: JetStreamManager;
let kvs: Record<string, KV>;
let agentA: AgentHandle;
let agentB: AgentHandle;
const sims: Record<string, SimHost> = {};
const heldA = holdableOperations();

function sim(name: string): SimHost {
  return createSimHost(simpleHost({ name }), {
    clock: realClock,
    timings: { notReadyMs: 20, cxlResetDurationMs: 20 },
  });
}

let seq = 0;
function request(over: Partial<ResetRequestInput> = {}): ResetRequestInput {
  seq++;
  return {
    requestId: `rt-${process.pid}-${seq}`,
    host: "sim-a",
    bdf: DEV,
    scope: "io",
    reason: "red team",
    dryRun: true,
    ...over,
  };
}

beforeAll(async () => {
  bus = await startSecureBus(ROSTER);
  coord = await bus.connectAs("coord-1");
  agentConnA = await bus.connectAs("agent-sim-a");
  const agentConnB = await bus.connectAs("agent-sim-b");
  controller = await bus.connectAs("controller");
  sre = await bus.connectAs("sre");
  operator = await bus.connectAs("operator");
  chaos = await bus.connectAs("chaos");
  sims["sim-a"] = sim("sim-a");
  sims["sim-b"] = sim("sim-b");
  agentA = await startAgent({
    nc: agentConnA.nc,
    host: "sim-a",
    backend: sims["sim-a"],
    heartbeatMs: 60_000,
    operations: heldA.operations,
  });
  agentB = await startAgent({
    nc: agentConnB.nc,
    host: "sim-b",
    backend: sims["sim-b"],
    heartbeatMs: 60_000,
  });
  coordinator = await startCoordinator({
    nc: coord.nc,
    id: "coord-1",
    metricsPort: null,
    leaseTtlMs: 5000,
    ackWaitMs: ACK_WAIT_MS,
    // Resets of one device back to back: no cooldown, a budget larger than the suite's resets.
    policy: { cooldownMs: 0, maxAttemptsPerWindow: 100 },
  });
  main = await prepare(bus, coord, controller, coordinator, 0);
  ({ jsm, kvs } = main);
}, 60_000);

/**
 * The stored state the attacks aim at: another's durable consumer on the events stream (the coordinator's
 * side provisions it), and one real reset of sim-a's device, so that it has an image, an actor and a decision.
 */
async function prepare(
  b: SecureBus,
  coordConn: Conn,
  controllerConn: Conn,
  handle: CoordinatorHandle,
  propagationMs: number,
): Promise<World> {
  const m = await getJsm(coordConn.nc);
  const kvm = new Kvm(coordConn.nc);
  const buckets: Record<string, KV> = {};
  for (const bucket of Object.values(BUCKETS)) buckets[bucket] = await kvm.open(bucket);
  await m.consumers.add(STREAMS.events.name, {
    durable_name: VICTIM,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
  });
  const r = request({ dryRun: false });
  // On a fresh cluster the stream's interest may not have crossed the routes yet: publish again (same msgID,
  // so it is stored once) until it is acknowledged.
  let stream: string | undefined;
  await until(
    async () => {
      stream = await jetstream(controllerConn.nc)
        .publish(subjects.request("sim-a"), encodeJson(r), { msgID: r.requestId, timeout: 2000 })
        .then(
          (a) => a.stream,
          () => undefined,
        );
      return stream !== undefined;
    },
    "the first request stored",
    30_000,
  );
  expect(stream).toBe(STREAMS.requests.name);
  expect((await handle.waitForOutcome(r.requestId, 30_000)).outcome).toBe("verified");
  const dk = deviceKey("sim-a", DEV);
  let decisionKey: string | undefined;
  for await (const k of await buckets[BUCKETS.decisions]!.keys()) decisionKey ??= k;
  return {
    bus: b,
    jsm: m,
    kvs: buckets,
    keys: {
      [BUCKETS.images]: dk,
      [BUCKETS.actors]: dk,
      [BUCKETS.leases]: dk,
      // A refusal's decision when there is one; otherwise a key a write would create.
      [BUCKETS.decisions]: decisionKey ?? "0000000000000000000000000000000000000000",
      [BUCKETS.meta]: "outcome-id-secret",
      // The host's admission ledger (its slots), written by the reset above.
      [BUCKETS.admission]: "host.sim-a",
    },
    propagationMs,
  };
}

afterAll(async () => {
  console.log(`red team (deploy configs, nats-server 2.9.10):\n${tally.table()}`);
  await agentA?.stop().catch(() => undefined);
  await agentB?.stop().catch(() => undefined);
  await coordinator?.stop().catch(() => undefined);
  await bus?.stop();
  for (const [name, c] of tally.entries()) {
    expect(c.successes, `${name}: ${c.seen.join("; ")}`).toBe(0);
  }
});

/** Expect no success in a class, naming what succeeded. */
function expectNone(cls: string): void {
  const c = tally.count(cls);
  expect(c.attempts).toBeGreaterThan(0);
  expect(c.successes, c.seen.join("\n")).toBe(0);
}

// ---------------------------------------------------------------------------------------------------
// 1. Reply-subject redirects

/** The durable consumer of each stream the redirects aim at (the others have none: a made-up name). */
const DURABLES: Record<string, string> = {
  [STREAMS.requests.name]: "cxlrc-intake",
  [STREAMS.events.name]: VICTIM,
};
const DURABLE_LISTS = Object.fromEntries(Object.entries(DURABLES).map(([s, d]) => [s, [d]]));

/** A bus under attack and the coordinator principal's view of its stored state. */
interface World {
  bus: SecureBus;
  jsm: JetStreamManager;
  kvs: Record<string, KV>;
  /** The key of each bucket the redirects aim at (a real device's, the outcome secret's). */
  keys: Record<string, string>;
  /** How long a new subscription takes to reach every node (0 on a single server). */
  propagationMs: number;
}
let main: World;

function targets(w: World = main): Target[] {
  return damagingTargets(w.keys, DURABLES);
}

/** How each stream may change by itself (damage.ts StreamPolicy). */
const POLICY = (stream: string): StreamPolicy =>
  stream === `KV_${BUCKETS.leases}` ? "expiring" : stream.startsWith("KV_") ? "keys" : "append-only";
/** Streams and keys nothing legitimate writes to while a redirect phase runs. */
const QUIET = new Set([`KV_${BUCKETS.images}`, `KV_${BUCKETS.meta}`]);
const QUIET_KEYS = new Set([
  `${BUCKETS.images}/${deviceKey("sim-a", DEV)}`,
  `${BUCKETS.meta}/outcome-id-secret`,
]);

/**
 * Run one redirect phase: `send(target)` puts one message on the bus per target, then `settle()` waits until
 * the responders have handled them all. Counts an attempt per message and a success per change seen.
 */
async function redirectPhase(
  world: World,
  cls: string,
  arrival: { account: AccountName; subjects: string[] } | null,
  senders: Array<{ label: string; send: (t: Target) => void | Promise<void> }>,
  settle: () => Promise<void>,
): Promise<void> {
  const ts = targets(world);
  const before: Snapshot = await snapshot(world.jsm, world.kvs, world.keys, DURABLE_LISTS);
  const watch = await watchTargets(world.bus.witness, ts);
  // The responder's account sees each attack arrive, and the reply subject it arrived with.
  const arrived: string[] = [];
  const w = world.bus.witnesses[arrival?.account ?? "CXLRC"];
  const subs = (arrival?.subjects ?? []).map((s) =>
    w.subscribe(s, { callback: (_e, m) => void arrived.push(m.reply ?? "") }),
  );
  await w.flush();
  await sleep(world.propagationMs);
  let sent = 0;
  for (const s of senders) {
    for (const t of ts) {
      await s.send(t);
      tally.attempt(cls);
      sent++;
    }
  }
  if (arrival) await until(() => arrived.length >= sent, `${sent} attacks to reach the responders`);
  for (const s of subs) s.unsubscribe();
  await settle();
  await watch.stop();
  for (const h of watch.hits()) {
    // A legitimate writer (the coordinator renewing a lease) may write a target key; an answer may not.
    if (h.subject.startsWith("$JS.") || looksLikeAnswer(h.data)) {
      tally.success(cls, `a message reached ${h.subject}: ${h.data}`);
    }
  }
  const after = await snapshot(world.jsm, world.kvs, world.keys, DURABLE_LISTS);
  for (const c of changes(before, after, POLICY, QUIET, QUIET_KEYS)) tally.success(cls, c);
  if (!arrival) return;
  // Every attack reached its responder, its reply subject already rewritten by the server (the account
  // boundary); the responders' own check (isCallerInbox) is the second line.
  expect(arrived).toHaveLength(sent);
  expect(arrived.filter((r) => !isCallerInbox(r))).toEqual([]);
  expect(arrived.filter((r) => r.startsWith("_R_.")).length).toBe(sent);
}

/**
 * After a burst of redirected requests: flush the senders, then give the responders a moment for the answers
 * of the requests handled last (each phase also waits for something that follows them all: the outcomes of
 * the requests it stored, an honest round trip through the same responder).
 */
async function settleAfter(...conns: Conn[]): Promise<void> {
  for (const c of conns) await c.nc.flush();
  await sleep(300);
}

describe("1. reply-subject redirects change nothing", () => {
  it("coordinator control endpoints, from every role that may call them", async () => {
    const ctl = (c: Conn, subject: string, body: unknown) => ({
      label: subject,
      send: (t: Target) => c.nc.publish(subject, encodeJson(body), { reply: t.subject }),
    });
    const submits: string[] = [];
    await redirectPhase(
      main,
      CLASSES.control,
      { account: "CXLRC", subjects: ["cxlrc.ctl.>"] },
      [
        {
          label: "plan",
          send: (t) => {
            controller.nc.publish(subjects.plan("sim-a"), encodeJson(request()), { reply: t.subject });
          },
        },
        {
          label: "submit",
          send: (t) => {
            const r = request();
            submits.push(r.requestId);
            controller.nc.publish(subjects.submit("sim-a"), encodeJson(r), { reply: t.subject });
          },
        },
        ctl(controller, subjects.events, { max: 5 }),
        ctl(sre, subjects.status, {}),
        ctl(sre, subjects.image, { host: "sim-a", bdf: DEV }),
        ctl(sre, subjects.events, { max: 5 }),
        ctl(operator, subjects.status, {}),
        ctl(operator, subjects.image, { host: "sim-a", bdf: DEV }),
        ctl(operator, subjects.release, { host: "sim-a", bdf: DEV, operator: "rt", reason: "red team" }),
        ctl(operator, subjects.breaker, { operator: "rt", reason: "red team" }),
        ctl(operator, subjects.events, { max: 5 }),
      ],
      async () => {
        await settleAfter(controller, sre, operator);
        // Every submit went through the stream to a decision: the coordinator handled them.
        for (const id of submits) await coordinator.waitForOutcome(id, 20_000);
        // And the endpoints still answer an honest caller.
        const st = (await requestJson(sre.nc, subjects.status, {}, { timeoutMs: 10_000 })) as { ok: boolean };
        expect(st.ok).toBe(true);
        const p = (await requestJson(controller.nc, subjects.plan("sim-a"), request(), {
          timeoutMs: 10_000,
        })) as { ok: boolean };
        expect(p.ok).toBe(true);
      },
    );
    expectNone(CLASSES.control);
  });

  it("agents: chaos's fault endpoint answers only where it should; no other role reaches an agent", async () => {
    const faultCalls = agentA.stats().received;
    await redirectPhase(
      main,
      CLASSES.agents,
      { account: "AGENTS", subjects: [subjects.agent("sim-a", "fault")] },
      [
        {
          label: "chaos → fault",
          send: (t) =>
            chaos.nc.publish(
              subjects.agent("sim-a", "fault"),
              encodeJson({ opId: `rt-f-${Math.random()}`, bdf: DEV, action: "list" }),
              { reply: t.subject },
            ),
        },
      ],
      async () => {
        await settleAfter(chaos);
        await until(
          () => agentA.stats().received >= faultCalls + targets().length,
          "sim-a's agent to receive chaos's fault calls",
        );
        await until(() => agentA.stats().inFlight === 0, "sim-a's agent to finish them");
      },
    );
    // No role but the coordinator (and chaos, for faults) reaches an agent's operations at all. (The coordinator
    // itself is the party that commands agents: a redirect of its own is out of scope here. Measured: an agent's
    // answer to it comes back into CXLRC, where the JetStream API ignores it but a $KV subject stores it, which
    // the coordinator may write anyway.)
    const received = { a: agentA.stats().received, b: agentB.stats().received };
    const fates: string[] = [];
    const tries: Array<Promise<void>> = [];
    for (const c of [controller, sre, operator, chaos]) {
      for (const host of ["sim-a", "sim-b"]) {
        for (const op of AGENT_OPS) {
          if (c === chaos && op === "fault") continue;
          tally.attempt(CLASSES.agents);
          tries.push(
            attempt(c.nc, subjects.agent(host, op), { opId: `rt-x-${op}`, bdf: DEV }).then((f) => {
              fates.push(f.kind);
              if (f.kind === "answered") {
                tally.success(CLASSES.agents, `an agent answered ${subjects.agent(host, op)}: ${f.text}`);
              }
            }),
          );
        }
      }
    }
    await Promise.all(tries);
    // Refused by the server, every one (their accounts import no agent operation at all).
    expect(new Set(fates)).toEqual(new Set(["violation"]));
    expect(agentA.stats().received).toBe(received.a);
    expect(agentB.stats().received).toBe(received.b);
    expectNone(CLASSES.agents);
  });

  it("service discovery ($SRV PING/INFO/STATS) from the SRE", async () => {
    const discovery = ["$SRV.PING", "$SRV.INFO", "$SRV.STATS"].flatMap((s) => [s, `${s}.cxlrc-agent`]);
    await redirectPhase(
      main,
      CLASSES.discovery,
      { account: "AGENTS", subjects: ["$SRV.>"] },
      discovery.map((s) => ({
        label: s,
        send: (t: Target) => sre.nc.publish(s, new Uint8Array(0), { reply: t.subject }),
      })),
      async () => {
        await settleAfter(sre);
        // Discovery still answers the SRE on its inbox.
        const r = await attempt(sre.nc, "$SRV.PING.cxlrc-agent", "", 5000);
        expect(r.kind).toBe("answered");
      },
    );
    // Nobody else may even ask.
    for (const c of [controller, operator, chaos]) {
      for (const s of discovery) {
        tally.attempt(CLASSES.discovery);
        const f = await attempt(c.nc, s, "", 1500);
        if (f.kind === "answered") tally.success(CLASSES.discovery, `${s} answered: ${f.text.slice(0, 100)}`);
        expect(f.kind).toBe("violation");
      }
    }
    expectNone(CLASSES.discovery);
  });

  it("JetStream PubAcks of every role that publishes into a stream (controller requests, agent events)", async () => {
    const ids: string[] = [];
    const noteSubject = subjects.agentEvent("sim-a", DEV, "note");
    const notes = async () =>
      (await jsm.streams.info(STREAMS.events.name, { subjects_filter: noteSubject })).state.subjects?.[
        noteSubject
      ] ?? 0;
    const notesBefore = await notes();
    await redirectPhase(
      main,
      CLASSES.pubacks,
      { account: "CXLRC", subjects: [subjects.request("sim-a"), noteSubject] },
      [
        {
          label: "controller request",
          send: (t) => {
            const r = request();
            ids.push(r.requestId);
            controller.nc.publish(subjects.request("sim-a"), encodeJson(r), { reply: t.subject });
          },
        },
        {
          label: "agent event",
          send: (t) =>
            agentConnA.nc.publish(
              noteSubject,
              encodeJson(
                makeEvent({ host: "sim-a", bdf: DEV, kind: "note", source: "agent", data: { rt: t.what } }),
              ),
              { reply: t.subject },
            ),
        },
      ],
      async () => {
        await settleAfter(controller, agentConnA);
        for (const id of ids) await coordinator.waitForOutcome(id, 20_000);
      },
    );
    // Every publish was stored, so every PubAck was sent (and went nowhere harmful): the requests all got
    // their outcome above, and the agent's events are in the stream.
    expect(ids).toHaveLength(targets().length);
    expect((await notes()) - notesBefore).toBe(targets().length);
    expectNone(CLASSES.pubacks);
  });

  it("afterwards the reset flow still works: a real reset of sim-a is verified", async () => {
    const r = request({ dryRun: false });
    await jetstream(controller.nc).publish(subjects.request("sim-a"), encodeJson(r), { msgID: r.requestId });
    expect((await coordinator.waitForOutcome(r.requestId, 30_000)).outcome).toBe("verified");
  });
});

// ---------------------------------------------------------------------------------------------------
// 2. Forged outcomes

describe("2. forged outcomes from an agent are believed by nobody", () => {
  it("a reset that ends quarantined stays quarantined for the CLI, whatever sim-a's agent publishes", async () => {
    const requestId = `rt-forged-${process.pid}`;
    const js = jetstream(agentConnA.nc);
    const verified = (over: Partial<EventEnvelope>) => ({
      ...makeEvent({
        host: "sim-a",
        bdf: DEV,
        kind: "verified",
        requestId,
        source: "coordinator",
        data: { scope: "full", method: "cxl", outcome: "verified" },
      }),
      ...over,
    });
    sims["sim-a"]!.faults.set(DEV, { name: "commit-error", decoder: 0 });
    const held = heldA.hold();
    try {
      const cli = startCli(
        [
          "reset",
          "sim-a",
          DEV,
          "--scope",
          "full",
          "--method",
          "cxl",
          "--request-id",
          requestId,
          "--wait",
          "--json",
        ],
        { env: credentialsEnv(bus.credentials("controller"), bus.url), killAfterMs: 60_000 },
      );
      // The reset is frozen while saving its image (or the CLI ended first: say how).
      await Promise.race([
        held.saving,
        cli.done.then((r) => {
          throw new Error(
            `the CLI ended before the reset saved its image (${r.code}): ${r.stdout}${r.stderr}`,
          );
        }),
      ]);
      // (a) On its own subject, claiming to be the coordinator, with the old predictable outcome id and with a
      //     fresh one: stored (it is the agent's subject), believed by nobody.
      for (const id of [`outcome.${requestId}`, `outcome.${requestId}.x`]) {
        tally.attempt(CLASSES.forged);
        await js.publish(subjects.agentEvent("sim-a", DEV, "verified"), encodeJson(verified({ id })), {
          msgID: id,
        });
      }
      // (b) On the coordinator's subject space, and on another host's: refused by the server.
      const refused: string[] = [
        subjects.event("sim-a", DEV, "verified"),
        subjects.event("sim-a", DEV, "planned"),
        subjects.event("sim-a", DEV, "release.failed"),
        subjects.event("sim-a", DEV, "step.failed"),
        subjects.hostEvent("sim-a", "verified"),
        subjects.agentEvent("sim-b", DEV, "verified"),
      ];
      for (const s of refused) {
        tally.attempt(CLASSES.forged);
        const r = await js
          .publish(s, encodeJson(verified({ id: `outcome.${requestId}` })), {
            msgID: `rt-${s}`,
            timeout: 3000,
          })
          .then(
            (ack) => `stored as #${ack.seq}`,
            (e: Error) => e.message,
          );
        if (r.startsWith("stored")) tally.success(CLASSES.forged, `${s} ${r}`);
        expect(r).toMatch(/Permissions Violation|no responders|timeout/i);
      }
      // Nothing the forgeries said ended the wait.
      expect(cli.child.exitCode, cli.stdout + cli.stderr).toBeNull();
      held.release();
      const res = await cli.done;
      tally.attempt(CLASSES.forged);
      const result = JSON.parse(lines(res.stdout).at(-1) ?? "{}") as { outcome?: string; requestId?: string };
      if (res.code === 0 || result.outcome === "verified") {
        tally.success(
          CLASSES.forged,
          `the CLI believed a forged outcome: exit ${res.code}, ${result.outcome}`,
        );
      }
      expect(result, res.stderr).toMatchObject({ requestId, outcome: "quarantined" });
      expect(res.code).toBe(1);
    } finally {
      held.release();
      sims["sim-a"]!.faults.clear(DEV);
    }
    // The real outcome is in the stream, on the coordinator's subject, not dropped as a duplicate.
    const real = await jsm.streams.getMessage(STREAMS.events.name, {
      last_by_subj: subjects.event("sim-a", DEV, "quarantined"),
    });
    const env = real?.json<EventEnvelope>();
    expect(env).toMatchObject({ requestId, kind: "quarantined", host: "sim-a" });
    expect(env?.id).not.toBe(`outcome.${requestId}`);
    // The forgeries were stored before it: the CLI had them in front of it and believed the real one.
    const forged = await jsm.streams.getMessage(STREAMS.events.name, {
      last_by_subj: subjects.agentEvent("sim-a", DEV, "verified"),
    });
    expect(forged?.json<EventEnvelope>()).toMatchObject({
      requestId,
      kind: "verified",
      source: "coordinator",
    });
    expect(forged!.seq).toBeLessThan(real!.seq);
    expect((await coordinator.waitForOutcome(requestId, 1000)).outcome).toBe("quarantined");
    expectNone(CLASSES.forged);
    // Out of quarantine again, for the classes that follow.
    const rel = (await requestJson(
      operator.nc,
      subjects.release,
      { host: "sim-a", bdf: DEV, operator: "rt", reason: "red team: forged outcome test done" },
      { timeoutMs: 15_000 },
    )) as { ok: boolean };
    expect(rel.ok).toBe(true);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------------
// 3. Reader consumers

describe("3. readers cannot create, touch or redirect consumers", () => {
  it("every reader's consumer create / delete / next / ack on CXLRC_EVENTS is refused; sim-b receives nothing", async () => {
    const receivedB = agentB.stats().received;
    const victimBefore = await jsm.consumers.info(STREAMS.events.name, VICTIM);
    const readerDurables = ["controller", "sre", "operator"].flatMap((n) => [`rt-${n}`, `rt-${n}-2`]);
    const durables = () =>
      snapshot(jsm, kvs, {}, { [STREAMS.events.name]: [VICTIM, ...readerDurables] }).then(
        (s) => s.streams[STREAMS.events.name]?.durables,
      );
    expect(await durables()).toEqual([VICTIM]);
    const ev = STREAMS.events.name;
    const deliverTo = subjects.agent("sim-b", "reset");
    const createBody = (name?: string) => ({
      stream_name: ev,
      config: {
        ...(name ? { durable_name: name, name } : {}),
        deliver_subject: deliverTo,
        deliver_policy: "all",
        ack_policy: "none",
        filter_subject: subjects.agentEventsOfHost("sim-a"),
      },
    });
    const tries: Array<Promise<void>> = [];
    const fates: string[] = [];
    const readers: Array<[string, Conn]> = [
      ["controller", controller],
      ["sre", sre],
      ["operator", operator],
    ];
    for (const [name, c] of readers) {
      const mine = `rt-${name}`;
      const cases: Array<[string, unknown]> = [
        [`$JS.API.CONSUMER.CREATE.${ev}`, createBody()],
        [`$JS.API.CONSUMER.CREATE.${ev}.${mine}`, createBody(mine)],
        [`$JS.API.CONSUMER.CREATE.${ev}.${mine}.${subjects.agentEventsOfHost("sim-a")}`, createBody(mine)],
        [`$JS.API.CONSUMER.DURABLE.CREATE.${ev}.${mine}`, createBody(mine)],
        [`$JS.API.CONSUMER.DELETE.${ev}.${VICTIM}`, ""],
        [`$JS.API.CONSUMER.INFO.${ev}.${VICTIM}`, ""],
        [`$JS.API.CONSUMER.MSG.NEXT.${ev}.${VICTIM}`, { batch: 1, expires: 500_000_000 }],
        [`$JS.API.CONSUMER.LIST.${ev}`, {}],
      ];
      for (const [subject, body] of cases) {
        tally.attempt(CLASSES.consumers);
        tries.push(
          attempt(c.nc, subject, body, 2000).then((f: Fate) => {
            fates.push(f.kind);
            if (jsApiSucceeded(f)) {
              tally.success(
                CLASSES.consumers,
                `${name}: ${subject} answered ${(f as { text: string }).text}`,
              );
            }
          }),
        );
      }
      // Acknowledge another's delivery (fire and forget: an ack has no answer).
      tally.attempt(CLASSES.consumers);
      c.nc.publish(`$JS.ACK.${ev}.${VICTIM}.1.1.1.0.0`, new Uint8Array(0));
      // And the reader's own JetStream client, as a user would try it.
      tally.attempt(CLASSES.consumers);
      tries.push(
        jetstream(c.nc, { timeout: 2000 })
          .jetstreamManager(false)
          .then((m) =>
            m.consumers.add(ev, {
              durable_name: `${mine}-2`,
              deliver_subject: deliverTo,
              deliver_policy: DeliverPolicy.All,
              ack_policy: AckPolicy.None,
            }),
          )
          .then(
            (ci) => tally.success(CLASSES.consumers, `${name} created consumer ${ci.name}`),
            () => undefined,
          ),
      );
    }
    await Promise.all(tries);
    // Refused by the server, every one: readers have no JetStream API in their accounts.
    expect(new Set(fates)).toEqual(new Set(["violation"]));
    for (const [, c] of readers) await c.nc.flush();
    await sleep(300); // a consumer push would arrive at once
    expect(agentB.stats().received).toBe(receivedB);
    const victimAfter = await jsm.consumers.info(STREAMS.events.name, VICTIM);
    expect(victimAfter.ack_floor).toEqual(victimBefore.ack_floor);
    expect(victimAfter.delivered).toEqual(victimBefore.delivered);
    // No reader's consumer exists, the victim is still there.
    expect(await durables()).toEqual([VICTIM]);
    expectNone(CLASSES.consumers);
  });
});

// ---------------------------------------------------------------------------------------------------
// 4. Scoped controller

describe("4. a controller scoped to sim-a cannot act on sim-b", () => {
  it("the server refuses sim-b's subjects; a body naming sim-b on sim-a's subject is rejected naming both", async () => {
    const receivedB = agentB.stats().received;
    const lastB = () =>
      jsm.streams
        .getMessage(STREAMS.requests.name, { last_by_subj: subjects.request("sim-b") })
        .then((m) => m?.seq ?? 0)
        .catch(() => 0);
    const storedBefore = await lastB();
    const js = jetstream(controller.nc);
    // Straight at sim-b: the server says no.
    const b = request({ host: "sim-b", dryRun: false });
    tally.attempt(CLASSES.scope);
    const pub = await js
      .publish(subjects.request("sim-b"), encodeJson(b), { msgID: b.requestId, timeout: 3000 })
      .then(
        (a) => `stored #${a.seq}`,
        (e: Error) => e.message,
      );
    if (pub.startsWith("stored")) tally.success(CLASSES.scope, `request for sim-b ${pub}`);
    expect(pub).toMatch(/Permissions Violation/);
    for (const s of [subjects.plan("sim-b"), subjects.submit("sim-b")]) {
      tally.attempt(CLASSES.scope);
      const f = await attempt(controller.nc, s, request({ host: "sim-b", dryRun: false }), 3000);
      if (f.kind === "answered") tally.success(CLASSES.scope, `${s} answered: ${f.text}`);
      expect(f.kind).toBe("violation");
    }
    // The body lies about its host: the coordinator rejects it, naming both.
    const liar = request({ host: "sim-b", dryRun: false });
    tally.attempt(CLASSES.scope);
    await js.publish(subjects.request("sim-a"), encodeJson(liar), { msgID: liar.requestId });
    const o = await coordinator.waitForOutcome(liar.requestId, 15_000);
    if (o.outcome !== "rejected") tally.success(CLASSES.scope, `a lying body was ${o.outcome}`);
    expect(o.outcome).toBe("rejected");
    expect(o.message).toMatch(/"sim-b".*"sim-a"/);
    const rejected = await jsm.streams.getMessage(STREAMS.events.name, {
      last_by_subj: subjects.hostEvent("sim-a", "request.rejected"),
    });
    expect(rejected?.json<EventEnvelope>()).toMatchObject({ requestId: liar.requestId, host: "sim-a" });
    expect(JSON.stringify(rejected?.json<EventEnvelope>().data)).toMatch(/sim-b.*sim-a/);
    for (const s of [subjects.plan("sim-a"), subjects.submit("sim-a")]) {
      tally.attempt(CLASSES.scope);
      const f = await attempt(controller.nc, s, request({ host: "sim-b", dryRun: false }), 10_000);
      expect(f.kind).toBe("answered");
      const body = JSON.parse((f as { text: string }).text) as { ok: boolean; error?: { message: string } };
      if (body.ok) tally.success(CLASSES.scope, `${s} accepted a body naming sim-b`);
      expect(body.error?.message).toMatch(/"sim-b".*"sim-a"/);
    }
    // Nothing reached sim-b, nothing for sim-b was stored.
    expect(agentB.stats().received).toBe(receivedB);
    expect(await lastB()).toBe(storedBefore);
    expectNone(CLASSES.scope);
  });
});

// ---------------------------------------------------------------------------------------------------
// 5. Malformed requests

describe("5. 10,000 malformed requests", () => {
  it("are each rejected once; intake keeps serving; nothing is redelivered", async () => {
    const N = 10_000;
    const js = jetstream(controller.nc);
    const subject = subjects.request("sim-a");
    const bodies: Array<(i: number) => string> = [
      (i) => `not json ${i}`,
      () => "null",
      () => "[]",
      (i) => JSON.stringify({ requestId: `rt-bad-${i}` }),
      (i) => JSON.stringify({ ...request(), requestId: `rt-bad-${i}`, scope: "everything" }),
      (i) => JSON.stringify({ ...request(), requestId: `rt-bad-${i}`, host: "sim-b" }),
      (i) => JSON.stringify({ ...request(), requestId: `rt-bad-${i}`, bdf: "0000:zz:00.0", extra: 1 }),
      (i) => JSON.stringify({ ...request(), requestId: `rt-bad-${i}\u001b[2J`, reason: "" }),
    ];
    const info0 = await jsm.consumers.info(STREAMS.requests.name, "cxlrc-intake");
    let inFlight = 0;
    const pending = new Set<Promise<unknown>>();
    for (let i = 0; i < N; i++) {
      const body = bodies[i % bodies.length]!(i);
      const p = js.publish(subject, body, { timeout: 20_000 });
      tally.attempt(CLASSES.malformed);
      inFlight++;
      const q = p.finally(() => {
        inFlight--;
        pending.delete(q);
      });
      pending.add(q);
      if (inFlight >= 256) await Promise.race(pending);
    }
    await Promise.all(pending);
    const streamLast = (await jsm.streams.info(STREAMS.requests.name)).state.last_seq;
    await until(
      async () => {
        const ci = await jsm.consumers.info(STREAMS.requests.name, "cxlrc-intake");
        return ci.delivered.stream_seq >= streamLast && ci.num_ack_pending === 0 && ci.num_pending === 0;
      },
      "intake to handle every malformed request",
      60_000,
    );
    // Intake still serves: a valid request gets its outcome.
    const ok = request();
    await js.publish(subject, encodeJson(ok), { msgID: ok.requestId });
    const o = await coordinator.waitForOutcome(ok.requestId, 20_000);
    if (o.outcome !== "planned") tally.success(CLASSES.malformed, `intake stopped serving: ${o.outcome}`);
    expect(o.outcome, JSON.stringify(o)).toBe("planned");
    // After more than ack_wait, nothing came back: every rejection was final.
    await sleep(ACK_WAIT_MS * 1.5);
    const ci = await jsm.consumers.info(STREAMS.requests.name, "cxlrc-intake");
    const redelivered = ci.num_redelivered - info0.num_redelivered;
    if (redelivered > 0) tally.success(CLASSES.malformed, `${redelivered} requests redelivered`);
    expect(redelivered).toBe(0);
    expect(ci.num_ack_pending).toBe(0);
    expectNone(CLASSES.malformed);
  }, 90_000);
});

// ---------------------------------------------------------------------------------------------------
// 6. Rate limits per authenticated principal

describe("6. a controller's flood does not starve the operator", () => {
  it("the controller is limited whatever its reply inboxes; the operator's status requests all get through", async () => {
    const FLOOD = 1500;
    let limited = 0;
    const flood: Array<Promise<void>> = [];
    for (let i = 0; i < FLOOD; i++) {
      tally.attempt(CLASSES.starve);
      flood.push(
        // A fresh inbox per request (noMux): a limiter keyed on the reply subject would see 1500 callers.
        controller.nc
          .request(subjects.plan("sim-a"), encodeJson({ flood: i }), { timeout: 15_000, noMux: true })
          .then(
            (m) => {
              if (/rate-limited|too many requests/.test(m.string())) limited++;
            },
            () => undefined,
          ),
      );
    }
    const starved: string[] = [];
    for (let i = 0; i < 20; i++) {
      const f = await attempt(operator.nc, subjects.status, {}, 10_000);
      const ok = f.kind === "answered" && (JSON.parse(f.text) as { ok: boolean }).ok;
      if (!ok) {
        starved.push(f.kind === "answered" ? f.text.slice(0, 200) : f.kind);
        tally.success(CLASSES.starve, `operator status refused: ${starved.at(-1)}`);
      }
    }
    await Promise.all(flood);
    expect(starved).toEqual([]);
    expect(limited).toBeGreaterThan(0);
    expectNone(CLASSES.starve);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------------
// Bonus: the redirects that matter most (requests and PubAcks into the streams, control answers) on the
// 3-node cluster (nats-cluster.conf), attackers and responders on different nodes, streams replicated.

describe("the 3-node cluster: redirects change nothing there either", () => {
  let cluster: SecureBus;
  let handle: CoordinatorHandle | undefined;
  let agent: AgentHandle | undefined;
  let world: World;
  let ctl: Conn;
  let agentConn: Conn;

  beforeAll(async () => {
    cluster = await startSecureBus(ROSTER, { nodes: 3 });
    const [u1, u2, u3] = cluster.urls as [string, string, string];
    agentConn = await cluster.connectAs("agent-sim-a", { url: u1 });
    const coordConn = await cluster.connectAs("coord-1", { url: u2 });
    ctl = await cluster.connectAs("controller", { url: u3 });
    agent = await startAgent({ nc: agentConn.nc, host: "sim-a", backend: sim("sim-a"), heartbeatMs: 60_000 });
    handle = await startCoordinator({
      nc: coordConn.nc,
      id: "coord-c",
      metricsPort: null,
      leaseTtlMs: 15_000,
      replicas: 3,
      policy: { cooldownMs: 0, maxAttemptsPerWindow: 100 },
    });
    world = await prepare(cluster, coordConn, ctl, handle, 500);
  }, 60_000);

  afterAll(async () => {
    await agent?.stop().catch(() => undefined);
    await handle?.stop().catch(() => undefined);
    await cluster?.stop();
  });

  it("controller requests, plans and submits from node 3, agent events from node 1, coordinator on node 2", async () => {
    const ids: string[] = [];
    const remember = () => {
      const r = request();
      ids.push(r.requestId);
      return r;
    };
    await redirectPhase(
      world,
      CLASSES.cluster,
      null,
      [
        {
          label: "request",
          send: (t) =>
            ctl.nc.publish(subjects.request("sim-a"), encodeJson(remember()), { reply: t.subject }),
        },
        {
          label: "plan",
          send: (t) => ctl.nc.publish(subjects.plan("sim-a"), encodeJson(request()), { reply: t.subject }),
        },
        {
          label: "submit",
          send: (t) => ctl.nc.publish(subjects.submit("sim-a"), encodeJson(remember()), { reply: t.subject }),
        },
        {
          label: "agent event",
          send: (t) =>
            agentConn.nc.publish(
              subjects.agentEvent("sim-a", DEV, "note"),
              encodeJson(makeEvent({ host: "sim-a", bdf: DEV, kind: "note", source: "agent" })),
              { reply: t.subject },
            ),
        },
      ],
      async () => {
        await settleAfter(ctl, agentConn);
        for (const id of ids) await handle!.waitForOutcome(id, 20_000);
        const p = (await requestJson(ctl.nc, subjects.plan("sim-a"), request(), { timeoutMs: 10_000 })) as {
          ok: boolean;
        };
        expect(p.ok).toBe(true);
      },
    );
    // Every stored request was decided: the attacks reached the stream and the coordinator.
    expect(ids).toHaveLength(2 * targets(world).length);
    expectNone(CLASSES.cluster);
  }, 60_000);
});
