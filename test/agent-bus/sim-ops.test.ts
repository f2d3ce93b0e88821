// The real operations on the simulator, over a real nats-server: probe → save → quiesce → reset →
// restore → verify for each method, faults injected through the bus giving typed error replies, and the
// opId rule checked against the device's own reset counters.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callAgent } from "../../shared/bus/client.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { createSimHost, type SimHost, simpleHost, VirtualClock } from "../../shared/sim/index.ts";
import { type Env, readEvents, startEnv } from "./fixtures.ts";

const HOST = "sim0";
const DEV = "0000:01:00.0";
let env: Env;
let sim: SimHost;
let n = 0;

beforeAll(async () => {
  sim = createSimHost(simpleHost({ name: HOST }), { clock: new VirtualClock() });
  env = await startEnv({ host: HOST, backend: sim });
});
afterAll(async () => {
  await env?.close();
});

function call<T = Record<string, unknown>>(
  op: Parameters<typeof callAgent>[2],
  params: object,
  opId = `op-${++n}`,
) {
  return callAgent(env.nc, HOST, op, opId, params as never, { timeoutMs: 10_000 }) as Promise<T>;
}

async function fails(p: Promise<unknown>): Promise<CxlrcError> {
  const e = await p.then(
    () => new Error("expected an error reply"),
    (x: unknown) => x,
  );
  if (!(e instanceof CxlrcError)) throw e;
  return e;
}

async function clearFaults() {
  await call("fault", { bdf: DEV, action: "clear" });
  sim.boot();
}

const cycles = [
  { method: "flr", scope: "io", counter: "flr" },
  { method: "cxl", scope: "full", counter: "cxlReset" },
  { method: "sbr", scope: "full", counter: "conventionalReset" },
] as const;

describe("a save that reads the device after it (save.probe)", () => {
  it("answers the image and, beside it, the facts read once saved; a repeat after it ended gets the image alone", async () => {
    const saved = await call<Record<string, unknown> & { probe?: { bdf: string }; checksum: string }>(
      "save",
      { bdf: DEV, probe: true },
      "save-probe-1",
    );
    expect(saved.probe?.bdf).toBe(DEV);
    expect(saved.checksum).toMatch(/^sha256:/);
    // The image is the image without the facts: a restore takes it as saved (its checksum covers it alone).
    const { probe: _facts, ...image } = saved;
    await call("restore", { bdf: DEV, scope: "io", image });
    // The same operation id again, once it has ended: the first image, but no facts of then (read afresh).
    const again = await call<Record<string, unknown>>("save", { bdf: DEV, probe: true }, "save-probe-1");
    expect(again).not.toHaveProperty("probe");
    expect(again.checksum).toBe(saved.checksum);
  });
});

describe("save / reset / restore / verify over the bus", () => {
  for (const c of cycles) {
    it(`${c.method} (${c.scope} scope): every step answers, the device is reset once and verifies clean`, async () => {
      await clearFaults();
      const before = sim.counters(DEV)[c.counter];
      const probe = await call<{
        bdf: string;
        flrCapable: boolean;
        cxl: { cxlResetCapable: boolean } | null;
      }>("probe", { bdf: DEV });
      expect(probe).toMatchObject({ bdf: DEV, flrCapable: true, cxl: { cxlResetCapable: true } });
      const image = await call("save", { bdf: DEV });
      expect(image).toMatchObject({ checksum: expect.any(String) });
      await call("quiesce", { bdf: DEV, scope: c.scope });
      const opId = `cycle-${c.method}`;
      const reset = await call("reset", { bdf: DEV, method: c.method }, opId);
      expect(reset).toMatchObject({ bdf: DEV, method: c.method });
      expect(sim.counters(DEV)[c.counter]).toBe(before + 1);
      const restored = await call("restore", { bdf: DEV, scope: c.scope, image });
      expect(restored).toMatchObject({ bdf: DEV, scope: c.scope });
      const verified = await call("verify", { bdf: DEV, scope: c.scope, image });
      expect(verified).toMatchObject({ passed: true, mismatches: [], scopeViolation: false });

      // The reset's events are in the stream under the device's subject, in order.
      const kinds = (await readEvents(env.jsm)).filter((e) => e.event.opId === opId).map((e) => e.event.kind);
      expect(kinds[0]).toBe("op.started");
      expect(kinds).toContain("reset.started");
      expect(kinds).toContain("reset.completed");
      expect(kinds.at(-1)).toBe("op.completed");
    });
  }

  it("the same reset opId twice: one reset on the device, identical replies", async () => {
    await clearFaults();
    const before = sim.counters(DEV).cxlReset;
    const body = JSON.stringify({ opId: "twice-1", bdf: DEV, method: "cxl" });
    const subject = `cxlrc.agent.${HOST}.reset`;
    const [a, b] = await Promise.all([
      env.nc.request(subject, body, { timeout: 10_000 }),
      env.nc.request(subject, body, { timeout: 10_000 }),
    ]);
    const c = await env.nc.request(subject, body, { timeout: 10_000 });
    expect(a.json<{ ok: boolean }>().ok).toBe(true);
    expect(b.string()).toBe(a.string());
    expect(c.string()).toBe(a.string());
    expect(sim.counters(DEV).cxlReset).toBe(before + 1);
  });
});

describe("a reset that restores in the same operation", () => {
  type Reset = {
    reached: string[];
    restore?:
      | { ok: true; result: { verify?: { passed: boolean }; decoders: { action: string }[] } }
      | {
          ok: false;
          error: { kind: string; message: string };
        };
  };

  it("quiesces, resets once, restores and verifies: the device is back as saved, one reply says it all", async () => {
    await clearFaults();
    const image = await call("save", { bdf: DEV });
    const before = sim.counters(DEV).cxlReset;
    const opId = "merged-1";
    const r = await call<Reset>(
      "reset",
      {
        bdf: DEV,
        method: "cxl",
        quiesce: { scope: "full" },
        restore: { scope: "full", image, verify: true },
      },
      opId,
    );
    expect(sim.counters(DEV).cxlReset).toBe(before + 1);
    expect(r.reached).toContain(DEV);
    expect(r.restore).toMatchObject({ ok: true, result: { verify: { passed: true } } });
    // The device really is as saved: an independent read agrees.
    expect(await call("verify", { bdf: DEV, scope: "full", image })).toMatchObject({
      passed: true,
      mismatches: [],
    });
    const kinds = (await readEvents(env.jsm)).filter((e) => e.event.opId === opId).map((e) => e.event.kind);
    expect(kinds.indexOf("reset.completed")).toBeLessThan(kinds.indexOf("restore.started"));
    expect(kinds.indexOf("restore.completed")).toBeLessThan(kinds.indexOf("verify.completed"));
    expect(kinds.at(-1)).toBe("op.completed");
  });

  it("a restore that fails after the reset: the operation succeeds (the reset happened) and names the error", async () => {
    await clearFaults();
    const image = await call("save", { bdf: DEV });
    await call("fault", { bdf: DEV, action: "set", fault: { name: "commit-error", decoder: 0 } });
    const before = sim.counters(DEV).cxlReset;
    const opId = "merged-fail";
    const r = await call<Reset>(
      "reset",
      { bdf: DEV, method: "cxl", restore: { scope: "full", image, verify: true } },
      opId,
    );
    expect(sim.counters(DEV).cxlReset).toBe(before + 1);
    expect(r.restore).toMatchObject({ ok: false, error: { kind: "commit-error" } });
    // Asked again (a coordinator that took the device over): the first reply, never a second reset.
    const again = await call<Reset>(
      "reset",
      { bdf: DEV, method: "cxl", restore: { scope: "full", image, verify: true } },
      opId,
    );
    expect(again).toEqual(r);
    expect(sim.counters(DEV).cxlReset).toBe(before + 1);
  });

  it("a bad restore image is a bad-input of the restore, not of the reset", async () => {
    await clearFaults();
    const r = await call<Reset>("reset", {
      bdf: DEV,
      method: "flr",
      restore: { scope: "io", image: { checksum: "nope" } },
    });
    expect(r.reached).toContain(DEV);
    expect(r.restore).toMatchObject({ ok: false, error: { kind: "bad-input" } });
  });
});

describe("faults injected over the bus", () => {
  it("cxl-reset-error: the reset fails with kind reset-error", async () => {
    await clearFaults();
    const set = await call<{ faults: unknown[] }>("fault", {
      bdf: DEV,
      action: "set",
      fault: { name: "cxl-reset-error" },
    });
    expect(set.faults).toEqual([{ name: "cxl-reset-error" }]);
    const e = await fails(call("reset", { bdf: DEV, method: "cxl" }));
    expect(e.kind).toBe("reset-error");
    expect(e.details).toMatchObject({ bdf: DEV, remote: true });
  });

  it("commit-error on decoder 0: restore fails with kind commit-error", async () => {
    await clearFaults();
    const image = await call("save", { bdf: DEV });
    await call("reset", { bdf: DEV, method: "sbr" });
    await call("fault", { bdf: DEV, action: "set", fault: { name: "commit-error", decoder: 0 } });
    const e = await fails(call("restore", { bdf: DEV, scope: "full", image }));
    expect(e.kind).toBe("commit-error");
  });

  it("gone: probe fails with kind device-absent; the agent still serves after clearing it", async () => {
    await clearFaults();
    await call("fault", { bdf: DEV, action: "set", fault: { name: "gone" } });
    expect((await fails(call("probe", { bdf: DEV }))).kind).toBe("device-absent");
    await clearFaults();
    expect(await call("probe", { bdf: DEV })).toMatchObject({ bdf: DEV });
  });

  it("flr-clears-hdm: io-scope verify reports a scope violation naming the registers", async () => {
    await clearFaults();
    const image = await call("save", { bdf: DEV });
    await call("fault", { bdf: DEV, action: "set", fault: { name: "flr-clears-hdm" } });
    await call("reset", { bdf: DEV, method: "flr" });
    await call("restore", { bdf: DEV, scope: "io", image });
    const v = await call<{
      passed: boolean;
      scopeViolation: boolean;
      mismatches: Array<{ register: string }>;
    }>("verify", { bdf: DEV, scope: "io", image });
    expect(v.passed).toBe(false);
    expect(v.scopeViolation).toBe(true);
    expect(v.mismatches.length).toBeGreaterThan(0);
  });

  it("an invalid fault spec is bad-input naming the problem", async () => {
    const e = await fails(call("fault", { bdf: DEV, action: "set", fault: { name: "meteor" } }));
    expect(e.kind).toBe("bad-input");
    expect(e.message).toMatch(/fault\.name: Invalid discriminator/);
  });
});
