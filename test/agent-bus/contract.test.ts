// The agent contract's result half (shared/bus/agent-contract.ts): every operation's real result on the
// simulator is exactly what its schema describes, and a caller that receives anything else (a fake agent on
// a real nats-server) gets a "decode" error naming the op, the subject and the first bad field, and keeps
// working for the next good reply. AgentLink checks op.completed events the same way.
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { type AgentLink, createAgentLink } from "../../services/coordinator/agent-link.ts";
import { AGENT_RESULTS, type AgentResult } from "../../shared/bus/agent-contract.ts";
import { callAgent, connectBus } from "../../shared/bus/client.ts";
import { makeEvent } from "../../shared/bus/codec.ts";
import { type AgentOp, subjects } from "../../shared/bus/subjects.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { createSimHost, simpleHost, VirtualClock } from "../../shared/sim/index.ts";
import { DEV, rig } from "../agent-ops/fixtures.ts";
import { type Env, startEnv } from "./fixtures.ts";

/** What travels: the result as JSON, parsed back. */
const wire = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** The result parses with its op's schema and nothing is dropped or changed on the way. */
function conforms<Op extends AgentOp>(op: Op, result: AgentResult<Op>): void {
  const sent = wire(result);
  const parsed = AGENT_RESULTS[op].safeParse(sent);
  expect(parsed.error?.issues ?? []).toEqual([]);
  expect(parsed.data).toEqual(sent);
}

describe("every operation's real result matches the contract", () => {
  it("inventory, bind, probe", async () => {
    const { ctx } = rig();
    conforms("inventory", await operations.inventory(ctx));
    conforms("probe", await operations.probe(ctx, { bdf: DEV }));
    conforms("bind", await operations.bind(ctx, { bdf: DEV, driver: "vfio-pci" }));
    // And again with a driver bound.
    conforms("probe", await operations.probe(ctx, { bdf: DEV }));
    conforms("inventory", await operations.inventory(ctx));
  });

  for (const c of [
    { method: "flr", scope: "io" },
    { method: "cxl", scope: "full" },
    { method: "sbr", scope: "full" },
  ] as const) {
    it(`save, quiesce, reset (${c.method}), restore, verify (${c.scope} scope)`, async () => {
      const { ctx } = rig();
      const image = await operations.save(ctx, { bdf: DEV });
      conforms("save", image);
      conforms("quiesce", await operations.quiesce(ctx, { bdf: DEV, scope: c.scope }));
      conforms("reset", await operations.reset(ctx, { bdf: DEV, method: c.method }));
      const restored = await operations.restore(ctx, { bdf: DEV, scope: c.scope, image: wire(image) });
      conforms("restore", restored);
      if (c.scope === "full") expect(restored.decoders.length).toBeGreaterThan(0);
      conforms("verify", await operations.verify(ctx, { bdf: DEV, scope: c.scope, image: wire(image) }));
    });
  }

  it("verify with mismatches (io scope after a full reset: a scope violation)", async () => {
    const { ctx } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    await operations.reset(ctx, { bdf: DEV, method: "sbr" });
    const v = await operations.verify(ctx, { bdf: DEV, scope: "io", image: wire(image) });
    expect(v.mismatches.length).toBeGreaterThan(0);
    conforms("verify", v);
  });
});

// ---------------------------------------------------------------------------------------------------
// Over a real nats-server: a real agent on the simulator (host sim0) and a fake one (host liar).

const SIM = "sim0";
const LIAR = "liar";
let env: Env;
let liarNc: NatsConnection;
let good: { probe: AgentResult<"probe">; restore: AgentResult<"restore"> };
let n = 0;
const opId = () => `contract-${++n}`;

beforeAll(async () => {
  const sim = createSimHost(simpleHost({ name: SIM }), { clock: new VirtualClock() });
  env = await startEnv({ host: SIM, backend: sim });
  liarNc = await connectBus({ servers: env.server.url, name: "fake agent", log: silentLogger });
  const { ctx } = rig();
  const image = await operations.save(ctx, { bdf: DEV });
  good = {
    probe: wire(await operations.probe(ctx, { bdf: DEV })),
    restore: wire(await operations.restore(ctx, { bdf: DEV, scope: "full", image: wire(image) })),
  };
});
afterAll(async () => {
  await liarNc?.close();
  await env?.close();
});

/**
 * The fake agent: answers `op` with the next result of `results` (then the last one again), after
 * publishing an op.completed event carrying `event(i)` when that is given.
 */
async function liar(op: AgentOp, results: unknown[], event?: (i: number) => unknown): Promise<Subscription> {
  let i = 0;
  const sub = liarNc.subscribe(subjects.agent(LIAR, op), {
    callback: (_err, m) => {
      const body = m.json<{ opId: string; bdf: string }>();
      const k = Math.min(i++, results.length - 1);
      const carried = event?.(k);
      if (carried !== undefined) {
        const evt = makeEvent({
          host: LIAR,
          bdf: body.bdf,
          kind: "op.completed",
          source: "agent",
          opId: body.opId,
          data: { op, durationMs: 1, result: carried },
        });
        liarNc.publish(subjects.agentEvent(LIAR, body.bdf, "op.completed"), JSON.stringify(evt));
      }
      m.respond(JSON.stringify({ ok: true, opId: body.opId, result: results[k] }));
    },
  });
  await liarNc.flush();
  return sub;
}

async function rejection(p: Promise<unknown>): Promise<CxlrcError> {
  const e = await p.then(
    () => new Error("expected the call to reject"),
    (x: unknown) => x,
  );
  if (!(e instanceof CxlrcError)) throw e;
  return e;
}

/** A probe result with one field made wrong. */
const badProbe = () => {
  const p = structuredClone(good.probe) as unknown as { decoders: Array<Record<string, unknown>> };
  p.decoders[0]!.base = 42;
  return p;
};

describe("callAgent: the real agent's results pass, a fake agent's malformed result is a decode error", () => {
  it("every operation of the real agent on the simulator comes back typed (fault included)", async () => {
    const t = { timeoutMs: 10_000 };
    const inv = await callAgent(env.nc, SIM, "inventory", opId(), {}, t);
    expect(inv.devices.map((d) => d.bdf)).toContain(DEV);
    const probe = await callAgent(env.nc, SIM, "probe", opId(), { bdf: DEV }, t);
    expect(probe.cxl?.cxlResetCapable).toBe(true);
    const image = await callAgent(env.nc, SIM, "save", opId(), { bdf: DEV }, t);
    expect(image.identity.bdf).toBe(DEV);
    const q = await callAgent(env.nc, SIM, "quiesce", opId(), { bdf: DEV, scope: "full" }, t);
    expect(q.bdf).toBe(DEV);
    const r = await callAgent(env.nc, SIM, "reset", opId(), { bdf: DEV, method: "cxl" }, t);
    expect(r.reached).toContain(DEV);
    const restored = await callAgent(env.nc, SIM, "restore", opId(), { bdf: DEV, scope: "full", image }, t);
    expect(restored.checksum).toBe(image.checksum);
    expect(restored.verify).toBeUndefined();
    const v = await callAgent(env.nc, SIM, "verify", opId(), { bdf: DEV, scope: "full", image }, t);
    expect(v.passed).toBe(true);
    // Asked for, the verify comes with the restore (one operation), the same as a verify of its own.
    const both = await callAgent(
      env.nc,
      SIM,
      "restore",
      opId(),
      { bdf: DEV, scope: "full", image, verify: true },
      t,
    );
    expect(both.verify).toEqual(v);
    const f = await callAgent(env.nc, SIM, "fault", opId(), { bdf: DEV, action: "list" }, t);
    expect(f).toEqual({ bdf: DEV, faults: [] });
    const b = await callAgent(env.nc, SIM, "bind", opId(), { bdf: DEV, driver: null }, t);
    expect(b.driver).toBeNull();
  });

  it("names the op, the subject and the first bad field; the next good reply is returned", async () => {
    const sub = await liar("probe", [badProbe(), { bdf: DEV }, good.probe]);
    try {
      const subject = subjects.agent(LIAR, "probe");
      const call = () => callAgent(env.nc, LIAR, "probe", opId(), { bdf: DEV }, { timeoutMs: 5000 });
      const wrongType = await rejection(call());
      expect(wrongType.kind).toBe("decode");
      expect(wrongType.details).toMatchObject({ op: "probe", subject, field: "decoders.0.base" });
      expect(wrongType.message).toContain(subject);
      expect(wrongType.message).toContain('field "decoders.0.base"');
      const missing = await rejection(call());
      expect(missing.kind).toBe("decode");
      expect(missing.details.field).toBe("vendorId");
      const ok = await call();
      expect(ok).toEqual(good.probe);
      expect(ok.decoders[0]?.base).toBe(good.probe.decoders[0]?.base);
    } finally {
      sub.unsubscribe();
    }
  });

  it("a result that is not an object at all is named as the result", async () => {
    const sub = await liar("inventory", [null]);
    try {
      const e = await rejection(callAgent(env.nc, LIAR, "inventory", opId(), {}, { timeoutMs: 5000 }));
      expect(e.kind).toBe("decode");
      expect(e.details).toMatchObject({ op: "inventory", field: "result" });
    } finally {
      sub.unsubscribe();
    }
  });
});

describe("AgentLink.call: replies and op.completed events are both checked", () => {
  let link: AgentLink;
  beforeAll(async () => {
    link = createAgentLink({ nc: env.nc, log: silentLogger });
    await link.ready();
  });
  afterAll(() => link?.stop());

  const restoreCall = () =>
    link.call(
      LIAR,
      "restore",
      opId(),
      { bdf: DEV, scope: "full", image: {} },
      { timeoutMs: 5000, leaseKey: "none" },
    );

  it("a malformed reply rejects with decode; the next call gets its typed result", async () => {
    const bad = { ...good.restore, decoders: [{ index: 0, action: "forgotten", decommitted: false }] };
    const sub = await liar("restore", [bad, good.restore]);
    try {
      const e = await rejection(restoreCall());
      expect(e.kind).toBe("decode");
      expect(e.details).toMatchObject({
        op: "restore",
        subject: subjects.agent(LIAR, "restore"),
        field: "decoders.0.action",
      });
      const r = await restoreCall();
      expect(r.decoders.map((d) => d.action)).toEqual(good.restore.decoders.map((d) => d.action));
    } finally {
      sub.unsubscribe();
    }
  });

  it("an op.completed event with a malformed result is dropped as malformed; the reply decides", async () => {
    const before = link.stats().dropped.malformed;
    const sub = await liar("restore", [good.restore], () => ({ ...good.restore, configLock: "yes" }));
    try {
      expect(await restoreCall()).toEqual(good.restore);
      expect(link.stats().dropped.malformed).toBe(before + 1);
    } finally {
      sub.unsubscribe();
    }
  });

  it("a well-formed op.completed event (sent before the reply) settles the call, checked as a reply is", async () => {
    const sub = await liar("restore", [{ nonsense: true }], () => good.restore);
    try {
      expect(await restoreCall()).toEqual(good.restore);
    } finally {
      sub.unsubscribe();
    }
  });
});
