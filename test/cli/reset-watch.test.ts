// `cxlrc reset --wait`, `watch --json`, `plan`, `status`, `image show` and `release` as child processes,
// against a real nats-server (shared/natsd/server.ts), a coordinator and a simulated host's agent started here.
// Also what they believe: outcomes from the coordinator's subjects only, hosts from the subject, no terminal
// escapes passed through.
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { type AgentHandle, type OpContext, startAgent } from "../../services/agent/service.ts";
import { type CoordinatorHandle, startCoordinator } from "../../services/coordinator/service.ts";
import { connectBus, ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { type EventEnvelope, encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import { STREAMS } from "../../shared/bus/subjects.ts";
import { realClock } from "../../shared/hw/backend.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { createSimHost, defaultFleet, type SimHost } from "../../shared/sim/index.ts";
import { lines, runCli, startCli, waitForOutput } from "./run-cli.ts";

let nats: NatsServerHandle;
let nc: NatsConnection;
let coordinator: CoordinatorHandle;
const agents: AgentHandle[] = [];
const sims = new Map<string, SimHost>();

beforeAll(async () => {
  nats = await startNats();
  nc = await connectBus({ servers: nats.url, name: "cli-test", log: silentLogger, waitForServer: false });
  for (const spec of defaultFleet().hosts.filter((h) => h.name === "alpha" || h.name === "bravo")) {
    const sim = createSimHost(spec, {
      clock: realClock,
      timings: { notReadyMs: 50, cxlResetDurationMs: 20 },
    });
    sims.set(spec.name, sim);
    agents.push(
      await startAgent({
        nc,
        host: spec.name,
        backend: sim,
        heartbeatMs: 200,
        ...(spec.name === "bravo" ? { operations: holdableSave } : {}),
      }),
    );
  }
  coordinator = await startCoordinator({ nc, id: "cli-test", hosts: ["alpha", "bravo"] });
});

/** While set, bravo's agent holds every save: a reset frozen while saving its image, whatever the timing. */
let bravoHold: { released: Promise<void>; reached: () => void } | null = null;
function holdBravo(): { reached: Promise<void>; release: () => void } {
  let release!: () => void;
  let reached!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  const isReached = new Promise<void>((r) => {
    reached = r;
  });
  bravoHold = { released, reached };
  return {
    reached: isReached,
    release: () => {
      bravoHold = null;
      release();
    },
  };
}
const holdableSave = {
  ...operations,
  async save(ctx: OpContext, p: Parameters<typeof operations.save>[1]) {
    if (bravoHold) {
      bravoHold.reached();
      await bravoHold.released;
    }
    return operations.save(ctx, p);
  },
};

afterAll(async () => {
  await coordinator?.stop();
  for (const a of agents) await a.stop();
  await nc?.close();
  await nats?.stop();
});

function parseJsonLines(out: string): EventEnvelope[] {
  return lines(out).map((l) => JSON.parse(l) as EventEnvelope);
}

describe("reset and watch against a running coordinator", () => {
  it("watch --json shows a reset's events live; reset --wait follows it to verified (exit 0)", async () => {
    // Heartbeats prove the watch's consumer is live before the reset is sent.
    const watch = startCli(["watch", "--json", "--host", "alpha", "--heartbeats", "--server", nats.url]);
    await waitForOutput(watch, (out) => out.includes('"kind":"heartbeat"'));

    const r = await runCli([
      "reset",
      "alpha",
      "0000:01:00.0",
      "--scope",
      "io",
      "--wait",
      "--server",
      nats.url,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^plan cli-\S+: alpha 0000:01:00\.0/m);
    expect(r.stdout).toMatch(/scope\s+io/);
    expect(r.stdout).toMatch(/method\s+flr/);
    // Plain progress lines (not a terminal), then the result line with the time per phase.
    expect(r.stdout).toMatch(/state\.entered\s+verifying/);
    expect(r.stdout).toMatch(
      /^verified alpha 0000:01:00\.0 io\/flr in .*\(gate .*save .*reset .*restore .*verify .*\)$/m,
    );

    await waitForOutput(watch, (out) => /"kind":"verified"/.test(out));
    watch.child.kill("SIGINT");
    const w = await watch.done;
    expect(w.code).toBe(0);
    const events = parseJsonLines(w.stdout);
    const mine = events.filter((e) => e.host === "alpha" && e.bdf === "0000:01:00.0");
    const kinds = mine.map((e) => e.kind);
    expect(kinds).toContain("reset.started");
    expect(kinds).toContain("verify.passed");
    expect(kinds.indexOf("reset.started")).toBeLessThan(kinds.lastIndexOf("verify.passed"));
    // Every line is a whole event envelope.
    for (const e of events) {
      expect(e.v).toBe(1);
      expect(typeof e.id).toBe("string");
      expect(Number.isNaN(Date.parse(e.time))).toBe(false);
    }
  });

  it("watch --since replays a device's past events and filters by device", async () => {
    const w = startCli([
      "watch",
      "--json",
      "--since",
      "10m",
      "--device",
      "0000:01:00.0",
      "--server",
      nats.url,
    ]);
    await waitForOutput(w, (out) => out.includes('"kind":"verify.passed"'));
    w.child.kill("SIGINT");
    const r = await w.done;
    expect(r.code).toBe(0);
    const events = parseJsonLines(r.stdout);
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e.bdf === "0000:01:00.0")).toBe(true);
  });

  it("reset --json --wait prints the reply, the events and a result object", async () => {
    const r = await runCli([
      "reset",
      "alpha",
      "0000:02:00.0",
      "--scope",
      "full",
      "--wait",
      "--json",
      "--server",
      nats.url,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const objs = lines(r.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    const result = objs.at(-1)!;
    expect(result).toMatchObject({
      host: "alpha",
      bdf: "0000:02:00.0",
      scope: "full",
      method: "cxl",
      outcome: "verified",
    });
    expect((result.phasesMs as Record<string, number | null>).reset).toBeGreaterThan(0);
  });

  it("a refusal is printed with its reason and exits 1", async () => {
    // bravo 0000:05:00.0 shares its bridge with 0000:05:01.0, which a process holds: SBR is refused.
    const r = await runCli([
      "reset",
      "bravo",
      "0000:05:00.0",
      "--scope",
      "full",
      "--method",
      "sbr",
      "--server",
      nats.url,
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^refused cli-\S+: bravo 0000:05:00\.0: sibling-busy: /m);
  });

  it("plan: a dry run lists the gates; io on a device without FLR is refused unless escalation is allowed", async () => {
    const no = await runCli(["plan", "alpha", "0000:02:00.0", "--scope", "io", "--server", nats.url]);
    expect(no.code).toBe(1);
    expect(no.stdout).toMatch(/flr-unsupported/);
    const yes = await runCli([
      "plan",
      "alpha",
      "02:00.0",
      "--scope",
      "io",
      "--allow-escalation",
      "--server",
      nats.url,
    ]);
    expect(yes.code, yes.stderr).toBe(0);
    expect(yes.stdout).toMatch(/plan \(dry run, nothing touched\)/);
    expect(yes.stdout).toMatch(/scope\s+full \(escalated from io/);
    expect(yes.stdout).toMatch(/pass\s+breaker/);
  });

  it("a commit failure quarantines; status shows it; release takes it out", async () => {
    sims.get("bravo")!.faults.set("0000:04:00.0", { name: "commit-error", decoder: 0 });
    const r = await runCli([
      "reset",
      "bravo",
      "0000:04:00.0",
      "--scope",
      "full",
      "--wait",
      "--server",
      nats.url,
    ]);
    sims.get("bravo")!.faults.clear("0000:04:00.0");
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^quarantined bravo 0000:04:00\.0 full\/cxl/m);

    const s = await runCli(["status", "--json", "--server", nats.url]);
    expect(s.code).toBe(0);
    const status = JSON.parse(s.stdout) as { devices: Array<{ host: string; bdf: string; state: string }> };
    expect(status.devices.find((d) => d.host === "bravo" && d.bdf === "0000:04:00.0")?.state).toBe(
      "quarantined",
    );
    const text = await runCli(["status", "--host", "bravo", "--server", nats.url]);
    expect(text.stdout).toMatch(/^bravo\s+\d+\s+.*1/m);
    expect(text.stdout).toMatch(/quarantined bravo 0000:04:00\.0: .*Error Not Committed/);

    const rel = await runCli([
      "release",
      "bravo",
      "0000:04:00.0",
      "--reason",
      "card reseated",
      "--server",
      nats.url,
    ]);
    expect(rel.code, rel.stderr).toBe(0);
    const again = await runCli(["status", "--json", "--server", nats.url]);
    const after = JSON.parse(again.stdout) as typeof status;
    expect(after.devices.find((d) => d.host === "bravo" && d.bdf === "0000:04:00.0")?.state).not.toBe(
      "quarantined",
    );
  });

  it("image show decodes the last saved image: identity, DVSEC, decoders", async () => {
    const r = await runCli(["image", "show", "alpha", "0000:01:00.0", "--server", nats.url]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^image of alpha 0000:01:00\.0/);
    expect(r.stdout).toMatch(/CXL DVSEC for CXL Devices at 0x100/);
    expect(r.stdout).toMatch(/decoder0 {2}base 0x100000000 {2}size 0x10000000 {2}committed/);
    const j = await runCli(["image", "show", "alpha", "0000:01:00.0", "--json", "--server", nats.url]);
    expect(JSON.parse(j.stdout).image.identity.bdf).toBe("0000:01:00.0");
  });

  it("devices lists every known device with its state", async () => {
    const r = await runCli(["devices", "--host", "alpha", "--server", nats.url]);
    expect(r.code).toBe(0);
    expect(lines(r.stdout)[0]).toMatch(/^HOST\s+DEVICE\s+STATE/);
    expect(r.stdout).toMatch(/^alpha\s+0000:01:00\.0\s+ready/m);
  });

  it("bus up but no coordinator, or no JetStream: exit 3, one line", async () => {
    const other = await startNats({ jetstream: false });
    try {
      const r = await runCli(["status", "--server", other.url]);
      expect(r.code).toBe(3);
      expect(lines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toMatch(/no coordinator answers on cxlrc\.ctl\.status/);
      const w = await runCli(["watch", "--server", other.url]);
      expect(w.code).toBe(3);
      expect(lines(w.stderr)).toEqual([
        "cxlrc watch: the NATS server has no JetStream (start nats-server with -js, as `cxlrc demo` does)",
      ]);
    } finally {
      await other.stop();
    }
  });
});

describe("last known good image and release --restore", () => {
  const DEV = "0000:03:00.0";
  it("image show says which image it shows; release --restore puts the verified one back", async () => {
    const ok = await runCli(["reset", "bravo", DEV, "--scope", "full", "--wait", "--server", nats.url]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^verified bravo 0000:03:00\.0 full\//m);
    const verifiedId = /^plan (cli-\S+):/m.exec(ok.stdout)?.[1];
    expect(verifiedId).toMatch(/^cli-/);
    const same = await runCli(["image", "show", "bravo", DEV, "--server", nats.url]);
    expect(lines(same.stdout)[1]).toMatch(
      /^ {2}shown: the last saved image, which is also the last known good one/,
    );

    sims.get("bravo")!.faults.set(DEV, { name: "commit-error", decoder: 0 });
    const bad = await runCli(["reset", "bravo", DEV, "--scope", "full", "--wait", "--server", nats.url]);
    sims.get("bravo")!.faults.clear(DEV);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(new RegExp(`^quarantined bravo ${DEV.replace(/\./g, "\\.")}`, "m"));

    const latest = await runCli(["image", "show", "bravo", DEV, "--server", nats.url]);
    expect(latest.code, latest.stderr).toBe(0);
    expect(lines(latest.stdout)[0]).toMatch(/^image of bravo 0000:03:00\.0/);
    expect(lines(latest.stdout)[1]).toMatch(
      /^ {2}shown: the last saved image, NOT verified; the last known good one is revision \d+ \(verified \S+ by request cli-/,
    );
    const good = await runCli(["image", "show", "bravo", DEV, "--verified", "--server", nats.url]);
    expect(good.code, good.stderr).toBe(0);
    expect(lines(good.stdout)[1]).toMatch(/^ {2}shown: the last known good image \(verified /);
    expect(lines(good.stdout)[1]).toContain(`by request ${verifiedId}`);
    expect(good.stdout).toMatch(/decoder0 {2}base 0x\S+ {2}size 0x\S+ {2}committed/);

    const rel = await runCli([
      "release",
      "bravo",
      DEV,
      "--restore",
      "--reason",
      "decoder replaced",
      "--server",
      nats.url,
    ]);
    expect(rel.code, rel.stderr).toBe(0);
    expect(rel.stdout).toMatch(/^restored from the last known good image \(revision \d+, request cli-/m);
    expect(rel.stdout).toMatch(/^ {2}0000:03:00\.0: decoder0 committed.*; verify passed$/m);
    expect(rel.stdout).toMatch(/^released bravo 0000:03:00\.0 from quarantine \(now ready\)$/m);
    const s = await runCli(["status", "--json", "--server", nats.url]);
    const status = JSON.parse(s.stdout) as { devices: Array<{ host: string; bdf: string; state: string }> };
    expect(status.devices.find((d) => d.host === "bravo" && d.bdf === DEV)?.state).toBe("ready");
  });
});

/** Every stored event of CXLRC_EVENTS with its sequence and subject (small test streams only). */
async function storedEvents(): Promise<Array<{ seq: number; subject: string; event: EventEnvelope }>> {
  const jsm = await getJsm(nc);
  const info = await jsm.streams.info(STREAMS.events.name);
  const out: Array<{ seq: number; subject: string; event: EventEnvelope }> = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(STREAMS.events.name, { seq }).catch(() => null);
    if (m) out.push({ seq, subject: m.subject, event: m.json<EventEnvelope>() });
  }
  return out;
}

describe("what the CLI believes", () => {
  it("reset --wait is not ended by forged 'verified' events from an agent's subject or another device's", async () => {
    const DEV = "0000:04:00.0";
    const requestId = "forged-verified-1";
    // A reset that ends failed (the device reports a CXL Reset error; restored from the image, read back: the
    // request failed, the device is as it was), held while saving the image until the forged events are
    // stored: they come before the real outcome in the stream, whatever the timing. (Not a commit error: the
    // device was released from an earlier quarantine with its decoders uncommitted, so none is committed here.)
    sims.get("bravo")!.faults.set(DEV, { name: "cxl-reset-error" });
    const hold = holdBravo();
    try {
      const cli = startCli([
        "reset",
        "bravo",
        DEV,
        "--scope",
        "full",
        "--method",
        "cxl",
        "--request-id",
        requestId,
        "--wait",
        "--server",
        nats.url,
      ]);
      await hold.reached;
      const verified = (host: string, bdf: string, extra: Partial<EventEnvelope> = {}) => ({
        ...makeEvent({
          host,
          bdf,
          kind: "verified",
          requestId,
          data: { scope: "full", method: "cxl", outcome: "verified" },
        }),
        ...extra,
      });
      const forged: Array<[string, object]> = [
        // An agent's own subject, the envelope claiming to be the coordinator's outcome.
        ["cxlrc.agt.bravo.0000-04-00-0.verified", verified("bravo", DEV, { source: "coordinator" })],
        // The same, honest about its source: still an agent's word.
        ["cxlrc.agt.bravo.0000-04-00-0.verified", verified("bravo", DEV, { source: "agent" })],
        // A coordinator subject of another device, the envelope naming this one.
        ["cxlrc.evt.bravo.0000-05-00-0.verified", verified("bravo", DEV, { source: "coordinator" })],
        // A coordinator subject of another host, the envelope naming this one.
        ["cxlrc.evt.alpha.0000-04-00-0.verified", verified("bravo", DEV, { source: "coordinator" })],
        // Another host's coordinator subject, the envelope agreeing with it: not this request's host.
        [
          "cxlrc.evt.alpha.0000-01-00-0.verified",
          verified("alpha", "0000:01:00.0", { source: "coordinator" }),
        ],
      ];
      const forgedIds = new Set<string>();
      const js = (await getJsm(nc)).jetstream();
      for (const [subject, env] of forged) {
        forgedIds.add((env as EventEnvelope).id);
        // Acknowledged: stored in CXLRC_EVENTS, where the CLI reads.
        await js.publish(subject, encodeJson(env));
      }
      hold.release();
      const r = await cli.done;
      expect(r.stdout).toMatch(/^failed bravo 0000:04:00\.0 full\/cxl/m);
      expect(r.stdout).not.toMatch(/^verified /m);
      expect(r.code).toBe(1);
      // The forged events were stored before the real outcome: the CLI had them in front of it.
      const stored = await storedEvents();
      const outcome = stored.find((e) => e.event.requestId === requestId && e.event.kind === "failed");
      expect(outcome?.subject).toBe("cxlrc.evt.bravo.0000-04-00-0.failed");
      const before = stored.filter((e) => forgedIds.has(e.event.id) && e.seq < outcome!.seq);
      expect(before).toHaveLength(forged.length);
    } finally {
      hold.release();
      sims.get("bravo")!.faults.clear(DEV);
    }
    // Failed, not quarantined: the device was put back to its image and takes requests again.
    const s = await runCli(["status", "--json", "--server", nats.url]);
    const status = JSON.parse(s.stdout) as { devices: Array<{ host: string; bdf: string; state: string }> };
    expect(status.devices.find((d) => d.host === "bravo" && d.bdf === DEV)?.state).toBe("ready");
  });

  it("watch shows the subject's host and device, flags a disagreeing envelope and strips terminal escapes", async () => {
    const w = startCli(["watch", "--host", "alpha", "--heartbeats", "--server", nats.url]);
    await waitForOutput(w, (out) => /\sheartbeat\s/.test(out));
    const ESC = "\u001b";
    const agentNote = makeEvent({
      host: `evil${ESC}[2J`,
      bdf: "0000:01:00.0",
      kind: "note",
      source: "agent",
      data: { msg: `${ESC}]0;pwned\u0007 hello${ESC}[31m`, "\u009b": 1 },
    });
    const kindWithEsc = `x${ESC}[5m`;
    const escKind = makeEvent({ host: "alpha", bdf: "0000:01:00.0", kind: "ok", source: "agent" });
    const coordClaim = makeEvent({
      host: "bravo",
      bdf: "0000:01:00.0",
      kind: "note",
      source: "coordinator",
      data: { text: "from alpha's subject" },
    });
    nc.publish("cxlrc.agt.alpha.0000-01-00-0.note", encodeJson(agentNote));
    nc.publish(`cxlrc.agt.alpha.0000-01-00-0.${kindWithEsc}`, encodeJson({ ...escKind, kind: kindWithEsc }));
    nc.publish("cxlrc.evt.alpha.0000-01-00-0.note", encodeJson(coordClaim));
    await nc.flush();
    await waitForOutput(w, (out) => out.includes("from alpha's subject") && out.includes("hello"));
    await waitForOutput(w, (out) => /agent\s+x\uFFFD\[5m/.test(out));
    w.child.kill("SIGINT");
    const r = await w.done;
    expect(r.code).toBe(0);
    // NO_COLOR is set: not one escape byte in the output, whatever the events carried.
    expect(r.stdout.includes(ESC)).toBe(false);
    expect(r.stdout.includes("\u0007")).toBe(false);
    expect(r.stdout.includes("\u009b")).toBe(false);
    const note = lines(r.stdout).find((l) => l.includes("hello"))!;
    expect(note).toMatch(/^\S+\s+alpha\s+0000:01:00\.0\s+agent\s+note\s+/);
    expect(note).toContain("\uFFFD]0;pwned\uFFFD hello\uFFFD[31m");
    expect(note).toMatch(/\[envelope disagrees: event names host "evil\\u001b\[2J"/);
    const claim = lines(r.stdout).find((l) => l.includes("from alpha's subject"))!;
    expect(claim).toMatch(/^\S+\s+alpha\s+0000:01:00\.0\s+coord\s+note\s+/);
    expect(claim).toMatch(/\[envelope disagrees: event names host "bravo" but came on alpha's subject\]/);
  });

  it("watch --json carries the subject; C1 controls are escaped like the rest", async () => {
    const w = startCli(["watch", "--json", "--host", "alpha", "--heartbeats", "--server", nats.url]);
    await waitForOutput(w, (out) => out.includes('"kind":"heartbeat"'));
    const e = makeEvent({
      host: "alpha",
      bdf: null,
      kind: "note",
      source: "agent",
      data: { text: "a\u009b31mb\u001bc" },
    });
    nc.publish("cxlrc.agt.alpha.agent.note", encodeJson(e));
    await waitForOutput(w, (out) => out.includes(e.id));
    w.child.kill("SIGINT");
    const r = await w.done;
    expect(r.stdout.includes("\u009b")).toBe(false);
    expect(r.stdout.includes("\u001b")).toBe(false);
    const line = lines(r.stdout).find((l) => l.includes(e.id))!;
    const parsed = JSON.parse(line) as EventEnvelope & { subject: string };
    expect(parsed.subject).toBe("cxlrc.agt.alpha.agent.note");
    expect(parsed.data.text).toBe("a\u009b31mb\u001bc");
  });
});

describe("a development bus: a stream, no coordinator", () => {
  it("watch --since reads the stream itself when nobody serves cxlrc.ctl.events", async () => {
    const dev = await startNats();
    const dnc = await connectBus({
      servers: dev.url,
      name: "dev-bus",
      log: silentLogger,
      waitForServer: false,
    });
    try {
      await ensureStreams(await getJsm(dnc));
      const js = (await getJsm(dnc)).jetstream();
      const a = makeEvent({ host: "h1", bdf: "0000:01:00.0", kind: "op.started", source: "agent" });
      const b = makeEvent({ host: "h2", bdf: "0000:01:00.0", kind: "op.started", source: "agent" });
      await js.publish("cxlrc.agt.h1.0000-01-00-0.op.started", encodeJson(a), { msgID: a.id });
      await js.publish("cxlrc.agt.h2.0000-01-00-0.op.started", encodeJson(b), { msgID: b.id });
      const w = startCli(["watch", "--json", "--host", "h1", "--since", "1h", "--server", dev.url]);
      await waitForOutput(w, (out) => out.includes(a.id));
      // Live too: an event published now arrives.
      const c = makeEvent({ host: "h1", bdf: null, kind: "agent.started", source: "agent" });
      await js.publish("cxlrc.agt.h1.agent.agent.started", encodeJson(c), { msgID: c.id });
      await waitForOutput(w, (out) => out.includes(c.id));
      w.child.kill("SIGINT");
      const r = await w.done;
      expect(r.code).toBe(0);
      const ids = lines(r.stdout).map((l) => (JSON.parse(l) as EventEnvelope).id);
      expect(ids).toEqual([a.id, c.id]);
    } finally {
      await dnc.close();
      await dev.stop();
    }
  });
});
