// Restore from the last known good image, for a release with restore: every function of the device that has a
// verified image is restored (full scope) and verified; the report says what matched. The device is driven
// here directly (its actor rests in quarantine), under the lease the release holds.
import { nuid } from "@nats-io/transport-node";
import type { VerifyResult as AgentVerify, RestoreResult } from "../../../shared/bus/agent-contract.ts";
import { errorToBody } from "../../../shared/bus/codec.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { targetOpId } from "../effects/agent-actors.ts";
import { contextOf } from "../runtime/device.ts";
import type { Device, DeviceRuntime } from "../runtime/types.ts";

/** What `release` with `restore` did: the last known good image put back and read back. */
export interface RestoreReport {
  /** Every restored function read back equal to its last known good image. */
  verified: boolean;
  /** The last known good image used (the device's own record). */
  image: {
    key: string;
    revision: number;
    requestId: string | null;
    savedAt: string;
    verifiedAt: string;
  };
  functions: Array<{
    bdf: string;
    /** Decoders as the agent's restore left them (committed, retained, kept...). */
    decoders: Array<{ index: number; action: string }>;
    passed: boolean;
    mismatches: Array<{ field: string; expected: unknown; actual: unknown }>;
  }>;
  /** The restore or verify call that failed, if one did. */
  error?: { kind: string; message: string };
}

/**
 * Put a quarantined device back from its last known good image: every function of the device that has one,
 * restore (full scope: PCI config, DVSEC, HDM, decoders committed in order, Command last) then verify. Never
 * throws for a device that does not verify: the report says so. Throws (device untouched) when there is no
 * verified image to restore from.
 */
export async function restoreFromLastKnownGood(rt: DeviceRuntime, d: Device): Promise<RestoreReport> {
  const { o } = rt;
  const own = await o.store.getVerifiedImage(d.host, d.bdf);
  const bundle = own?.value.images ?? {};
  if (!own || bundle[d.bdf] === undefined) {
    throw new CxlrcError(
      "bad-input",
      `no verified image of ${d.bdf} on host ${d.host}: nothing to restore from (no reset of it has ever been verified); release without restore, or restore it by hand`,
      { fields: ["restore"], host: d.host, bdf: d.bdf },
    );
  }
  const functions = contextOf(d)?.facts?.functions ?? [d.bdf];
  const targets: Array<{ bdf: string; image: unknown }> = [];
  for (const f of functions.includes(d.bdf) ? functions : [d.bdf, ...functions]) {
    const image = bundle[f] ?? (await o.store.getVerifiedImage(d.host, f))?.value.images[f];
    if (image !== undefined) targets.push({ bdf: f, image });
    else
      rt.log(d).warn({ function: f }, "release restore: no verified image of this function; left as it is");
  }
  const report: RestoreReport = {
    verified: false,
    image: {
      key: own.value.verified.imageKey,
      revision: own.value.verified.imageRevision,
      requestId: own.value.requestId,
      savedAt: own.value.savedAt,
      verifiedAt: own.value.verified.at,
    },
    functions: targets.map((t) => ({ bdf: t.bdf, decoders: [], passed: false, mismatches: [] })),
  };
  const opId = `${d.key}/release/${nuid.next()}`;
  const n = targets.length;
  try {
    for (const [i, t] of targets.entries()) {
      const r = (await o.link.call(
        d.host,
        "restore",
        targetOpId(`${opId}/restore`, i, n),
        { bdf: t.bdf, scope: "full", image: t.image },
        { timeoutMs: o.policy.agentCallTimeoutMs + o.policy.verifyTimeoutMs },
      )) as RestoreResult;
      report.functions[i]!.decoders = r.decoders.map((x) => ({ index: x.index, action: x.action }));
    }
    for (const [i, t] of targets.entries()) {
      const v = (await o.link.call(
        d.host,
        "verify",
        targetOpId(`${opId}/verify`, i, n),
        { bdf: t.bdf, scope: "full", image: t.image },
        { timeoutMs: o.policy.verifyTimeoutMs },
      )) as AgentVerify;
      const fn = report.functions[i]!;
      fn.mismatches = v.mismatches.map((m) => ({
        field: `${m.register}.${m.field}`,
        expected: m.expected,
        actual: m.actual,
      }));
      fn.passed = v.passed && v.mismatches.length === 0;
    }
    report.verified = report.functions.every((f) => f.passed);
  } catch (err) {
    const body = errorToBody(err);
    report.error = { kind: body.kind, message: body.message };
    report.verified = false;
  }
  return report;
}
