// The client against a real nats-server, a coordinator and simulated agents: every call, its typed errors,
// re-attaching after the caller restarts mid-reset (one reset on the device), and many resets at once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientError, type ClientEvent, type CxlrcClient, clientOn, connect } from "../../client/index.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  noResponders,
  type RunningCoordinator,
  startWorld,
  stopAt,
  type World,
} from "../coordinator/helpers.ts";

const BDF = "0000:01:00.0";

describe("cxlrc client", () => {
  let w: World;
  let c: RunningCoordinator;
  let client: CxlrcClient;
  beforeAll(async () => {
    w = await startWorld([
      simpleHost({ name: "cl1" }),
      simpleHost({ name: "cl2" }),
      simpleHost({ name: "cl3" }),
      simpleHost({ name: "cl4" }),
    ]);
    c = await w.coordinator();
    client = clientOn(w.nc);
  });
  afterAll(async () => {
    await c?.stop();
    await w?.close();
  });

  it("plan: the dry run's plan, nothing touched", async () => {
    const d = await client.plan({ host: "cl1", bdf: BDF, scope: "full", reason: "client test" });
    expect(d.kind).toBe("plan");
    if (d.kind !== "plan") return;
    expect(d.plan).toMatchObject({ dryRun: true, scope: "full", method: "cxl", targets: [BDF] });
    expect(w.sims.get("cl1")!.counters(BDF).cxlReset).toBe(0);
  });

  it("reset: the decision, the progress events in order, the outcome with its phases", async () => {
    const h = await client.reset({ host: "cl1", bdf: BDF, scope: "full", reason: "client test" });
    expect(h.requestId).toMatch(/^client-/);
    expect(h.decision.kind).toBe("plan");
    const seen: ClientEvent[] = [];
    for await (const e of h.events) seen.push(e);
    const out = await h.outcome;
    expect(out).toMatchObject({ kind: "verified", requestId: h.requestId, host: "cl1", bdf: BDF });
    expect(out.event?.kind).toBe("verified");
    expect(out.phases.reset).toBeGreaterThan(0);
    expect(seen.every((e) => e.source === "coordinator" && e.requestId === h.requestId)).toBe(true);
    // Typed by the bus contract: the plan's method, each state entered, the outcome's scope.
    const plan = seen.find((e) => e.typed?.kind === "plan")?.typed;
    expect(plan?.kind === "plan" && plan.data.plan.method).toBe("cxl");
    expect(seen.filter((e) => e.typed?.kind === "state.entered").length).toBeGreaterThan(5);
    const last = seen.at(-1)?.typed;
    expect(last?.kind === "verified" && last.data.scope).toBe("full");
    const kinds = seen.map((e) => e.kind);
    expect(kinds.indexOf("reset.started")).toBeLessThan(kinds.indexOf("verify.passed"));
    expect(kinds.at(-1)).toBe("verified");
    expect(w.sims.get("cl1")!.counters(BDF).cxlReset).toBe(1);
  });

  it("a refusal is the decision and the outcome, with its reason", async () => {
    const sim = w.sims.get("cl2")!;
    sim.faults.set(BDF, { name: "memory-online" });
    try {
      const h = await client.reset({ host: "cl2", bdf: BDF, scope: "full", reason: "client test" });
      expect(h.decision.kind).toBe("refused");
      const out = await h.outcome;
      expect(out.kind).toBe("refused");
      expect(out.reason).toBe("device-busy");
      expect(out.message).toMatch(/0x100000000-0x10fffffff/);
    } finally {
      sim.faults.clear(BDF, "memory-online");
    }
  });

  it("a bad field is named before anything is sent", async () => {
    const err = await client
      .submit({ host: "cl1", bdf: BDF, scope: "both" as "io", reason: "client test" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect(err).toMatchObject({ kind: "bad-request", field: "scope" });
    const bdfErr = await client
      .submit({ host: "cl1", bdf: "01:00.0", scope: "io", reason: "t" })
      .catch((e) => e);
    expect(bdfErr).toMatchObject({ kind: "bad-request", field: "bdf" });
  });

  it("re-attaches after the caller restarts mid-reset: the same request, one reset", async () => {
    const sim = w.sims.get("cl3")!;
    const stop = stopAt("resetting", "after");
    const held = await w.coordinator({ id: "held", stepHook: stop.hook, hosts: [] });
    // The coordinator that takes the request is held after the reset; the caller dies meanwhile.
    await c.stop();
    const first = await connect({ servers: w.server.url, name: "caller-1" });
    const h1 = await first.reset({
      requestId: "reattach-1",
      host: "cl3",
      bdf: BDF,
      scope: "full",
      reason: "t",
    });
    expect(h1.decision.kind).toBe("plan");
    await stop.atPoint;
    await first.close();
    const second = await connect({ servers: w.server.url, name: "caller-2" });
    const h2 = await second.reset({
      requestId: "reattach-1",
      host: "cl3",
      bdf: BDF,
      scope: "full",
      reason: "t",
    });
    expect(h2.decision.kind).toBe("duplicate");
    stop.release();
    const out = await h2.outcome;
    expect(out.kind).toBe("verified");
    expect(sim.counters(BDF).cxlReset).toBe(1);
    // Called again after it ended: the stored outcome, still one reset.
    const h3 = await second.reset({
      requestId: "reattach-1",
      host: "cl3",
      bdf: BDF,
      scope: "full",
      reason: "t",
    });
    expect((await h3.outcome).kind).toBe("verified");
    expect(sim.counters(BDF).cxlReset).toBe(1);
    await second.close();
    await held.stop();
    c = await w.coordinator();
  });

  it("re-attaches to a request that ended under another coordinator: its stored outcome, no second reset", async () => {
    const sim = w.sims.get("cl4")!;
    const h1 = await client.reset({
      requestId: "elsewhere-1",
      host: "cl4",
      bdf: BDF,
      scope: "io",
      reason: "t",
    });
    expect((await h1.outcome).kind).toBe("verified");
    const flr = sim.counters(BDF).flr;
    // A coordinator with a fresh memory answers the second call: only the stream knows how it ended.
    await c.stop();
    c = await w.coordinator({ id: "fresh" });
    const again = await connect({ servers: w.server.url, name: "caller-3" });
    const h2 = await again.reset({
      requestId: "elsewhere-1",
      host: "cl4",
      bdf: BDF,
      scope: "io",
      reason: "t",
    });
    expect(h2.decision.kind).toBe("duplicate");
    const out = await h2.outcome;
    expect(out).toMatchObject({ kind: "verified", requestId: "elsewhere-1" });
    expect(out.event?.kind).toBe("verified");
    expect(sim.counters(BDF).flr).toBe(flr);
    await again.close();
  });

  it("watch: replayed and live events of one device, by kind", async () => {
    const ac = new AbortController();
    const got: ClientEvent[] = [];
    const watching = (async () => {
      for await (const e of client.watch({ host: "cl4", bdf: BDF, kinds: ["verified"], signal: ac.signal })) {
        got.push(e);
        ac.abort();
      }
    })();
    const h = await client.reset({ host: "cl4", bdf: BDF, scope: "io", reason: "client test" });
    await h.outcome;
    await watching;
    expect(got.map((e) => [e.kind, e.requestId])).toEqual([["verified", h.requestId]]);
    // Replayed from a time before: the request's whole history.
    const past: string[] = [];
    const stopAfter = new AbortController();
    for await (const e of client.watch({
      host: "cl4",
      since: new Date(Date.now() - 60_000),
      signal: stopAfter.signal,
    })) {
      if (e.requestId === h.requestId && e.source === "coordinator") past.push(e.kind);
      if (e.kind === "verified" && e.requestId === h.requestId) stopAfter.abort();
    }
    expect(past[0]).toBe("request.received");
    expect(past.at(-1)).toBe("verified");
  });

  it("status and image", async () => {
    const s = await client.status({ host: "cl1" });
    expect(JSON.stringify(s)).toContain(BDF);
    const img = await client.image("cl1", BDF);
    expect(img).not.toBeNull();
    const good = await client.image("cl1", BDF, { verified: true });
    expect(JSON.stringify(good)).toContain("sha256:");
    expect(await client.image("cl2", BDF, { verified: true })).toBeNull();
  });

  it("release: a quarantined device back to service (operators)", async () => {
    const sim = w.sims.get("cl2")!;
    sim.faults.set(BDF, { name: "commit-error", decoder: 0 });
    try {
      const h = await client.reset({ host: "cl2", bdf: BDF, scope: "full", reason: "client test" });
      expect((await h.outcome).kind).toBe("quarantined");
    } finally {
      sim.faults.clear(BDF, "commit-error");
    }
    const refused = await client.reset({ host: "cl2", bdf: BDF, scope: "full", reason: "client test" });
    expect((await refused.outcome).reason).toBe("quarantined");
    const r = await client.release({ host: "cl2", bdf: BDF, operator: "ops", reason: "fixed" });
    expect(r).toMatchObject({ host: "cl2", bdf: BDF });
    const again = await client.reset({ host: "cl2", bdf: BDF, scope: "full", reason: "client test" });
    const o = await again.outcome;
    expect(o.kind).toBe("verified");
    const bad = await client
      .release({ host: "cl2", bdf: BDF, operator: "", reason: "x" })
      .catch((e: unknown) => e);
    expect(bad).toMatchObject({ kind: "bad-request", field: "operator" });
  });

  it("timeout: a control endpoint that does not answer in time", async () => {
    // A responder that takes the request and never answers (a coordinator stuck in a long pause).
    const sub = w.nc.subscribe("cxlrc.ctl.status", {
      queue: "cxlrc-coordinators",
      callback: () => undefined,
    });
    await c.crash();
    try {
      const slow = clientOn(w.nc, { timeoutMs: 300 });
      const err = await slow.status().catch((e: unknown) => e);
      expect(err).toMatchObject({ kind: "timeout", subject: "cxlrc.ctl.status" });
    } finally {
      sub.unsubscribe();
      c = await w.coordinator();
    }
  });

  it("typed errors: no server, no coordinator", async () => {
    const none = await connect({ servers: "nats://127.0.0.1:1" }).catch((e: unknown) => e);
    expect(none).toMatchObject({ kind: "unreachable" });
    await c.crash();
    expect(await noResponders(w.nc, "cxlrc.ctl.submit.cl1")).toBe(true);
    const err = await client
      .submit({ host: "cl1", bdf: BDF, scope: "io", reason: "t" })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: "unreachable", subject: "cxlrc.ctl.submit.cl1" });
    c = await w.coordinator();
  });
});
