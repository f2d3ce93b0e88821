// Child process: the contract floor. The least bus work a coordinator built to issue #16's own design must do
// for one CXL Reset of a one-function device, with none of the coordinator's logic: no machine, no policy, no
// leases, no admission, no progress events. What it keeps is what the design says cannot go:
//   the request from the request stream (a durable consumer, acknowledged once the decision is stored);
//   a planning read (probe), then the save (the agent's save operation);
//   before the reset, both written and acknowledged: the image (a KV create, the image bucket's settings) and
//   the decision to reset (the device's record, a KV put naming the image), side by side;
//   the reset with quiesce, restore and verify in one fenced agent operation (as the coordinator sends it);
//   the outcome event in the event stream (acknowledged), beside the record's update to rest.
// Agent calls settle on whichever comes first, the reply or the agent's op.completed event (as the
// coordinator's agent link does). Requests come on cxlrc.req.floor.<host> (in the request stream, outside
// the coordinator's consumer); outcomes go on the coordinator's outcome subject, so the bench's driver times
// them as it times the coordinator's.
//
// BENCH_FLOOR_EVENTS=1: the floor also says what the bus contract has a coordinator say of such a reset: the
// 22 events of the coordinator's stream (request.received, the plan, every state entered, image.persisted,
// reset.started/completed, decoder.committed per decoder, verify.passed, the outcome), each acknowledged,
// pipelined (published in order, none waiting for another's acknowledgement), all acknowledged before the
// request is.
//
// Environment: BENCH_NATS, BENCH_FLOOR_EVENTS. Commands: stop.
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { type Msg, nuid } from "@nats-io/transport-node";
import { createAckPublisher } from "../../shared/bus/ack-publisher.ts";
import type { AgentResult } from "../../shared/bus/agent-contract.ts";
import { connectBus, requestJson } from "../../shared/bus/client.ts";
import { decodeJson, encodeJson, envelopeOf, makeEvent } from "../../shared/bus/codec.ts";
import { createReplyMux } from "../../shared/bus/reply-mux.ts";
import { type AgentOp, deviceKey, PREFIX, STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { sendFailed, sendReady, serveParent } from "./child.ts";
import { FLOOR_REQUESTS } from "./world.ts";

const BUCKET_IMAGES = "bench-floor-images";
const BUCKET_RECORDS = "bench-floor-records";
/** Above any epoch the bench's coordinator took: the agents' fence tables keep the highest seen. */
const EPOCH = 2 ** 40;

interface FloorRequest {
  requestId: string;
  host: string;
  bdf: string;
}

async function main(): Promise<void> {
  const nc = await connectBus({
    servers: process.env.BENCH_NATS ?? "",
    name: "bench floor",
    log: silentLogger,
  });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const kvm = new Kvm(nc);
  // As the coordinator's buckets are made here: file storage, one replica per server in the cluster (one).
  const images = await kvm.create(BUCKET_IMAGES, { history: 1 });
  const records = await kvm.create(BUCKET_RECORDS, { history: 1 });
  const acks = createAckPublisher(nc);
  const mux = createReplyMux(nc);
  await jsm.consumers.add(STREAMS.requests.name, {
    durable_name: "bench-floor",
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.New,
    filter_subject: `${FLOOR_REQUESTS}.*`,
    max_ack_pending: 10_000,
  });
  const consumer = await js.consumers.get(STREAMS.requests.name, "bench-floor");

  /** Calls settled by the agent's op.completed event, by operation id. */
  const waiting = new Map<string, (result: unknown) => void>();
  const sub = nc.subscribe(`${PREFIX}.agt.*.*.op.completed`, {
    callback: (_e, m: Msg) => {
      // Not an envelope: not one of ours to settle (the call's reply settles it).
      const env = envelopeOf(m.data);
      if (env?.opId && "result" in env.data) waiting.get(env.opId)?.(env.data.result);
    },
  });
  const call = async (host: string, op: AgentOp, params: Record<string, unknown>): Promise<unknown> => {
    const opId = `floor/${nuid.next()}`;
    const fromEvent = new Promise<unknown>((resolve) => waiting.set(opId, resolve));
    const fromReply = requestJson(
      nc,
      subjects.agent(host, op),
      { opId, ...params, fence: { epoch: EPOCH, owner: "floor", lease: host } },
      { timeoutMs: 30_000, mux },
    ).then((r) => {
      const reply = r as { ok: boolean; result?: unknown; error?: { message?: string } };
      if (!reply.ok) throw new Error(`${op}: ${reply.error?.message ?? "failed"}`);
      return reply.result;
    });
    try {
      return await Promise.race([fromReply, fromEvent]);
    } finally {
      fromReply.catch(() => undefined);
      waiting.delete(opId);
    }
  };

  const withEvents = process.env.BENCH_FLOOR_EVENTS === "1";
  /** A plan's worth of data (the coordinator's plan event carries about 2 kB). */
  const planData = {
    plan: {
      scope: "full",
      method: "cxl",
      targets: ["0000:01:00.0"],
      gates: Array.from({ length: 12 }, (_, i) => ({
        gate: `gate-${i}`,
        passed: true,
        detail: "x".repeat(100),
      })),
    },
  };

  const reset = async (req: FloorRequest) => {
    const key = deviceKey(req.host, req.bdf);
    const said: Promise<unknown>[] = [];
    /** One coordinator event of this request, acknowledged (`id`: a msgID the same for every sender). */
    const publish = (kind: string, data: Record<string, unknown>, id?: string) => {
      const env = makeEvent({
        host: req.host,
        bdf: req.bdf,
        kind,
        requestId: req.requestId,
        source: "coordinator",
        epoch: EPOCH,
        data: { coordinator: "floor", ...data },
        ...(id ? { id } : {}),
      });
      return acks.publish(subjects.event(req.host, req.bdf, kind), encodeJson(env), { msgID: env.id });
    };
    const say = (kind: string, data: Record<string, unknown> = {}) => {
      if (withEvents) said.push(publish(kind, data));
    };
    const entered = (...states: string[]) => {
      for (const state of states) say("state.entered", { state });
    };
    say("request.received");
    entered("planning");
    await call(req.host, "probe", { bdf: req.bdf, brief: true });
    say("plan", planData);
    entered("gating", "savingImage");
    const image = await call(req.host, "save", { bdf: req.bdf });
    entered("persistingImage");
    const imageKey = `${key}.${req.requestId}`;
    const [imageRev] = await Promise.all([
      images.create(imageKey, JSON.stringify({ images: { [req.bdf]: image } })),
      records.put(key, JSON.stringify({ requestId: req.requestId, state: "resetting", image: imageKey })),
    ]);
    say("image.persisted", { image: { key: imageKey, revision: imageRev } });
    entered("regating", "quiescing", "resetting");
    say("reset.started", { method: "cxl" });
    const result = (await call(req.host, "reset", {
      bdf: req.bdf,
      method: "cxl",
      quiesce: { scope: "full" },
      restore: { scope: "full", image, verify: true },
    })) as AgentResult<"reset">;
    const passed = result.restore?.ok === true && result.restore.result.verify?.passed === true;
    const kind = passed ? "verified" : "failed";
    say("reset.completed", { method: "cxl" });
    entered("awaitingReady", "restoring", "committingDecoders");
    say("decoder.committed", { index: 0 });
    say("decoder.committed", { index: 1 });
    entered("verifying");
    say(passed ? "verify.passed" : "verify.failed", { passed });
    await Promise.all([
      publish(
        kind,
        passed
          ? { image: imageRev }
          : { reason: `the reset's restore and verify did not pass: ${JSON.stringify(result.restore)}` },
        `floor-${req.requestId}`,
      ),
      records.put(key, JSON.stringify({ requestId: req.requestId, state: "ready" })),
    ]);
    entered("releasing", "ready");
    await Promise.all(said);
  };

  const messages = await consumer.consume({ max_messages: 512, expires: 5000 });
  const loop = (async () => {
    for await (const m of messages) {
      let req: FloorRequest;
      try {
        req = decodeJson(m.data) as FloorRequest;
      } catch (e) {
        // The bench's driver sends these; anything else is dropped with a line, and the floor keeps serving.
        process.stderr.write(`floor: request ${m.seq} is not JSON: ${(e as Error).message}\n`);
        m.term();
        continue;
      }
      void reset(req).then(
        () => m.ack(),
        (e: unknown) => {
          process.stderr.write(`floor ${req.requestId}: ${(e as Error).message}\n`);
          m.term();
        },
      );
    }
  })();

  serveParent({
    stop: async () => {
      sub.unsubscribe();
      await messages.close().catch(() => undefined);
      await loop.catch(() => undefined);
      await images.destroy().catch(() => undefined);
      await records.destroy().catch(() => undefined);
      await jsm.consumers.delete(STREAMS.requests.name, "bench-floor").catch(() => undefined);
      acks.close();
      await nc.close();
    },
  });
  sendReady({});
}

main().catch((e) => {
  sendFailed(e);
  process.exit(1);
});
