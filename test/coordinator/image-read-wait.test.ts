// A step that sends its agent the stored image waits for the images bucket outside its time budget: after a
// NATS node is lost, the bucket's stream elects a leader (seconds, on 2.9.10), and a read in that window timed
// out or took longer than the restore's budget. The coordinator counted it against the restore, failed it
// twice and quarantined a healthy device (a rolling restart of the cluster, the verifying step, 1 run in 22).
// Here the store is the test's: its reads fail and then take longer than the step's whole budget.
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import type { RestoreInput } from "../../machines/lifecycle-types.ts";
import { DEFAULT_POLICY } from "../../machines/policy/defaults.ts";
import type { StepStop } from "../../machines/steps.ts";
import type { AgentLink } from "../../services/coordinator/agent-link.ts";
import { createAgentActors, type DeviceAccess } from "../../services/coordinator/effects/agent-actors.ts";
import { createStepGate } from "../../services/coordinator/effects/step-budget.ts";
import type { CoordinatorStore, ImageRecord } from "../../services/coordinator/store.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";

const BDF = "0000:01:00.0";
const IMAGE = { version: 1, identity: { bdf: BDF } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const input: RestoreInput = {
  opId: "r1/restoring/1",
  host: "alpha",
  bdf: BDF,
  timeoutMs: 300,
  requestId: "r1",
  targets: [BDF],
  scope: "full",
  image: { key: "alpha.0000-01-00-0", revision: 7 },
  round: 1,
};

/** The restoring step over a store whose image reads fail `failures` times, then answer after `slowMs`. */
function restoring(failures: number, slowMs: number) {
  const reads: number[] = [];
  const sent: unknown[] = [];
  const t0 = performance.now();
  const store = {
    async getImageRevision(key: string, revision: number): Promise<ImageRecord | null> {
      reads.push(Math.round(performance.now() - t0));
      if (reads.length <= failures) {
        await sleep(50);
        throw new CxlrcError("timeout", "$JS.API.STREAM.MSG.GET.KV_cxlrc-images: no answer (no leader yet)");
      }
      await sleep(slowMs);
      return { key, revision, bdf: BDF, images: { [BDF]: IMAGE } } as unknown as ImageRecord;
    },
  } as Partial<CoordinatorStore>;
  const access: DeviceAccess = {
    persist: async () => undefined,
    resumed: async () => undefined,
    takeRecovery: () => false,
    recovering: () => false,
    lease: () => null,
    confirmLease: async () => true,
    afterOutcome: () => undefined,
    letGo: () => undefined,
  };
  const link = {
    issue: () => () => undefined,
    async call(_host: string, op: string, _opId: string, params: { image?: unknown }) {
      sent.push({ op, image: params.image });
      await sleep(20);
      return { decoders: [{ index: 0, action: "committed" }] };
    },
  } as unknown as AgentLink;
  const effects = createAgentActors(
    {
      nc: {} as NatsConnection,
      link,
      store: store as CoordinatorStore,
      fleet: {} as never,
      coordinatorId: "c-test",
      policy: DEFAULT_POLICY,
      log: silentLogger,
      now: Date.now,
      inventory: () => Promise.reject(new Error("no inventory here")),
      gate: createStepGate(4),
    },
    (key) => (key === "alpha.0000-01-00-0" ? access : undefined),
  );
  const stop: StepStop = { aborted: false, onStop: () => () => undefined };
  return { reads, sent, run: () => effects.restoreDevice(input, stop) };
}

describe("a step's image read waits for the images bucket, outside the step's budget", () => {
  it("reads that fail, then one slower than the whole budget: the restore is sent with the image", async () => {
    const r = restoring(2, 500);
    const started = performance.now();
    await expect(r.run()).resolves.toBeUndefined();
    // Two failed reads and a 500 ms one, against a 300 ms budget: the agent still got its call.
    expect(performance.now() - started).toBeGreaterThan(500);
    expect(r.reads).toHaveLength(3);
    expect(r.sent).toEqual([{ op: "restore", image: IMAGE }]);
  });
});
