// A step's waits for the bus's store are not counted against its time budget: after a NATS node is lost, a
// bucket's stream elects a leader (seconds, on 2.9.10), and a read or write in that window timed out or outlasted
// the step's budget. Counted, that refused healthy requests at gating, and once sent a restore to fail twice
// and a healthy device to quarantine (a rolling restart of the cluster, in 1 of 22 swept runs). Here the store
// and the fleet state are the test's: they fail, then take longer than the step's whole budget.
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import type { AcquireInput, PersistInput, RestoreInput } from "../../machines/lifecycle-types.ts";
import type { StepStop } from "../../machines/steps.ts";
import type { AgentLink } from "../../services/coordinator/agent-link.ts";
import type { DeviceAccess } from "../../services/coordinator/effects/agent-actors.ts";
import type { FleetStore } from "../../services/coordinator/fleet-state.ts";
import type { CoordinatorStore, ImageRecord } from "../../services/coordinator/store.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { stepEffects } from "./step-effects.ts";

const BDF = "0000:01:00.0";
const KEY = "alpha.0000-01-00-0";
const IMAGE = { version: 1, identity: { bdf: BDF } };
/** Every step's budget here: shorter than any of the store's waits below. */
const BUDGET_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const noLeader = () =>
  new CxlrcError("timeout", "$JS.API.STREAM.MSG.GET.KV_cxlrc-images: no answer (no leader yet)");

const base = { host: "alpha", bdf: BDF, timeoutMs: BUDGET_MS, requestId: "r1" };

/** The coordinator's step effects over the test's store, fleet state and agent link. */
function effects(over: { store?: Partial<CoordinatorStore>; fleet?: Partial<FleetStore> }) {
  const sent: Array<{ op: string; image?: unknown }> = [];
  const access: DeviceAccess = {
    persist: async () => undefined,
    resumed: async () => undefined,
    takeRecovery: () => false,
    recovering: () => false,
    lease: () => ({ lost: false }) as ReturnType<DeviceAccess["lease"]>,
    confirmLease: async () => true,
    afterOutcome: () => undefined,
    letGo: () => undefined,
  };
  const link = {
    issue: () => () => undefined,
    async call(_host: string, op: string, _opId: string, params: { image?: unknown }) {
      sent.push({ op, ...(params.image ? { image: params.image } : {}) });
      await sleep(20);
      return { decoders: [{ index: 0, action: "committed" }] };
    },
  } as unknown as AgentLink;
  const fx = stepEffects(KEY, access, {
    // No bus to confirm a deadline with (shared/bus/deadline-check.ts): a passed budget stands at once.
    nc: { isClosed: () => true } as unknown as NatsConnection,
    link,
    store: over.store as CoordinatorStore,
    fleet: over.fleet as FleetStore,
  });
  const stop: StepStop = { aborted: false, onStop: () => () => undefined };
  return { fx, stop, sent };
}

describe("a step's waits for the store are outside its time budget", () => {
  it("restoring: image reads that fail, then one slower than the budget; the restore is sent with it", async () => {
    let reads = 0;
    const { fx, stop, sent } = effects({
      store: {
        async getImageRevision(key, revision) {
          reads++;
          await sleep(reads <= 2 ? 50 : 500);
          if (reads <= 2) throw noLeader();
          return { key, revision, bdf: BDF, images: { [BDF]: IMAGE } } as unknown as ImageRecord;
        },
      },
    });
    const input: RestoreInput = {
      ...base,
      opId: "r1/restoring/1",
      targets: [BDF],
      scope: "full",
      image: { key: KEY, revision: 7 },
      round: 1,
    };
    const started = performance.now();
    await expect(fx.restoreDevice(input, stop)).resolves.toBeUndefined();
    expect(performance.now() - started).toBeGreaterThan(500);
    expect(reads).toBe(3);
    expect(sent).toEqual([{ op: "restore", image: IMAGE }]);
  });

  it("gating: the grant's write of the attempt budget slower than the budget; the device is granted", async () => {
    const { fx, stop } = effects({
      fleet: {
        async grant() {
          await sleep(2 * BUDGET_MS);
          return { granted: true };
        },
      },
    });
    const input: AcquireInput = { ...base, opId: "r1/gating/0", switchId: null };
    await expect(fx.acquireDevice(input, stop)).resolves.toEqual({ granted: true });
  });

  it("persistingImage: an image write slower than the budget; the image's revision is the step's answer", async () => {
    const { fx, stop } = effects({
      store: {
        async putImage() {
          await sleep(2 * BUDGET_MS);
          return 11;
        },
      },
    });
    const input: PersistInput = {
      ...base,
      opId: "r1/persistingImage/0",
      targets: [BDF],
      image: { images: { [BDF]: IMAGE } },
    };
    await expect(fx.persistImage(input, stop)).resolves.toEqual({ key: KEY, revision: 11 });
  });
});
