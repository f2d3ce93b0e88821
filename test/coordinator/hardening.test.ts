// Defence in depth at the coordinator's edges, against a real nats-server:
// - control endpoints: a burst over the per-caller limit gets "rate-limited" replies (the coordinator keeps
//   answering other callers, and the same caller once its bucket refills); the caller is the principal the
//   server names across an account import, not anything the sender chose (its reply subject); an oversized
//   message gets an error naming its size and the limit, before anything decodes it;
// - agent events: an op event on another host's subject, or for an operation this coordinator did not issue
//   (unknown, or finished), is dropped with a log line and changes nothing; one on the right host's subject
//   for the operation in flight is believed (that is why the others must not be).
import { Writable } from "node:stream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseCoordinatorConfig } from "../../services/coordinator/config.ts";
import type { StepHook } from "../../services/coordinator/effects/agent-actors.ts";
import { connectBus } from "../../shared/bus/client.ts";
import { encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { createLogger, silentLogger } from "../../shared/log.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  control,
  publishRequest,
  type RunningCoordinator,
  rested,
  startWorld,
  TEST_POLICY,
  until,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";

/**
 * The coordinators' account and a controllers' account importing the control services with `share: true`:
 * the server then names the caller (Nats-Request-Info) on every request that crosses the import.
 */
const ACCOUNTS_CONFIG = `
accounts {
  CXLRC: {
    jetstream: enabled
    users: [ { user: cxlrc, password: cxlrc } ]
    exports: [ { service: "cxlrc.ctl.>" } ]
  }
  CTL: {
    users: [
      { user: noisy, password: p }
      { user: other, password: p }
      { user: big, password: p }
    ]
    imports: [ { service: { account: CXLRC, subject: "cxlrc.ctl.>" }, share: true } ]
  }
}
`;

describe("control endpoints: size and rate limits", () => {
  let w: World;
  let c: RunningCoordinator;
  const extra: NatsConnection[] = [];
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "ctl" })], {
      nats: { config: ACCOUNTS_CONFIG },
      user: "cxlrc",
      pass: "cxlrc",
    });
    // A small bucket and a slow refill, so a burst meets the limit; everything else stays generous.
    c = await w.coordinator({
      metricsPort: 0,
      hosts: ["ctl"],
      control: { perRequesterPerSec: 0.5, perRequesterBurst: 5, globalPerSec: 10_000, globalBurst: 10_000 },
    });
  });
  afterAll(async () => {
    for (const n of extra) await n.close().catch(() => undefined);
    await w?.close();
  });

  /** A controller of the CTL account. */
  const connect = async (name: string) => {
    const n = await connectBus({ servers: w.server.url, name, user: name, pass: "p", log: silentLogger });
    extra.push(n);
    return n;
  };

  it("the limits are configurable in the config file (strict, with generous defaults)", () => {
    const dflt = parseCoordinatorConfig({ id: "c1", nats: { servers: "x" } });
    expect(dflt.control.maxBytes).toBe(64 * 1024);
    expect(dflt.control.perRequesterBurst).toBeGreaterThanOrEqual(100);
    const set = parseCoordinatorConfig({ id: "c1", nats: { servers: "x" }, control: { maxBytes: 4096 } });
    expect(set.control).toMatchObject({ maxBytes: 4096, perRequesterBurst: dflt.control.perRequesterBurst });
    expect(() =>
      parseCoordinatorConfig({ id: "c1", nats: { servers: "x" }, control: { ratePerSec: 5 } }),
    ).toThrow(/unknown field "ratePerSec" in "control"/);
  });

  it("a burst over the limit gets rate-limited replies; status is still answered afterwards", async () => {
    const noisy = await connect("noisy");
    const replies = await Promise.all(Array.from({ length: 20 }, () => control(noisy, subjects.status, {})));
    const ok = replies.filter((r) => r.ok);
    const limited = replies.filter((r) => !r.ok);
    // Burst 5, refill one every 2 s: the 20 sent together cannot all pass.
    expect(ok.length).toBeGreaterThanOrEqual(5);
    expect(limited.length).toBeGreaterThanOrEqual(10);
    for (const r of limited) {
      if (r.ok) continue;
      expect(r.error.kind).toBe("rate-limited");
      expect(r.error.message).toMatch(
        /cxlrc\.ctl\.status: too many requests from CTL\/noisy; retry in \d+ ms/,
      );
      expect(r.error.details).toMatchObject({
        reason: "rate-limited",
        scope: "requester",
        requester: "CTL/noisy",
      });
      expect(r.error.details.retryAfterMs as number).toBeGreaterThan(0);
    }
    // Another caller is not affected by the noisy one. (Across the import every reply subject is the server's
    // _R_.… rewrite: a limiter keyed on the reply subject would have put both callers in one bucket.)
    const other = await connect("other");
    const st = await control<{ devices: Array<{ host: string; state: string }> }>(other, subjects.status, {});
    expect(st.ok && st.result.devices.map((d) => `${d.host}:${d.state}`)).toEqual(["ctl:ready"]);
    // The noisy requester is answered again once its bucket refills.
    expect(await until(async () => (await control(noisy, subjects.status, {})).ok)).toBe(true);
    const text = await (await fetch(c.handle.metricsUrl!)).text();
    expect(text).toMatch(
      /^cxlrc_control_refused_total\{subject="cxlrc.ctl.status",reason="rate-limited"\} (\d+)$/m,
    );
    const counted = Number(/reason="rate-limited"\} (\d+)$/m.exec(text)?.[1]);
    expect(counted).toBeGreaterThanOrEqual(limited.length);
  });

  it("an oversized control message gets an error naming its size and the limit, before it is decoded", async () => {
    const big = await connect("big");
    // Valid JSON, too large.
    const json = JSON.stringify({ host: "ctl", bdf: BDF, pad: "x".repeat(100_000) });
    const r1 = await control(big, subjects.image, json);
    expect(r1.ok).toBe(false);
    if (!r1.ok) {
      expect(r1.error.kind).toBe("bad-input");
      expect(r1.error.message).toBe(
        `cxlrc.ctl.image: message of ${json.length} bytes is over the limit of 65536 bytes; not read`,
      );
      expect(r1.error.details).toMatchObject({ reason: "too-large", bytes: json.length, limit: 65536 });
    }
    // Not even JSON: still the size error (nothing parsed it), not a decode error.
    const r2 = await control(big, subjects.release, "{".repeat(70_000));
    expect(!r2.ok && r2.error.message).toMatch(/message of 70000 bytes is over the limit of 65536 bytes/);
    // A small one from the same requester is read and answered as usual.
    const r3 = await control(big, subjects.status, { host: "ctl" });
    expect(r3.ok).toBe(true);
  });
});

describe("agent events: believed only from the host's subject, for operations issued here", () => {
  let w: World;
  let c: RunningCoordinator;
  const logs: Array<Record<string, unknown>> = [];
  let pause: { phase: string; opIds: Map<string, string>; reached: () => void; held: Promise<void> } | null =
    null;
  /** Operation id of every step of host "forge", by phase (the last one run). */
  const stepOps = new Map<string, string>();
  const hook: StepHook = async (phase, point, info) => {
    if (info.host !== "forge" || point !== "before") return;
    stepOps.set(phase, info.opId);
    if (pause && phase === pause.phase) {
      pause.reached();
      await pause.held;
    }
  };
  const pauseAt = (phase: string) => {
    let reached: () => void = () => undefined;
    let release: () => void = () => undefined;
    const atPoint = new Promise<void>((r) => {
      reached = r;
    });
    const held = new Promise<void>((r) => {
      release = r;
    });
    pause = { phase, opIds: new Map(), reached, held };
    return { atPoint, release };
  };

  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "forge" }), simpleHost({ name: "other" })]);
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split("\n")) if (line) logs.push(JSON.parse(line));
        done();
      },
    });
    c = await w.coordinator({
      metricsPort: 0,
      stepHook: hook,
      // Phase deadlines longer than the pauses below.
      policy: { ...TEST_POLICY, agentCallTimeoutMs: 30_000 },
      log: createLogger("coordinator", { level: "warn", destination: sink }),
    });
  });
  afterAll(async () => {
    await w?.close();
  });

  /**
   * An agent-shaped op event, published where a forger would (core publish, like any client can): in the
   * agents' subject space of `subjectHost`, or with `space: "evt"` in the coordinators'.
   */
  const forge = (
    subjectHost: string,
    env: { host: string; opId: string; op: string; kind?: string; space?: "agt" | "evt" },
  ) => {
    const kind = env.kind ?? "op.failed";
    const e = makeEvent({
      host: env.host,
      bdf: BDF,
      kind,
      source: "agent",
      opId: env.opId,
      data:
        kind === "op.failed"
          ? {
              op: env.op,
              durationMs: 1,
              error: { kind: "reset-error", message: "forged failure", details: {} },
            }
          : { op: env.op, durationMs: 1, result: null },
    });
    const subject =
      env.space === "evt"
        ? subjects.event(subjectHost, BDF, kind)
        : subjects.agentEvent(subjectHost, BDF, kind);
    w.nc.publish(subject, encodeJson(e));
  };

  const dropped = async (): Promise<Record<string, number>> => {
    const text = await (await fetch(c.handle.metricsUrl!)).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^cxlrc_agent_events_dropped_total\{reason="([a-z-]+)"\} (\d+)$/gm)) {
      out[m[1]!] = Number(m[2]);
    }
    return out;
  };

  it("forged events (other host's subject, unknown or finished operation) are dropped and change nothing", async () => {
    const sim = w.sims.get("forge")!;
    const { atPoint, release } = pauseAt("resetting");
    await publishRequest(w.js, { requestId: "fg-1", host: "forge", bdf: BDF, scope: "full", reason: "x" });
    await atPoint;
    const resetOp = stepOps.get("resetting")!;
    const saveOp = stepOps.get("savingImage")!;
    expect(resetOp).toMatch(/fg-1/);

    // 1. The in-flight reset's operation id, on another host's subject, naming that host.
    forge("other", { host: "other", opId: resetOp, op: "reset" });
    // 2. On another host's subject, naming this host (envelope and subject disagree).
    forge("other", { host: "forge", opId: resetOp, op: "reset" });
    // 3. This host's subject, an operation nobody issued.
    forge("forge", { host: "forge", opId: "forged-op-1", op: "reset" });
    // 4. This host's subject, an operation that was issued and has finished (the image save).
    forge("forge", { host: "forge", opId: saveOp, op: "save" });
    // 5. The in-flight reset's own operation, on this host's subject, but in the coordinators' space: an agent
    //    event is believed only from the agents' space (not even looked at here).
    forge("forge", { host: "forge", opId: resetOp, op: "reset", space: "evt" });
    await w.nc.flush();
    // A late genuine event of a finished operation also counts as stale (the agent replies after a bounded
    // wait for its events), hence "at least" there.
    const want = { "other-host": 1, "subject-mismatch": 1, unknown: 1 };
    expect(
      await until(async () => {
        const got = await dropped();
        return matches(got, want) && (got.stale ?? 0) >= 1;
      }),
    ).toBe(true);

    release();
    pause = null;
    const out = await c.handle.waitForOutcome("fg-1", 20_000);
    expect(out.outcome).toBe("verified");
    expect(await rested(c.handle, "forge", BDF)).toBe("ready");
    expect(sim.counters(BDF).cxlReset).toBe(1);
    // Each drop left a log line naming why (warnings: a stale operation id is logged at debug level).
    const lines = logs.filter((l) => l.msg === "agent event dropped: not believed");
    expect(lines.map((l) => l.reason).sort()).toEqual(["other-host", "subject-mismatch", "unknown"]);
    expect(lines.find((l) => l.reason === "other-host")?.why).toMatch(/was not issued to host other/);
    expect(lines.find((l) => l.reason === "subject-mismatch")?.why).toMatch(/came on other's subject/);
  });

  it("the same event on the right host's subject, for the operation in flight, is believed", async () => {
    const sim = w.sims.get("forge")!;
    const flrBefore = sim.counters(BDF).flr;
    // The first operation that changes the device: the reset (quiescing first, in the same operation).
    const { atPoint, release } = pauseAt("resetting");
    await publishRequest(w.js, { requestId: "fg-2", host: "forge", bdf: BDF, scope: "io", reason: "x" });
    await atPoint;
    const resetOp = stepOps.get("resetting")!;
    const before = await dropped();
    // Believed: it fails the reset step before the operation is sent, so the reset is never issued; the
    // device is restored and verified.
    forge("forge", { host: "forge", opId: resetOp, op: "reset" });
    await w.nc.flush();
    release();
    pause = null;
    const out = await c.handle.waitForOutcome("fg-2", 20_000);
    expect(out.outcome).toBe("failed");
    expect(out.message).toMatch(/forged failure/);
    expect(sim.counters(BDF).flr).toBe(flrBefore);
    // Not dropped: no counter but "stale" (late genuine events) moved.
    const after = await dropped();
    expect({ ...after, stale: 0 }).toEqual({ ...before, stale: 0 });
    expect(await rested(c.handle, "forge", BDF)).toBe("ready");
  });
});

function matches(got: Record<string, number>, want: Record<string, number>): boolean {
  return Object.entries(want).every(([k, v]) => got[k] === v);
}
