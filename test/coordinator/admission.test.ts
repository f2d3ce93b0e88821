// Admission without a fleet-wide document: the slot ledger (in the memory of the host's owner: hosts are owned
// by partition leases), per-device budgets, and the breaker fed by the outcome events. Against a real nats-server.
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdmission } from "../../services/coordinator/admission.ts";
import { BREAKER_KEY, startBreakerFeed } from "../../services/coordinator/breaker-feed.ts";
import { budgetKey, createBudgets, kvBudgetIo, storeBudgetIo } from "../../services/coordinator/budgets.ts";
import { openStore } from "../../services/coordinator/store.ts";
import { connectBus, ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import { BUCKETS, subjects } from "../../shared/bus/subjects.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import type { HostSpecInput } from "../../shared/sim/index.ts";
import { publishRequest, readEvents, startWorld, TEST_POLICY, until, type World } from "./helpers.ts";

const LIMITS = { maxConcurrentPerHost: 2, maxConcurrentPerSwitch: 1 };

describe("admission ledger, in process", () => {
  it("a host never runs more than its limit; waiters get in as slots free, first come first served", async () => {
    const a = createAdmission(LIMITS);
    const order: string[] = [];
    const waits: number[] = [];
    const claims = ["r1", "r2", "r3", "r4"].map((id) => ({ requestId: id, host: "h", switchId: null }));
    const admitted = claims.map((c) =>
      a.admit(c, { onWait: (p) => waits.push(p) }).then(() => order.push(c.requestId)),
    );
    await until(async () => order.length === 2);
    expect(order).toEqual(["r1", "r2"]);
    expect(a.waiting()).toBe(2);
    expect(waits).toEqual([1, 2]);
    expect(Object.keys(a.holders())).toEqual(["r1", "r2"]);
    a.release("r1");
    await until(async () => order.length === 3);
    expect(order[2]).toBe("r3");
    a.release("r2");
    await Promise.all(admitted);
    expect(order).toEqual(["r1", "r2", "r3", "r4"]);
    expect(a.running()).toEqual({ h: ["r3", "r4"] });
  });

  it("one request per switch; an abandoned waiter leaves the queue; reconcile frees what no longer runs", async () => {
    const a = createAdmission(LIMITS);
    await a.admit({ requestId: "s1", host: "h", switchId: "sw" });
    const gaveUp = new AbortController();
    const blocked = a.admit({ requestId: "s2", host: "h", switchId: "sw" }, { signal: gaveUp.signal });
    await a.admit({ requestId: "s3", host: "h", switchId: null });
    expect(a.holds("s2")).toBe(false);
    gaveUp.abort();
    await expect(blocked).rejects.toThrow(/admission of s2 abandoned/);
    expect(a.waiting()).toBe(0);
    expect(a.reconcile((id) => id === "s3")).toEqual(["s1"]);
    await until(async () => !("s1" in a.holders()));
    expect(Object.keys(a.holders())).toEqual(["s3"]);
  });

  it("a request taken over holds its slot at once, past the limit; new ones wait until the host is below it", async () => {
    const a = createAdmission(LIMITS, { owner: "c2" });
    await a.admit({ requestId: "n1", host: "h", switchId: null });
    // Two resets left mid-operation by the host's previous owner: they run already, so they are not queued.
    a.force({ requestId: "t1", host: "h", switchId: null, key: "h.a", bdf: "0000:01:00.0" });
    a.force({ requestId: "t2", host: "h", switchId: null, key: "h.b", bdf: "0000:02:00.0" });
    expect(a.running()).toEqual({ h: ["n1", "t1", "t2"] });
    expect(a.holders().t1).toMatchObject({ host: "h", key: "h.a", bdf: "0000:01:00.0", owner: "c2" });
    let waitedAt = 0;
    let admitted = false;
    const next = a.admit({ requestId: "n2", host: "h", switchId: null }, { onWait: (p) => (waitedAt = p) });
    void next.then(() => (admitted = true));
    expect(waitedAt).toBe(1);
    a.release("t1");
    await new Promise((r) => setTimeout(r, 10));
    expect(admitted).toBe(false); // n1 and t2: still at the host's limit
    a.release("n1");
    await next;
    expect(a.running()).toEqual({ h: ["t2", "n2"] });
  });
});

describe("admission over NATS: budgets and breaker", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNats();
    nc = await connectBus({ servers: server.url, name: "admission-test", log: silentLogger });
    await ensureStreams(await getJsm(nc));
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  const bucket = async () => {
    const kvm = new Kvm(jetstream(nc));
    return kvm.create(BUCKETS.admission, { history: 1 });
  };

  it("a device's attempt budget lives under its own key and counts a request once", async () => {
    const kv = await bucket();
    const policy = { maxAttemptsPerWindow: 2, attemptWindowMs: 60_000, cooldownMs: 60_000 };
    // One through nats.js KV, one as the coordinator's store reads and writes (its reply subscription).
    const store = await openStore(nc, { leaseTtlMs: 5000 });
    const one = createBudgets(kvBudgetIo(kv), policy);
    const other = createBudgets(storeBudgetIo(store), policy);
    const t = Date.now();
    expect(await one.take("hb.01-00.0", "q-1", t)).toEqual({ ok: true });
    expect(await one.take("hb.01-00.0", "q-1", t + 1)).toEqual({ ok: true });
    // Another coordinator (stale cache: none) sees the same budget and spends the last attempt.
    expect(await other.take("hb.01-00.0", "q-2", t + 2)).toEqual({ ok: true });
    const refused = await one.take("hb.01-00.0", "q-3", t + 3);
    expect(refused).toEqual({ ok: false, untilMs: t + 2 + 60_000 });
    const stored = (await kv.get(budgetKey("hb.01-00.0")))!.json<{ attemptsMs: number[] }>();
    expect(stored.attemptsMs).toEqual([t, t + 2]);
    // The store's write loses its compare-and-set on a stale cache: it reads again and decides on what is there.
    expect(await other.take("hb.02-00.0", "q-a", t)).toEqual({ ok: true });
    expect(await one.take("hb.02-00.0", "q-b", t + 1)).toEqual({ ok: true });
    expect(await other.take("hb.02-00.0", "q-c", t + 2)).toEqual({ ok: false, untilMs: t + 1 + 60_000 });
    const second = (await kv.get(budgetKey("hb.02-00.0")))!.json<{ attemptsMs: number[] }>();
    expect(second.attemptsMs).toEqual([t, t + 1]);
  });

  it("a grant waits for an admission bucket that does not answer (a leader elected), counting its attempt once", async () => {
    const kv = await bucket();
    const policy = { maxAttemptsPerWindow: 5, attemptWindowMs: 60_000, cooldownMs: 60_000 };
    const store = await openStore(nc, { leaseTtlMs: 5000 });
    const io = storeBudgetIo(store);
    const noAnswer = (what: string) =>
      new CxlrcError("timeout", `no reply on $JS.API.STREAM.MSG.GET.KV_cxlrc-admission (${what})`);
    let reads = 0;
    let writes = 0;
    // Two reads unanswered; then a write that lands but whose acknowledgement is lost (a timeout, wrapped as
    // the store wraps a failed compare-and-set).
    const flaky: typeof io = {
      async read(key) {
        if (++reads <= 2) throw noAnswer("read");
        return io.read(key);
      },
      async write(key, data, revision) {
        const rev = await io.write(key, data, revision);
        if (++writes === 1) {
          throw new CxlrcError("in-progress", "write lost", { key }, { cause: noAnswer("ack") });
        }
        return rev;
      },
    };
    const budgets = createBudgets(flaky, policy);
    const t = Date.now();
    expect(await budgets.take("hb.03-00.0", "q-x", t)).toEqual({ ok: true });
    // The write that landed is found by the read after it: one attempt stored, not two.
    expect(reads).toBe(4);
    expect(writes).toBe(1);
    const stored = (await kv.get(budgetKey("hb.03-00.0")))!.json<{ attemptsMs: number[] }>();
    expect(stored.attemptsMs).toEqual([t]);
  });

  it("the breaker opens from the outcome events on every coordinator alike and closes only by an operator", async () => {
    const kv = await bucket();
    const js = jetstream(nc);
    const jsm = await getJsm(nc);
    const policy = { breakerWindowMs: 60_000, breakerFailureRatio: 0.5, breakerMinSamples: 4 };
    const start = () =>
      startBreakerFeed({
        kv,
        nc,
        replay: { js, jsm, nc, log: silentLogger },
        policy,
        log: silentLogger,
        now: Date.now,
      });
    const feeds = [await start(), await start()];
    const outcome = async (requestId: string, kind: "verified" | "failed" | "quarantined") => {
      const e = makeEvent({ host: "hk", bdf: "0000:01:00.0", kind, requestId, source: "coordinator" });
      await js.publish(subjects.event("hk", "0000:01:00.0", kind), encodeJson(e));
    };
    await outcome("k-1", "verified");
    await outcome("k-2", "failed");
    await outcome("k-3", "verified");
    await until(async () => feeds.every((f) => f.state().outcomes.length === 3));
    expect(feeds.map((f) => f.state().status)).toEqual(["closed", "closed"]);
    // A coordinator started later reads the window's earlier outcomes back from the stream.
    feeds.push(await start());
    expect(await until(async () => feeds[2]!.state().outcomes.length === 3)).toBe(true);
    // The 4th sample: 2 of 4 failed reaches 0.5. One feed also hears it first-hand; it is counted once.
    await feeds[0]!.record("k-4", true, Date.now());
    await outcome("k-4", "quarantined");
    await until(async () => feeds.every((f) => f.state().status === "open"));
    expect(feeds[0]!.state().reason).toMatch(/2 of 4 resets failed/);
    expect((await kv.get(BREAKER_KEY))!.json<{ status: string }>().status).toBe("open");
    // Successes do not close it.
    await outcome("k-5", "verified");
    await until(async () => feeds.every((f) => f.state().outcomes.length >= 5));
    expect(feeds.map((f) => f.state().status)).toEqual(["open", "open", "open"]);

    const closed = await feeds[1]!.close("sre", Date.now());
    expect(closed.closedBy?.operator).toBe("sre");
    await until(async () => feeds[0]!.state().status === "closed");
    expect(feeds[0]!.state().outcomes).toEqual([]);
    // The stored value is the state alone: no outcomes, no growth with the fleet.
    expect(Object.keys((await kv.get(BREAKER_KEY))!.json<object>()).sort()).toEqual([
      "closedBy",
      "openedAtMs",
      "reason",
      "status",
    ]);
    for (const f of feeds) f.stop();
  });
});

/** One host with n root ports and a Type-2 device below each. */
function wideHost(name: string, n: number): HostSpecInput {
  return {
    name,
    bridges: Array.from({ length: n }, (_, i) => ({
      bdf: `0000:00:0${i + 1}.0`,
      kind: "root-port" as const,
      secondaryBus: i + 1,
    })),
    devices: Array.from({ length: n }, (_, i) => ({
      bdf: `0000:0${i + 1}:00.0`,
      parent: `0000:00:0${i + 1}.0`,
      firmware: { decoders: [{ base: `0x${(i + 1).toString(16)}00000000`, size: "0x10000000" }] },
    })),
  };
}

describe("two coordinators, one host", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([wideHost("hw", 4)] as never);
  });
  afterAll(async () => {
    await w?.close();
  });

  it("the host's limit holds fleet-wide and no request is refused for admission's own contention", async () => {
    const policy = { ...TEST_POLICY, maxConcurrentPerHost: 1 };
    await w.coordinator({ id: "aw", policy });
    await w.coordinator({ id: "bw", policy });
    const ids: string[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 1; i <= 4; i++) {
        const id = `w-${i}-${round}`;
        ids.push(id);
        await publishRequest(w.js, {
          requestId: id,
          host: "hw",
          bdf: `0000:0${i}:00.0`,
          scope: "io",
          reason: "x",
        });
      }
    }
    const OUTCOMES = new Set(["verified", "refused", "failed", "quarantined"]);
    let events = await readEvents(w.jsm, { source: "coordinator" });
    const ended = () =>
      new Set(events.filter((e) => OUTCOMES.has(e.event.kind)).map((e) => e.event.requestId));
    for (let i = 0; i < 1000 && !ids.every((id) => ended().has(id)); i++) {
      await new Promise((r) => setTimeout(r, 20));
      events = await readEvents(w.jsm, { source: "coordinator" });
    }
    const outs = events.filter((e) => OUTCOMES.has(e.event.kind) && ids.includes(e.event.requestId ?? ""));
    expect(outs).toHaveLength(ids.length);
    // Refused only because the device itself was busy with another request, never for slots or the ledger.
    for (const o of outs.filter((e) => e.event.kind === "refused")) {
      expect((o.event.data.refusal as { reason: string }).reason).toBe("in-progress");
    }
    expect(outs.some((o) => o.event.kind === "verified")).toBe(true);
    // From reset.started to the outcome, never two resets on the host at once, whichever coordinator ran them.
    const started = new Map<string, number>();
    const spans: Array<[number, number, string]> = [];
    for (const { event } of events) {
      if (!event.requestId) continue;
      if (event.kind === "reset.started") started.set(event.requestId, event.data.atMs as number);
      if (event.kind === "verified" && started.has(event.requestId)) {
        spans.push([
          started.get(event.requestId)!,
          event.data.atMs as number,
          String(event.data.coordinator),
        ]);
      }
    }
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
    expect(new Set(spans.map((s) => s[2])).size).toBe(2);
    // The limit was kept by whoever owned the host at the time: no slot was ever written to the bus.
    const admission = await new Kvm(w.js).open(BUCKETS.admission);
    const keys: string[] = [];
    for await (const k of await admission.keys()) keys.push(k);
    expect(keys.filter((k) => k.startsWith("host."))).toEqual([]);
    expect(keys.filter((k) => k.startsWith("budget.")).length).toBeGreaterThan(0);
  });
});
