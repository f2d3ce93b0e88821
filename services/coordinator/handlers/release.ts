// release: an operator takes a device out of quarantine, optionally restoring it first from its last known
// good image (handlers/restore.ts). A restore that does not verify leaves it quarantined (RELEASE_FAILED, an
// event of the machine) and throws naming why.
import type { ErrorKind } from "../../../shared/errors.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { EVENT } from "../events.ts";
import { serialize, stateNow } from "../runtime/device.ts";
import type { DeviceRuntime } from "../runtime/types.ts";
import { type RestoreReport, restoreFromLastKnownGood } from "./restore.ts";

/** What a release reached. */
export interface ReleaseResult {
  /** State reached: ready (or unavailable when the probe after the release failed). */
  state: string;
  /** Only with `restore`. */
  restore: RestoreReport | null;
}

/**
 * Operator: out of quarantine, optionally restoring the device first from its last known good image (full
 * scope, then verify). A restore that does not verify leaves the device quarantined (CxlrcError naming why,
 * details.restore the report).
 */
export function releaseDevice(
  rt: DeviceRuntime,
  host: string,
  bdf: string,
  opts: { operator: string; reason: string; restore?: boolean },
): Promise<ReleaseResult> {
  const { o } = rt;
  const d = rt.device(host, bdf);
  return serialize(d, async () => {
    const lease = await o.leases.acquire(d.key);
    if (!lease) throw new CxlrcError("in-progress", `${bdf} on ${host} is held by another coordinator`);
    d.pinned++;
    try {
      const rec = await o.store.loadActor(d.key);
      if (!rec && !d.actor) throw new CxlrcError("bad-input", `no device ${bdf} known on host ${host}`);
      await rt.sync(d);
      const state = stateNow(d);
      if (state !== "quarantined") {
        throw new CxlrcError("bad-input", `${bdf} on ${host} is not quarantined (it is ${state})`, {
          state,
        });
      }
      let report: RestoreReport | null = null;
      if (opts.restore) {
        rt.log(d).info({ operator: opts.operator }, "release: restoring from the last known good image");
        report = await restoreFromLastKnownGood(rt, d);
        if (!report.verified) {
          const failed = report.functions.filter((f) => !f.passed);
          const what = report.error
            ? `${report.error.kind}: ${report.error.message}`
            : `verify mismatches: ${failed.flatMap((f) => f.mismatches.map((m) => `${f.bdf} ${m.field}`)).join(", ")}`;
          const why = `release with restore by ${opts.operator}: the last known good image (revision ${report.image.revision}) did not verify (${what})`;
          d.actor!.send({ type: "RELEASE_FAILED", reason: why });
          await rt.persist(d);
          await o.events.publish({
            host,
            bdf,
            kind: EVENT.releaseFailed,
            data: { operator: opts.operator, reason: opts.reason, quarantineReason: why, restore: report },
          });
          throw new CxlrcError(
            (report.error?.kind as ErrorKind | undefined) ?? "verify-mismatch",
            `${bdf} on ${host} stays quarantined: ${why}`,
            { bdf, state: "quarantined", quarantineReason: why, restore: report },
          );
        }
        d.releaseData = { restore: report };
      }
      try {
        d.actor!.send({ type: "RELEASE", operator: opts.operator, reason: opts.reason });
      } finally {
        d.releaseData = null;
      }
      await rt.settle(d);
      await rt.persist(d);
      return { state: stateNow(d), restore: report };
    } finally {
      d.pinned--;
      void rt.maybeRelease(d);
    }
  });
}
