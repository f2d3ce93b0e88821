// 10,000 malformed reset requests (not JSON, a body naming another host than its subject, bad fields),
// published as fast as a client can, against a real nats-server: each is terminated the way nats-server 2.9.10
// honours (a plain +TERM: "+TERM <reason>" is ignored there and redelivered for ever), announced exactly once,
// and the request consumer is left with nothing pending or redelivered after its ack wait. Intake then serves
// a valid request as usual.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONSUMER_NAME } from "../../services/coordinator/intake.ts";
import { encodeJson } from "../../shared/bus/codec.ts";
import { STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, type RunningCoordinator, sleep, startWorld, until, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";
const N = 10_000;
const ACK_WAIT_MS = 2000;

describe("a flood of malformed requests", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "flood" })]);
    c = await w.coordinator({ ackWaitMs: ACK_WAIT_MS });
  });
  afterAll(async () => {
    await w?.close();
  });

  /** Message i: not JSON, another host in the body, or a field out of its schema, in turn. */
  const malformed = (i: number): Uint8Array => {
    switch (i % 3) {
      case 0:
        return new TextEncoder().encode(`{"requestId": "flood-${i}", oops`);
      case 1:
        return encodeJson({ requestId: `flood-${i}`, host: "elsewhere", bdf: BDF, scope: "io", reason: "x" });
      default:
        return encodeJson({
          requestId: `flood-${i}`,
          host: "flood",
          bdf: BDF,
          scope: "sideways",
          reason: "x",
        });
    }
  };

  it("leaves nothing pending or redelivered, announces each once, and intake still serves", {
    timeout: 180_000,
  }, async () => {
    const t0 = performance.now();
    const inFlight = new Set<Promise<unknown>>();
    for (let i = 0; i < N; i++) {
      const p = w.js.publish(subjects.request("flood"), malformed(i), { msgID: `flood-msg-${i}` });
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      if (inFlight.size >= 256) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    const published = performance.now();

    const consumer = () => w.jsm.consumers.info(STREAMS.requests.name, CONSUMER_NAME);
    const drained = async () => {
      const ci = await consumer();
      return ci.num_pending === 0 && ci.num_ack_pending === 0 && ci.delivered.stream_seq >= N;
    };
    expect(await until(drained)).toBe(true);
    const handled = performance.now();

    // Past the ack wait (twice over): a message terminated with a reason would be back by now.
    await sleep(2 * ACK_WAIT_MS + 500);
    const ci = await consumer();
    expect(ci.num_pending).toBe(0);
    expect(ci.num_ack_pending).toBe(0);
    expect(ci.num_redelivered).toBe(0);
    expect(ci.delivered.consumer_seq).toBe(N);

    // Each announced once: one request.rejected per message, under the subject's host.
    const counted = async () => {
      const info = await w.jsm.streams.info(STREAMS.events.name, {
        subjects_filter: subjects.hostEvent("flood", "request.rejected"),
      });
      return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    };
    expect(await until(async () => (await counted()) === N)).toBe(true);
    expect((await c.handle.waitForOutcome("flood-5", 1000)).message).toMatch(/field "scope"/);
    expect((await c.handle.waitForOutcome("flood-4", 1000)).message).toMatch(
      /names host "elsewhere" but was published on host "flood"'s subject/,
    );

    // A valid request is served as usual.
    const t1 = performance.now();
    await publishRequest(w.js, {
      requestId: "after-flood",
      host: "flood",
      bdf: BDF,
      scope: "io",
      reason: "x",
    });
    expect((await c.handle.waitForOutcome("after-flood", 20_000)).outcome).toBe("verified");
    const served = performance.now() - t1;
    expect(await counted()).toBe(N);
    console.info(
      `flood: ${N} malformed requests published in ${Math.round(published - t0)} ms, all handled ${Math.round(handled - t0)} ms after the first; a valid request afterwards verified in ${Math.round(served)} ms`,
    );
  });
});
