// Property-based fuzzing (fast-check, fixed seeds, bounded runs) of every message type at every agent
// endpoint and at the coordinator's control endpoints, over the deploy configuration (TLS identities, accounts,
// role permissions): malformed JSON, random bytes, non-objects, wrong types, missing and extra keys, bad values,
// oversized payloads, tampered images, operation ids replayed with other parameters. Every message gets an
// error reply, or (sent without a reply subject) is refused unread and counted by the agent (logged, bounded); the services stay up (a probe
// and a status request still answer) and no simulated device changes (register snapshot, reset counters and
// faults before and after). Identical replays of a completed reset are answered from the first result: the
// device is not reset again.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import { type CoordinatorHandle, startCoordinator } from "../../services/coordinator/service.ts";
import { AGENT_PARAMS, AgentReply } from "../../shared/bus/agent-messages.ts";
import { callAgent } from "../../shared/bus/client.ts";
import { decodeJson, encodeJson } from "../../shared/bus/codec.ts";
import { ControlReply } from "../../shared/bus/requests.ts";
import { AGENT_OPS, type AgentOp, subjects } from "../../shared/bus/subjects.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import { FaultSpec, SIMPLE_DEVICE, SIMPLE_ROOT_PORT, type SimHost } from "../../shared/sim/index.ts";
import { type Conn, type SecureBus, startSecureBus, until } from "./env.ts";
import { simHost, TEST_ROSTER } from "./roster.ts";

const DEV = SIMPLE_DEVICE;
const SEED = 20_240_611;
const RUNS_PER_AGENT_OP = 40;
const RUNS_PER_CONTROL = 30;
const AGENT_MAX_PAYLOAD = 256 * 1024;
/** The deploy config's max_payload (1MB). */
const SERVER_LIMIT = 1024 * 1024;
/** Largest message the fuzzer expects the server to carry (room for the protocol line). */
const SERVER_MAX_PAYLOAD = SERVER_LIMIT - 4096;

let bus: SecureBus;
let coord: Conn;
let chaos: Conn;
let controller: Conn;
let operator: Conn;
let sre: Conn;
let sim: SimHost;
let agent: AgentHandle;
let coordinator: CoordinatorHandle;
const logLines: string[] = [];
let image: unknown;
let legitReset: unknown;

function captureLogger(name: string): Logger {
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split("\n")) if (line) logLines.push(line);
      done();
    },
  });
  return createLogger(name, { level: "info", destination: sink });
}

const countLogs = (re: RegExp) => logLines.filter((l) => re.test(l)).length;

interface DeviceState {
  dev: { config: number[]; component: number[] };
  port: { config: number[] };
  counters: unknown;
  faults: unknown;
}

function deviceState(): DeviceState {
  const d = sim.snapshot(DEV);
  return {
    dev: { config: [...d.config], component: [...d.component] },
    port: { config: [...sim.snapshot(SIMPLE_ROOT_PORT).config] },
    counters: sim.counters(DEV),
    faults: sim.faults.list(DEV),
  };
}

/** A valid-looking base message per op (only ever sent mutated, or as an exact replay). */
function baseMessage(op: AgentOp, opId: string): Record<string, unknown> {
  switch (op) {
    case "inventory":
      return { opId };
    case "bind":
      return { opId, bdf: DEV, driver: null };
    case "probe":
    case "save":
      return { opId, bdf: DEV };
    case "quiesce":
      return { opId, bdf: DEV, scope: "io" };
    case "reset":
      return { opId, bdf: DEV, method: "flr" };
    case "restore":
    case "verify":
      return { opId, bdf: DEV, scope: "full", image };
    case "fault":
      return { opId, bdf: DEV, action: "set", fault: { name: "cxl-reset-stuck" } };
    case "ping":
      return { opId };
  }
}

type Mutation =
  | { kind: "bytes"; data: Uint8Array }
  | { kind: "json"; value: unknown; pad?: number }
  | { kind: "replay-conflict"; value: unknown };

const LEGIT_IDS = ["legit-inventory", "legit-probe", "legit-save", "legit-reset"];

/** Invalid messages for one op. */
function mutations(op: AgentOp): fc.Arbitrary<Mutation> {
  const opId = fc.string({ minLength: 1, maxLength: 24 }).map((s) => `fz-${s}`);
  const base = opId.map((id) => baseMessage(op, id));
  const keyOf = (m: Record<string, unknown>) => fc.constantFrom(...Object.keys(m));
  const bytes = fc
    .uint8Array({ minLength: 0, maxLength: 300 })
    .map((data): Mutation => ({ kind: "bytes", data }));
  const brokenJson = fc
    .tuple(base, fc.nat(), fc.constantFrom("", "}", "{", ",", "\u0000", '"', "]"))
    .map(([m, cut, junk]): Mutation => {
      const text = JSON.stringify(m);
      const at = cut % text.length;
      return { kind: "bytes", data: new TextEncoder().encode(text.slice(0, at) + junk) };
    });
  const invalidUtf8 = base.map((m): Mutation => {
    const t = new TextEncoder().encode(JSON.stringify(m));
    return { kind: "bytes", data: Uint8Array.from([...t.slice(0, -1), 0xc3, 0x28, 0x7d]) };
  });
  const nonObject = fc
    .oneof(
      fc.integer(),
      fc.double(),
      fc.string(),
      fc.constant(null),
      fc.boolean(),
      fc.array(fc.anything(), { maxLength: 4 }),
    )
    .map((value): Mutation => ({ kind: "json", value }));
  const wrongType = base.chain((m) =>
    fc
      .tuple(keyOf(m), fc.anything({ maxDepth: 2 }))
      .map(([k, v]): Mutation => ({ kind: "json", value: { ...m, [k]: v } })),
  );
  const missingKey = base.chain((m) =>
    keyOf(m).map((k): Mutation => {
      const { [k]: _gone, ...rest } = m;
      return { kind: "json", value: rest };
    }),
  );
  const extraKeys = base.chain((m) =>
    fc
      .dictionary(
        fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !(k in m) && k !== "__proto__"),
        fc.anything({ maxDepth: 1 }),
        { minKeys: 1, maxKeys: 3 },
      )
      .map((extra): Mutation => ({ kind: "json", value: { ...m, ...extra } })),
  );
  const badValue = base.chain((m) =>
    fc
      .oneof(
        fc.record({ bdf: fc.string({ maxLength: 16 }) }),
        fc.record({ bdf: fc.constantFrom("0000:01:00.8", "0000:1:00.0", "0000:01:00.0 ", "0000:GG:00.0") }),
        fc.record({ opId: fc.constantFrom("", "x".repeat(129)) }),
        fc.record({ scope: fc.string({ maxLength: 8 }) }),
        fc.record({ method: fc.string({ maxLength: 8 }) }),
        fc.record({ action: fc.string({ maxLength: 8 }) }),
        fc.record({ driver: fc.string({ minLength: 65, maxLength: 80 }) }),
      )
      .map((patch): Mutation => ({ kind: "json", value: { ...m, ...patch } })),
  );
  const oversized = fc
    .tuple(base, fc.integer({ min: AGENT_MAX_PAYLOAD + 1, max: SERVER_LIMIT + 200_000 }))
    .map(([m, size]): Mutation => ({ kind: "json", value: m, pad: size }));
  const tamperedImage = fc
    .tuple(opId, fc.constantFrom("checksum", "bdf", "register", "drop-key", "agentVersion"))
    .map(([id, how]): Mutation => {
      const img = structuredClone(image) as Record<string, unknown> & {
        checksum: string;
        identity: { bdf: string };
      };
      if (how === "checksum") img.checksum = `sha256:${"0".repeat(64)}`;
      else if (how === "bdf") img.identity.bdf = "0000:02:00.0";
      else if (how === "drop-key") delete (img as Record<string, unknown>).pci;
      else if (how === "agentVersion") img.agentVersion = "9.9.9";
      else {
        const text = JSON.stringify(img).replace(
          /"0x([0-9a-f]{8})"/,
          (_m, h: string) => `"0x${((Number.parseInt(h, 16) ^ 1) >>> 0).toString(16).padStart(8, "0")}"`,
        );
        return { kind: "json", value: { ...baseMessage(op, id), image: JSON.parse(text) } };
      }
      return { kind: "json", value: { ...baseMessage(op, id), image: img } };
    });
  // A completed operation's id with other parameters: another op, or the same op on another device.
  const legitOp: Record<string, AgentOp> = {
    "legit-inventory": "inventory",
    "legit-probe": "probe",
    "legit-save": "save",
    "legit-reset": "reset",
  };
  const replayConflict = fc
    .tuple(fc.constantFrom(...LEGIT_IDS), base)
    .filter(([id, m]) => legitOp[id] !== op || "bdf" in m)
    .map(([id, m]): Mutation => {
      const value = legitOp[id] === op ? { ...m, opId: id, bdf: "0000:02:00.0" } : { ...m, opId: id };
      return { kind: "replay-conflict", value };
    });
  const parts: Array<fc.Arbitrary<Mutation>> = [
    bytes,
    brokenJson,
    invalidUtf8,
    nonObject,
    wrongType,
    missingKey,
    extraKeys,
    badValue,
    oversized,
    replayConflict,
  ];
  if (op === "restore" || op === "verify") parts.push(tamperedImage);
  return fc.oneof(...parts);
}

function encodeMutation(m: Mutation): Uint8Array {
  if (m.kind === "bytes") return m.data;
  if (m.kind === "json" && m.pad !== undefined) {
    const text = JSON.stringify(m.value);
    const padded = `${text.slice(0, -1)}${text.length > 2 ? "," : ""}"pad":"${"x".repeat(Math.max(0, m.pad - text.length - 10))}"}`;
    return new TextEncoder().encode(padded);
  }
  return encodeJson(m.value);
}

/** Could this message be a valid command (so it would run)? Only schema-invalid or op-invalid ones are sent. */
function mustFail(op: AgentOp, m: Mutation, data: Uint8Array): boolean {
  if (m.kind === "replay-conflict") return true;
  if (data.length > AGENT_MAX_PAYLOAD) return true;
  let value: unknown;
  try {
    value = decodeJson(data);
  } catch {
    return true;
  }
  const r = AGENT_PARAMS[op].safeParse(value);
  if (!r.success) return true;
  // Schema-valid: only restore/verify with a broken image, and fault "set" with an invalid fault, are sent
  // (the op must refuse them before any write).
  const v = r.data as Record<string, unknown>;
  if (op === "fault") return v.action === "set" && !FaultSpec.safeParse(v.fault).success;
  return (op === "restore" || op === "verify") && JSON.stringify(v.image) !== JSON.stringify(image);
}

const figures = {
  agentMessages: 0,
  agentErrorReplies: 0,
  agentRefusedNoReply: 0,
  agentOversizedRefusedByClient: 0,
  identicalReplays: 0,
  controlMessages: 0,
  controlErrorReplies: 0,
  controlDuplicates: 0,
};

beforeAll(async () => {
  bus = await startSecureBus(TEST_ROSTER);
  coord = await bus.connectAs("coord-1", { log: captureLogger("coordinator-bus") });
  chaos = await bus.connectAs("chaos");
  controller = await bus.connectAs("controller");
  operator = await bus.connectAs("operator");
  sre = await bus.connectAs("sre");
  const agentConn = await bus.connectAs("agent-sim-a", { log: captureLogger("agent-bus") });
  coordinator = await startCoordinator({
    nc: coord.nc,
    id: "coord-1",
    metricsPort: null,
    log: captureLogger("coordinator"),
  });
  sim = simHost("sim-a");
  agent = await startAgent({
    nc: agentConn.nc,
    host: "sim-a",
    backend: sim,
    heartbeatMs: 60_000,
    log: captureLogger("agent"),
  });
  // Completed operations whose ids the fuzzer replays.
  const t = { timeoutMs: 10_000 };
  await callAgent(coord.nc, "sim-a", "inventory", "legit-inventory", {}, t);
  await callAgent(coord.nc, "sim-a", "probe", "legit-probe", { bdf: DEV }, t);
  image = await callAgent(coord.nc, "sim-a", "save", "legit-save", { bdf: DEV }, t);
  legitReset = await callAgent(coord.nc, "sim-a", "reset", "legit-reset", { bdf: DEV, method: "flr" }, t);
  // Put the function back as it was (an FLR clears BARs and the command register).
  await callAgent(coord.nc, "sim-a", "restore", "legit-restore", { bdf: DEV, scope: "io", image }, t);
});

afterAll(async () => {
  console.log(
    `fuzz (seed ${SEED}): agent ${figures.agentMessages} messages at ${AGENT_OPS.length} endpoints → ` +
      `${figures.agentErrorReplies} error replies, ${figures.agentRefusedNoReply} without a reply subject refused unread, ` +
      `${figures.agentOversizedRefusedByClient} over the server limit refused before sending; ` +
      `${figures.identicalReplays} identical replays answered from the first result; ` +
      `coordinator ${figures.controlMessages} control messages → ${figures.controlErrorReplies} error replies, ` +
      `${figures.controlDuplicates} duplicate submits answered as duplicates; device state unchanged`,
  );
  await agent?.stop().catch(() => undefined);
  await coordinator?.stop().catch(() => undefined);
  await bus?.stop();
});

/**
 * Send one message to an agent endpoint; returns the reply, or "refused" when sent without a reply subject (the
 * agent answers only a caller's inbox: it counts the message and runs nothing).
 */
async function sendToAgent(
  c: Conn,
  op: AgentOp,
  data: Uint8Array,
  withReply: boolean,
): Promise<AgentReply | "refused"> {
  const subject = subjects.agent("sim-a", op);
  if (!withReply) {
    const before = agent.stats().refusedReplySubjects;
    c.nc.publish(subject, data);
    await c.nc.flush();
    await until(
      () => agent.stats().refusedReplySubjects > before,
      `the agent refusing a ${op} with no reply subject`,
    );
    return "refused";
  }
  const msg = await c.nc.request(subject, data, { timeout: 10_000 });
  return AgentReply.parse(decodeJson(msg));
}

describe("agent endpoints", () => {
  for (const op of AGENT_OPS) {
    it(`${op}: every invalid message gets an error reply or a log line; nothing changes`, async () => {
      const c = op === "fault" ? chaos : coord;
      const before = deviceState();
      const stats0 = agent.stats();
      await fc.assert(
        fc.asyncProperty(mutations(op), fc.integer({ min: 0, max: 3 }), async (m, mode) => {
          const data = encodeMutation(m);
          fc.pre(mustFail(op, m, data));
          figures.agentMessages++;
          if (data.length > SERVER_LIMIT) {
            expect(() => c.nc.publish(subjects.agent("sim-a", op), data)).toThrow(/payload/i);
            figures.agentOversizedRefusedByClient++;
            return;
          }
          // Mostly requests; about one in four published without a reply subject.
          const reply = await sendToAgent(c, op, data, mode !== 0 || m.kind === "replay-conflict");
          if (reply === "refused") {
            figures.agentRefusedNoReply++;
            return;
          }
          expect(reply.ok, JSON.stringify(reply).slice(0, 300)).toBe(false);
          if (!reply.ok) expect(reply.error.message.length).toBeGreaterThan(0);
          if (m.kind === "replay-conflict" && !reply.ok) expect(reply.error.message).toMatch(/already used/);
          figures.agentErrorReplies++;
        }),
        { seed: SEED + AGENT_OPS.indexOf(op), numRuns: RUNS_PER_AGENT_OP, endOnFailure: true },
      );
      expect(deviceState()).toEqual(before);
      const stats1 = agent.stats();
      expect(stats1.completed).toBe(stats0.completed);
      // Still serving: a fresh probe answers.
      const probe = (await callAgent(
        coord.nc,
        "sim-a",
        "probe",
        `alive-${op}`,
        { bdf: DEV },
        { timeoutMs: 5000 },
      )) as {
        bdf: string;
      };
      expect(probe.bdf).toBe(DEV);
    });
  }

  it("the state oracle sees a change (so an unchanged state means something)", async () => {
    const before = deviceState();
    await callAgent(
      chaos.nc,
      "sim-a",
      "fault",
      "oracle-set",
      { bdf: DEV, action: "set", fault: { name: "cxl-reset-stuck" } },
      { timeoutMs: 5000 },
    );
    expect(deviceState()).not.toEqual(before);
    await callAgent(
      chaos.nc,
      "sim-a",
      "fault",
      "oracle-clear",
      { bdf: DEV, action: "clear" },
      { timeoutMs: 5000 },
    );
    expect(deviceState()).toEqual(before);
    await callAgent(
      coord.nc,
      "sim-a",
      "reset",
      "oracle-reset",
      { bdf: DEV, method: "flr" },
      { timeoutMs: 5000 },
    );
    const after = deviceState();
    expect(after.dev.config).not.toEqual(before.dev.config);
    expect(after.counters).not.toEqual(before.counters);
    await callAgent(
      coord.nc,
      "sim-a",
      "restore",
      "oracle-restore",
      { bdf: DEV, scope: "io", image },
      { timeoutMs: 5000 },
    );
  });

  it("messages without a reply subject were logged when refused, at most ten lines then one per thousand", () => {
    const refused = agent.stats().refusedReplySubjects;
    expect(refused).toBe(figures.agentRefusedNoReply);
    const lines = countLogs(/reply subject is not a caller's inbox/);
    expect(lines).toBeGreaterThan(0);
    expect(lines).toBeLessThanOrEqual(Math.min(refused, 10) + Math.floor(refused / 1000));
  });

  it("identical replays of a completed reset are answered from the first result; no second reset", async () => {
    const before = deviceState();
    for (let i = 0; i < 20; i++) {
      const r = await callAgent(
        coord.nc,
        "sim-a",
        "reset",
        "legit-reset",
        { bdf: DEV, method: "flr" },
        { timeoutMs: 5000 },
      );
      expect(r).toEqual(legitReset);
      figures.identicalReplays++;
    }
    expect(deviceState()).toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------------------
// Coordinator control endpoints

type Control = "plan" | "submit" | "status" | "release" | "image" | "breaker" | "events";

/** The subject of a control endpoint (plan and submit name the host: sim-a, the controller's). */
function controlSubject(ctl: Control): string {
  return ctl === "plan" || ctl === "submit" ? subjects[ctl]("sim-a") : subjects[ctl];
}

const CONTROL_BASE: Record<Control, () => Record<string, unknown>> = {
  plan: () => ({ requestId: "fz-plan", host: "sim-a", bdf: DEV, scope: "io", reason: "fuzz", dryRun: true }),
  submit: () => ({
    requestId: "fz-submit",
    host: "sim-a",
    bdf: DEV,
    scope: "io",
    reason: "fuzz",
    dryRun: true,
  }),
  status: () => ({ host: "sim-a" }),
  release: () => ({ host: "sim-a", bdf: DEV, operator: "fuzz", reason: "fuzz" }),
  image: () => ({ host: "sim-a", bdf: DEV }),
  breaker: () => ({ operator: "fuzz", reason: "fuzz" }),
  events: () => ({ host: "sim-a", startSeq: 1, max: 10 }),
};

function controlMutations(ctl: Control): fc.Arbitrary<Mutation> {
  const base = fc.constant(CONTROL_BASE[ctl]());
  const keyOf = (m: Record<string, unknown>) => fc.constantFrom(...Object.keys(m));
  return fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 200 }).map((data): Mutation => ({ kind: "bytes", data })),
    fc
      .oneof(fc.integer(), fc.string(), fc.constant(null), fc.array(fc.anything(), { maxLength: 3 }))
      .map((value): Mutation => ({ kind: "json", value })),
    base.chain((m) =>
      fc
        .tuple(keyOf(m), fc.anything({ maxDepth: 2 }))
        .map(([k, v]): Mutation => ({ kind: "json", value: { ...m, [k]: v } })),
    ),
    base.chain((m) =>
      keyOf(m).map((k): Mutation => {
        const { [k]: _gone, ...rest } = m;
        return { kind: "json", value: rest };
      }),
    ),
    base.chain((m) =>
      fc
        .dictionary(
          fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !(k in m) && k !== "__proto__"),
          fc.anything({ maxDepth: 1 }),
          { minKeys: 1, maxKeys: 3 },
        )
        .map((extra): Mutation => ({ kind: "json", value: { ...m, ...extra } })),
    ),
    base.chain((m) =>
      fc
        .oneof(
          fc.record({ host: fc.constantFrom("", "a.b", "*", ">", "x".repeat(65), "h o s t") }),
          fc.record({ bdf: fc.constantFrom("0000:01:00.8", "01:00.0", "") }),
          fc.record({ reason: fc.constantFrom("", "r".repeat(501)) }),
        )
        .map((patch): Mutation => ({ kind: "json", value: { ...m, ...patch } })),
    ),
    fc
      .integer({ min: 300_000, max: SERVER_MAX_PAYLOAD })
      .map((size): Mutation => ({ kind: "json", value: CONTROL_BASE[ctl](), pad: size })),
  );
}

const CONTROL_SCHEMAS = {
  plan: "ResetRequestMessage",
  submit: "ResetRequestMessage",
  status: "StatusRequest",
  release: "ReleaseRequest",
  image: "ImageRequest",
  breaker: "BreakerResetRequest",
  events: "EventsRequest",
} as const;

describe("coordinator control endpoints", () => {
  const who = (ctl: Control): (() => Conn) =>
    ctl === "plan" || ctl === "submit"
      ? () => controller
      : ctl === "release" || ctl === "breaker"
        ? () => operator
        : () => sre;
  for (const ctl of Object.keys(CONTROL_BASE) as Control[]) {
    it(`${ctl}: every invalid message gets an error reply; nothing changes (${CONTROL_SCHEMAS[ctl]})`, async () => {
      const before = deviceState();
      const requests = await import("../../shared/bus/requests.ts");
      const schema = requests[CONTROL_SCHEMAS[ctl]];
      await fc.assert(
        fc.asyncProperty(controlMutations(ctl), async (m) => {
          const data = encodeMutation(m);
          let valid = false;
          try {
            valid = schema.safeParse(decodeJson(data)).success;
          } catch {
            valid = false;
          }
          fc.pre(!valid);
          figures.controlMessages++;
          const msg = await who(ctl)().nc.request(controlSubject(ctl), data, { timeout: 15_000 });
          const reply = ControlReply.parse(decodeJson(msg));
          expect(reply.ok, JSON.stringify(reply).slice(0, 300)).toBe(false);
          figures.controlErrorReplies++;
        }),
        {
          seed: SEED + 100 + Object.keys(CONTROL_BASE).indexOf(ctl),
          numRuns: RUNS_PER_CONTROL,
          endOnFailure: true,
        },
      );
      expect(deviceState()).toEqual(before);
      const status = ControlReply.parse(
        decodeJson(await sre.nc.request(subjects.status, encodeJson({}), { timeout: 5000 })),
      );
      expect(status.ok).toBe(true);
    });
  }

  it("a replayed submit (same requestId) is answered as a duplicate and not run again", async () => {
    const body = { ...CONTROL_BASE.submit(), requestId: "fz-replayed" };
    const first = ControlReply.parse(
      decodeJson(
        await controller.nc.request(subjects.submit("sim-a"), encodeJson(body), { timeout: 15_000 }),
      ),
    );
    expect(first.ok).toBe(true);
    const before = deviceState();
    for (let i = 0; i < 5; i++) {
      const again = ControlReply.parse(
        decodeJson(
          await controller.nc.request(subjects.submit("sim-a"), encodeJson(body), { timeout: 15_000 }),
        ),
      );
      expect(again).toMatchObject({ ok: true, result: { duplicate: true } });
      figures.controlDuplicates++;
    }
    expect(deviceState()).toEqual(before);
  });

  it("no log line carries a secret", () => {
    expect(logLines.length).toBeGreaterThan(0);
    // The only secrets are the TLS private keys (the certificate is the identity: no seed, no password).
    const keys = readdirSync(bus.tlsDir)
      .filter((f) => f.endsWith("-key.pem"))
      .map((f) => readFileSync(join(bus.tlsDir, f), "utf8"));
    expect(keys.length).toBeGreaterThan(TEST_ROSTER.principals.length);
    for (const key of keys) {
      const body = key
        .split("\n")
        .filter((l) => l && !l.startsWith("-----"))
        .join("");
      for (const part of body.match(/.{1,40}/g) ?? []) {
        expect(logLines.filter((l) => l.includes(part))).toEqual([]);
      }
    }
    expect(logLines.filter((l) => /PRIVATE KEY|"SU[A-Z2-7]{56}"/.test(l))).toEqual([]);
    // The connection logs say who connected (the certificate), not with what.
    expect(logLines.some((l) => l.includes(`"cert":"${join(bus.tlsDir, "coord-1.pem")}"`))).toBe(true);
  });
});
