// What must hold after any chaos run, checked from the event stream, the KV store and the simulated devices
// themselves (pure functions over what the runner gathered; every evaluated assertion counts as a check):
// - image-kept: a reset started only with its image in KV (read back at the moment of the reset), and a
//   request not verified or quarantined still has it (the device's last known good state stays stored);
// - decoders-intact: a decoder committed in the device's last image and not committed now (or elsewhere)
//   has a quarantined or failed event for the device after its last reset;
// - one-reset-per-request: resets counted on the device (flr + CXL Reset + conventional) never exceed the
//   requests that reset it; no request's reset ran to completion twice on the agents;
// - single-driver: no coordinator acts on a device while another one drives it (from its take of the device,
//   a request or a takeover, until the device rests);
// - one-outcome: every request sent ends in exactly one terminal event (a refusal with a reason);
// - lifecycle:*: machines/invariants.ts on each device's coordinator trace (write-ahead, verify before
//   ready, no silent escalation, success read back, dry runs touch nothing).
import {
  INVARIANTS as LIFECYCLE_INVARIANTS,
  checkInvariants as lifecycleInvariants,
} from "../../machines/invariants.ts";
import type { LifecycleEmitted } from "../../machines/lifecycle-types.ts";
import type { EventEnvelope } from "../../shared/bus/codec.ts";
import { deviceKey, hostOfKey } from "../../shared/bus/subjects.ts";
import { eventOrigin } from "../../shared/bus/trust.ts";
import type { ImageRecord } from "../coordinator/store.ts";
import type { RecordedEvent } from "./recorder.ts";
import type { RequestSpec } from "./scenario.ts";

export type ChaosInvariant =
  | "image-kept"
  | "decoders-intact"
  | "one-reset-per-request"
  | "single-driver"
  | "one-outcome"
  /** Every device ends with the driver it started with (the hand-over gives it back on every exit). */
  | "driver-back"
  | `lifecycle:${string}`;

export interface Violation {
  invariant: ChaosInvariant;
  message: string;
  requestId?: string;
  host?: string;
  bdf?: string;
}

export interface InvariantSummary {
  checks: number;
  violations: Violation[];
  byInvariant: Record<string, { checks: number; violations: number }>;
}

/** A decoder as read from the device now. */
export interface DecoderReading {
  index: number;
  committed: boolean;
  base: bigint;
  size: bigint;
}

export interface FunctionReading {
  host: string;
  bdf: string;
  /** Function 0 of its device (the address requests name). */
  device: string;
  readable: boolean;
  decoders: DecoderReading[];
  error?: string;
}

export interface ResetCount {
  host: string;
  /** Function 0. */
  bdf: string;
  /** flr + cxlReset + conventionalReset during the run. */
  resets: number;
  detail: { flr: number; cxlReset: number; conventionalReset: number };
}

export interface LiveImageCheck {
  requestId: string;
  host: string;
  bdf: string;
  ok: boolean;
  message: string;
}

export interface CheckInput {
  events: readonly RecordedEvent[];
  requests: ReadonlyArray<{ spec: RequestSpec; submitted: boolean }>;
  /** Per device (function 0). */
  resets: readonly ResetCount[];
  /** Latest image record per function key (deviceKey(host, bdf)), null when none is stored; unset: unreadable. */
  images: ReadonlyMap<string, ImageRecord | null>;
  /** `${key}@${revision}` of every image.persisted event → whether that revision is still in KV. */
  imageRevisions: ReadonlyMap<string, boolean>;
  /** Read back at each reset.started, during the run. */
  liveImageChecks: readonly LiveImageCheck[];
  /** Every function of every device, read after the run. */
  readings: readonly FunctionReading[];
}

/** Outcome kinds of the lifecycle (one per request), plus the intake's rejection. */
export const TERMINAL_KINDS: ReadonlySet<string> = new Set([
  "verified",
  "refused",
  "failed",
  "quarantined",
  "planned",
  "request.rejected",
]);

/** Events that mean a coordinator acted on the device (a refusal from outside the lease does not). */
const DRIVING_KINDS: ReadonlySet<string> = new Set([
  "state.entered",
  "image.persisted",
  "reset.started",
  "reset.completed",
  "decoder.committed",
  "verify.passed",
  "verify.failed",
  "scope.violation",
  "step.failed",
  "driver.rebound",
  "driver.rebind-failed",
  "verified",
  "failed",
  "quarantined",
  "released",
]);

/** A coordinator taking a device: a request into its actor, a takeover. */
const STINT_STARTS: ReadonlySet<string> = new Set(["request.received", "recovered"]);
/** States a coordinator enters when it takes a device at rest: a new actor binds, an unavailable one probes. */
const TAKES: ReadonlySet<string> = new Set(["binding", "probing"]);
/** States a device rests in (nobody drives it). */
const REST: ReadonlySet<string> = new Set(["ready", "quarantined", "unavailable"]);

/** The lifecycle's own emitted kinds (what machines/invariants.ts reads): the driving ones and the decisions. */
const LIFECYCLE_KINDS: ReadonlySet<string> = new Set([
  ...DRIVING_KINDS,
  "request.received",
  "plan",
  "refused",
  "planned",
]);

/** Is this event a request's terminal outcome? (A dry run's plan or refusal is one too.) */
export function isTerminal(e: EventEnvelope): boolean {
  if (e.source !== "coordinator" || !e.requestId) return false;
  if (TERMINAL_KINDS.has(e.kind)) return true;
  return e.kind === "plan" && (e.data as { dryRun?: unknown }).dryRun === true;
}

/**
 * Who said it, by the subject space it was stored under (cxlrc.evt.> coordinators, cxlrc.agt.> agents), when
 * the envelope agrees; null otherwise (an envelope claiming another source is nobody's word).
 */
export function spokenBy(r: Pick<RecordedEvent, "subject" | "event">): "coordinator" | "agent" | null {
  const space = eventOrigin(r.subject)?.source ?? null;
  return space !== null && r.event.source === space ? space : null;
}

const coordinatorOf = (e: EventEnvelope): string =>
  String((e.data as { coordinator?: unknown }).coordinator ?? "?");

/** Function 0 of the device a function belongs to. */
export const functionZero = (bdf: string): string => `${bdf.slice(0, -1)}0`;

class Tally {
  checks = 0;
  readonly violations: Violation[] = [];
  readonly by: Record<string, { checks: number; violations: number }> = {};
  check(invariant: ChaosInvariant, ok: boolean, v: () => Omit<Violation, "invariant">): void {
    this.checks++;
    const b = this.by[invariant] ?? { checks: 0, violations: 0 };
    this.by[invariant] = b;
    b.checks++;
    if (!ok) {
      b.violations++;
      this.violations.push({ invariant, ...v() });
    }
  }
}

/** Image decoder registers → committed, base, size. */
function imageDecoders(image: unknown): DecoderReading[] {
  const hdm = (image as { cxl?: { hdm?: { decoders?: unknown[] } | null } | null })?.cxl?.hdm;
  if (!hdm?.decoders) return [];
  const raw = (regs: Record<string, { raw?: string }>, name: string) => BigInt(regs[name]?.raw ?? "0x0");
  return hdm.decoders.map((d) => {
    const { index, registers } = d as {
      index: number;
      registers: Record<string, { raw?: string; committed?: unknown }>;
    };
    return {
      index,
      committed: registers.control?.committed === true,
      base: (raw(registers, "baseHigh") << 32n) | (raw(registers, "baseLow") & 0xf000_0000n),
      size: (raw(registers, "sizeHigh") << 32n) | (raw(registers, "sizeLow") & 0xf000_0000n),
    };
  });
}

export function checkChaosInvariants(input: CheckInput): InvariantSummary {
  const t = new Tally();
  const coord = input.events.filter((r) => spokenBy(r) === "coordinator");
  const sent = input.requests.filter((r) => r.submitted);

  // ---------------------------------------------------------------------------------------------
  // one-outcome
  const terminals = new Map<string, EventEnvelope[]>();
  for (const { event } of coord) {
    if (!isTerminal(event)) continue;
    const list = terminals.get(event.requestId!) ?? [];
    list.push(event);
    terminals.set(event.requestId!, list);
  }
  for (const r of sent) {
    const id = r.spec.requestId;
    const ends = terminals.get(id) ?? [];
    t.check("one-outcome", ends.length === 1, () => ({
      requestId: id,
      host: r.spec.host,
      bdf: r.spec.bdf,
      message:
        ends.length === 0
          ? "no terminal event (verified, refused, failed, quarantined)"
          : `${ends.length} terminal events: ${ends.map((e) => `${e.kind} by ${coordinatorOf(e)}`).join(", ")}`,
    }));
    for (const e of ends.filter((x) => x.kind === "refused")) {
      const reason = (e.data as { refusal?: { reason?: unknown } }).refusal?.reason;
      t.check("one-outcome", typeof reason === "string" && reason.length > 0, () => ({
        requestId: id,
        message: "refused without a reason",
      }));
    }
  }
  for (const r of input.requests.filter((x) => !x.submitted)) {
    t.check("one-outcome", false, () => ({
      requestId: r.spec.requestId,
      message: "the request could not be sent to the stream before the deadline",
    }));
  }

  // ---------------------------------------------------------------------------------------------
  // Per device traces (function 0 key), in stream order.
  const byDevice = new Map<string, EventEnvelope[]>();
  for (const { event } of coord) {
    if (!event.bdf) continue;
    const k = deviceKey(event.host, event.bdf);
    const list = byDevice.get(k) ?? [];
    list.push(event);
    byDevice.set(k, list);
  }

  // lifecycle:* (machines/invariants.ts)
  for (const [key, list] of byDevice) {
    const trace: LifecycleEmitted[] = [];
    const received = new Set<string>();
    // A request taken again (its first taker died before storing it: write-ahead means that attempt touched
    // nothing) is judged from its last take on; single-driver (below) still sees both takes.
    const lastTake = new Map<string, number>();
    list.forEach((e, i) => {
      if (e.kind === "request.received" && e.requestId) lastTake.set(e.requestId, i);
    });
    for (const [i, e] of list.entries()) {
      if (!LIFECYCLE_KINDS.has(e.kind)) continue;
      if (e.requestId && i < (lastTake.get(e.requestId) ?? -1)) continue;
      const data = e.data as Record<string, unknown>;
      if (data.dryRun === true) continue; // the intake's dry-run answer, not the machine's
      const base = {
        host: e.host,
        bdf: e.bdf!,
        requestId: e.requestId ?? null,
        atMs: Number(data.atMs ?? 0),
      };
      if (e.kind === "request.received" && e.requestId) received.add(e.requestId);
      // A refusal decided outside the machine (the device is leased by another coordinator) has no
      // request.received before it: the request never reached this device's actor.
      if (e.kind === "refused" && e.requestId && !received.has(e.requestId)) {
        received.add(e.requestId);
        trace.push({
          ...base,
          type: "request.received",
          request: { requestId: e.requestId, host: e.host, bdf: e.bdf!, scope: "io", reason: "(outside)" },
        });
      }
      trace.push({ ...data, ...base, type: e.kind } as unknown as LifecycleEmitted);
    }
    const host = hostOfKey(key);
    let violations: ReturnType<typeof lifecycleInvariants>;
    try {
      violations = lifecycleInvariants(trace, { complete: false });
    } catch (err) {
      // An event without the fields the lifecycle promises: that is a finding too.
      t.check("lifecycle:event-shape", false, () => ({
        host: host ?? "",
        bdf: list[0]?.bdf ?? "",
        message: `the device's events do not have the lifecycle's shape: ${(err as Error).message}`,
      }));
      continue;
    }
    for (const name of Object.keys(LIFECYCLE_INVARIANTS)) {
      const mine = violations.filter((v) => v.invariant === name);
      t.check(`lifecycle:${name}`, mine.length === 0, () => ({
        host: host ?? "",
        bdf: list[0]?.bdf ?? "",
        message: mine.map((v) => `${v.requestId ?? "-"}: ${v.message}`).join("; "),
        ...(mine[0]?.requestId ? { requestId: mine[0].requestId } : {}),
      }));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // single-driver: a device's coordinator events in time order form stints, one coordinator each. A stint
  // starts when a coordinator takes the device (request.received, recovered, binding, probing) and ends when the
  // device rests (ready, quarantined, unavailable). Any other event by another coordinator during a stint is
  // two coordinators at once. (A coordinator that died before storing what it did leaves a stint that the
  // next one's take simply replaces: the stored state never had it.)
  for (const list of byDevice.values()) {
    const events = list
      .filter((e) => DRIVING_KINDS.has(e.kind) || STINT_STARTS.has(e.kind))
      .map((e, i) => ({ e, i, at: Date.parse(e.time) }))
      .sort((a, b) => a.at - b.at || a.i - b.i);
    type Stint = { coordinator: string; requestId: string | null; since: number };
    let stint = null as Stint | null;
    const intruders: Array<{ e: (typeof list)[number]; stint: Stint }> = [];
    for (const { e, at } of events) {
      const c = coordinatorOf(e);
      const state = (e.data as { state?: string }).state;
      if (
        STINT_STARTS.has(e.kind) ||
        (e.kind === "state.entered" && state !== undefined && TAKES.has(state))
      ) {
        stint = { coordinator: c, requestId: e.requestId ?? null, since: at };
        continue;
      }
      if (stint && stint.coordinator !== c) intruders.push({ e, stint });
      if (e.kind === "state.entered" && state !== undefined && REST.has(state)) stint = null;
    }
    t.check("single-driver", intruders.length === 0, () => {
      const first = intruders[0]!;
      return {
        ...(first.stint.requestId ? { requestId: first.stint.requestId } : {}),
        host: list[0]?.host ?? "",
        bdf: list[0]?.bdf ?? "",
        message: `coordinator ${first.stint.coordinator} drove the device since ${new Date(first.stint.since).toISOString()}${first.stint.requestId ? ` (${first.stint.requestId})` : ""} while ${[...new Set(intruders.map((x) => coordinatorOf(x.e)))].join(", ")} acted on it (${intruders
          .slice(0, 3)
          .map(
            (x) =>
              `${x.e.kind}${(x.e.data as { state?: string }).state ? `=${(x.e.data as { state?: string }).state}` : ""} ${x.e.requestId ?? ""} at ${x.e.time}`,
          )
          .join(", ")})`,
      };
    });
  }

  // ---------------------------------------------------------------------------------------------
  // one-reset-per-request
  const resetRequests = new Map<string, Set<string>>(); // device key (fn0) → request ids
  const addReset = (host: string, bdf: string, requestId: string) => {
    const k = deviceKey(host, functionZero(bdf));
    const s = resetRequests.get(k) ?? new Set<string>();
    s.add(requestId);
    resetRequests.set(k, s);
  };
  const agentResets = new Map<string, number>(); // requestId → completed agent reset ops
  for (const r of input.events) {
    const e = r.event;
    const by = spokenBy(r);
    if (by === "coordinator" && e.kind === "reset.started" && e.requestId && e.bdf) {
      addReset(e.host, e.bdf, e.requestId);
      for (const target of ((e.data as { targets?: unknown }).targets as string[] | undefined) ?? []) {
        addReset(e.host, target, e.requestId);
      }
    }
    if (by === "agent" && e.opId && (e.data as { op?: unknown }).op === "reset") {
      const requestId = e.opId.split("/")[0] ?? e.opId;
      const bdf = ((e.data as { params?: { bdf?: string } }).params?.bdf ?? e.bdf) as string | null;
      if (e.kind === "op.started" && bdf) addReset(e.host, bdf, requestId);
      if (e.kind === "op.completed") agentResets.set(requestId, (agentResets.get(requestId) ?? 0) + 1);
    }
  }
  for (const r of input.resets) {
    const reqs = resetRequests.get(deviceKey(r.host, r.bdf)) ?? new Set<string>();
    t.check("one-reset-per-request", r.resets <= reqs.size, () => ({
      host: r.host,
      bdf: r.bdf,
      message: `${r.resets} resets on the device (flr ${r.detail.flr}, CXL ${r.detail.cxlReset}, conventional ${r.detail.conventionalReset}) for ${reqs.size} request(s) that reset it${reqs.size ? `: ${[...reqs].slice(0, 8).join(", ")}` : ""}`,
    }));
  }
  for (const [requestId, n] of agentResets) {
    t.check("one-reset-per-request", n <= 1, () => ({
      requestId,
      message: `the agents completed the reset of ${requestId} ${n} times`,
    }));
  }

  // ---------------------------------------------------------------------------------------------
  // image-kept
  for (const c of input.liveImageChecks) {
    t.check("image-kept", c.ok, () => ({
      requestId: c.requestId,
      host: c.host,
      bdf: c.bdf,
      message: c.message,
    }));
  }
  const outcomeOf = new Map<string, string>();
  for (const [id, ends] of terminals) if (ends[0]) outcomeOf.set(id, ends[0].kind);
  const persistedRef = new Map<string, { key: string; revision: number }>();
  for (const { event: e } of coord) {
    if (e.kind !== "image.persisted" || !e.requestId) continue;
    const image = (e.data as { image?: { key?: string; revision?: number } }).image;
    if (image?.key && typeof image.revision === "number") {
      persistedRef.set(e.requestId, { key: image.key, revision: image.revision });
    }
  }
  const resetDevices = new Set<string>();
  for (const { event: e } of coord) {
    if (e.kind !== "reset.started" || !e.requestId || !e.bdf) continue;
    resetDevices.add(deviceKey(e.host, e.bdf));
    const scope = (e.data as { scope?: unknown }).scope;
    const outcome = outcomeOf.get(e.requestId);
    if (scope !== "full" || outcome === "verified" || outcome === "quarantined") continue;
    const ref = persistedRef.get(e.requestId);
    t.check(
      "image-kept",
      ref !== undefined && input.imageRevisions.get(`${ref.key}@${ref.revision}`) === true,
      () => ({
        requestId: e.requestId!,
        host: e.host,
        bdf: e.bdf!,
        message: ref
          ? `full reset ended ${outcome ?? "without an outcome"}, and image ${ref.key}@${ref.revision} is no longer in the store`
          : "full reset started without an image.persisted event for the request",
      }),
    );
  }
  for (const key of resetDevices) {
    const rec = input.images.get(key);
    t.check("image-kept", rec !== null && rec !== undefined, () => ({
      host: hostOfKey(key),
      message:
        rec === undefined
          ? `the image store could not be read for ${key} after the run`
          : `device ${key} was reset but has no image in the store (its last known good state is lost)`,
    }));
  }

  // ---------------------------------------------------------------------------------------------
  // decoders-intact
  const lastResetIndex = new Map<string, number>();
  const endedBadIndex = new Map<string, number>();
  coord.forEach(({ event: e }, i) => {
    if (!e.bdf) return;
    const k = deviceKey(e.host, functionZero(e.bdf));
    if (e.kind === "reset.started") lastResetIndex.set(k, i);
    if (e.kind === "quarantined" || e.kind === "failed") endedBadIndex.set(k, i);
  });
  for (const r of input.readings) {
    const rec = input.images.get(deviceKey(r.host, r.bdf));
    if (!rec) continue;
    const image = rec.images[r.bdf];
    const expected = imageDecoders(image).filter((d) => d.committed);
    const lost = expected.filter((d) => {
      const now = r.decoders.find((x) => x.index === d.index);
      return !r.readable || !now?.committed || now.base !== d.base || now.size !== d.size;
    });
    const k = deviceKey(r.host, r.device);
    const excused = (endedBadIndex.get(k) ?? -1) > (lastResetIndex.get(k) ?? -1);
    t.check("decoders-intact", lost.length === 0 || excused, () => ({
      host: r.host,
      bdf: r.bdf,
      message: `decoder(s) ${lost.map((d) => d.index).join(", ")} committed in the last image (request ${rec.requestId ?? "?"}) are ${r.readable ? "not committed (or moved) now" : `unreadable (${r.error ?? "device does not answer"})`}, and no quarantined or failed event followed the last reset`,
    }));
  }

  return { checks: t.checks, violations: t.violations, byInvariant: t.by };
}
