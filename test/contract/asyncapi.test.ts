// The bus contract as data (issue 18): docs/asyncapi.yaml is what the zod schemas generate, the AsyncAPI parser
// accepts it, every message has an example that its zod schema and the document's JSON Schema both accept, the
// channels are the subjects the services use, and the coordinator's own types fit the published schemas.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";
import { beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { ResetRequest } from "../../machines/facts.ts";
import type { LifecycleEmitted, LifecycleEmittedType } from "../../machines/lifecycle-types.ts";
import { OUTCOME_EVENTS } from "../../machines/lifecycle-types.ts";
import type { Plan as MachinePlan, Refusal as MachineRefusal } from "../../machines/policy/types.ts";
import { EVENT } from "../../services/coordinator/events.ts";
import type { RestoreReport as CoordinatorRestoreReport } from "../../services/coordinator/handlers/restore.ts";
import type { LeaseRecord as StoredLease } from "../../services/coordinator/leases.ts";
import type { RequestOutcome as CoordinatorOutcome } from "../../services/coordinator/outcomes.ts";
import type { CoordinatorStatus } from "../../services/coordinator/service.ts";
import type {
  ActorRecord as StoredActor,
  DecisionRecord as StoredDecision,
  ImageRecord as StoredImage,
  VerifiedImageRecord as StoredVerifiedImage,
} from "../../services/coordinator/store.ts";
import {
  buildAsyncApi,
  type ContractMessage,
  contractMessages,
  renderAsyncApi,
} from "../../shared/bus/asyncapi.ts";
import { formatZodIssues } from "../../shared/bus/codec.ts";
import type { RequestOutcome, StatusResult } from "../../shared/bus/control-replies.ts";
import {
  COORDINATOR_EVENT_DATA,
  type CoordinatorEventKind,
  type DeviceRequest,
  OUTCOME_KINDS,
  type Plan,
  type Refusal,
  type RestoreReport,
} from "../../shared/bus/event-data.ts";
import type {
  ActorRecord,
  DecisionRecord,
  ImageRecord,
  LeaseRecord,
  VerifiedImageRecord,
} from "../../shared/bus/kv-records.ts";
import { BUCKETS, subjects } from "../../shared/bus/subjects.ts";

const root = new URL("../../", import.meta.url);
const DOC = new URL("docs/asyncapi.yaml", root);
const { version } = JSON.parse(readFileSync(new URL("package.json", root), "utf8")) as { version: string };

type Json = Record<string, unknown>;

/** Replace every local $ref by what it points at (the document has no cycles). */
function deref(value: unknown, doc: Json, depth = 0): unknown {
  if (depth > 100) throw new Error("$ref nesting too deep: a cycle?");
  if (Array.isArray(value)) return value.map((v) => deref(v, doc, depth + 1));
  if (value === null || typeof value !== "object") return value;
  const { $ref, ...rest } = value as Json;
  if (typeof $ref === "string") {
    const target = $ref
      .replace(/^#\//, "")
      .split("/")
      .reduce<unknown>((o, k) => (o as Json | undefined)?.[k.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
    if (target === undefined) throw new Error(`dangling $ref ${$ref}`);
    return deref({ ...(target as Json), ...rest }, doc, depth + 1);
  }
  return Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, deref(v, doc, depth + 1)]));
}

/** Drop the keys the parser adds (x-parser-schema-id, x-parser-unique-object-id…). */
function withoutParserKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutParserKeys);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([k]) => !k.startsWith("x-parser-"))
      .map(([k, v]) => [k, withoutParserKeys(v)]),
  );
}

describe("docs/asyncapi.yaml", () => {
  const text = readFileSync(DOC, "utf8");
  const doc = buildAsyncApi({ version });
  const messages = contractMessages();

  it("is what the zod schemas generate", () => {
    const fresh = renderAsyncApi({ version });
    expect(
      fresh === text,
      "docs/asyncapi.yaml is out of date with the schemas in shared/bus: run `npx tsx scripts/asyncapi.ts`",
    ).toBe(true);
  });

  describe("read by the AsyncAPI parser", () => {
    let parsed: Awaited<ReturnType<Parser["parse"]>>;
    beforeAll(async () => {
      parsed = await new Parser().parse(text);
    });

    it("is a valid AsyncAPI 3.0 document: no error, no warning", () => {
      const problems = parsed.diagnostics
        .filter((d) => d.severity <= 1)
        .map((d) => `${d.code} at ${d.path.join("/")}: ${d.message}`);
      expect(problems).toEqual([]);
      expect(parsed.document).toBeDefined();
      expect(parsed.document!.version()).toBe("3.0.0");
      expect(parsed.document!.info().version()).toBe(version);
    });

    it("reads back as the generated object (the YAML says what the generator meant)", () => {
      const meta = parsed.document!.meta() as { asyncapi: { parsed: unknown } };
      expect(withoutParserKeys(meta.asyncapi.parsed)).toEqual(deref(doc, doc));
    });

    it("has every channel, operation and message", () => {
      const d = parsed.document!;
      expect(d.channels().length).toBe(Object.keys(doc.channels as Json).length);
      expect(d.operations().length).toBe(Object.keys(doc.operations as Json).length);
      expect(d.components().messages().length).toBe(messages.length);
      const requestReply = d.operations().filter((o) => o.reply() !== undefined);
      // submit, plan, status, image, release, breaker, events and the ten agent operations
      expect(requestReply.length).toBe(7 + 10);
    });
  });

  describe("examples", () => {
    const payloadSchemas = (doc.components as { schemas: Json }).schemas;
    const inDocument = (m: ContractMessage) =>
      z.fromJSONSchema(deref(payloadSchemas[m.id], doc) as Parameters<typeof z.fromJSONSchema>[0]);

    it("every message has at least one", () => {
      expect(messages.filter((m) => m.examples.length === 0).map((m) => m.id)).toEqual([]);
    });

    it("each parses with its message's zod schema", () => {
      const bad: string[] = [];
      for (const m of messages) {
        for (const e of m.examples) {
          const r = m.schema.safeParse(e.payload);
          if (!r.success) bad.push(`${m.id} / ${e.name}: ${formatZodIssues(r.error)}`);
          if (m.headers) {
            const h = m.headers.safeParse(e.headers);
            if (!h.success) bad.push(`${m.id} / ${e.name} headers: ${formatZodIssues(h.error)}`);
          }
        }
      }
      expect(bad).toEqual([]);
    });

    it("each matches the document's JSON Schema of its payload", () => {
      const bad: string[] = [];
      for (const m of messages) {
        const schema = inDocument(m);
        for (const e of m.examples) {
          const r = schema.safeParse(e.payload);
          if (!r.success) bad.push(`${m.id} / ${e.name}: ${formatZodIssues(r.error)}`);
        }
      }
      expect(bad).toEqual([]);
    });

    it("the document's JSON Schema refuses what the zod schema refuses (a bad scope, a missing field)", () => {
      const request = messages.find((m) => m.id === "ResetRequest")!;
      const good = request.examples[0]!.payload as Json;
      for (const wrong of [
        { ...good, scope: "sideways" },
        { ...good, reason: undefined },
        { ...good, extra: 1 },
      ]) {
        expect(request.schema.safeParse(wrong).success).toBe(false);
        expect(inDocument(request).safeParse(wrong).success).toBe(false);
      }
      const verified = messages.find((m) => m.id === "CoordinatorEvent.verified")!;
      const event = verified.examples[0]!.payload as Json & { data: Json };
      const notAnOutcome = { ...event, data: { ...event.data, outcome: "fine" } };
      expect(verified.schema.safeParse(notAnOutcome).success).toBe(false);
      expect(inDocument(verified).safeParse(notAnOutcome).success).toBe(false);
      // Open where it should be: a field a newer coordinator adds is no error.
      const newer = { ...event, trace: "x", data: { ...event.data, phaseMs: { resetting: 100 } } };
      expect(verified.schema.safeParse(newer).success).toBe(true);
      expect(inDocument(verified).safeParse(newer).success).toBe(true);
    });

    it("each event example is of its message's kind and goes out on a subject its channel's address matches", () => {
      const channels = doc.channels as Record<string, { address: string }>;
      const pattern = (address: string) =>
        new RegExp(
          `^${address
            .replace(/\./g, "\\.")
            .replace("{kind}", "[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*")
            .replace(/\{[^}]+\}/g, "[^.]+")}$`,
        );
      for (const m of messages.filter((x) => x.id.includes("Event."))) {
        const agent = m.id.startsWith("AgentEvent.");
        const address = pattern(channels[agent ? "agentEvents" : "coordinatorEvents"]!.address);
        for (const e of m.examples) {
          const env = e.payload as { host: string; bdf: string | null; kind: string; source: string };
          expect(`${m.id}: ${env.kind} from ${env.source}`).toBe(
            `${m.id}: ${m.id.replace(/^\w+Event\./, "")} from ${agent ? "agent" : "coordinator"}`,
          );
          const subject = agent
            ? subjects.agentEvent(env.host, env.bdf, env.kind)
            : env.bdf === null
              ? subjects.hostEvent(env.host, env.kind)
              : subjects.event(env.host, env.bdf, env.kind);
          expect(subject).toMatch(address);
        }
      }
    });
  });

  it("its channels are the subjects the services use", () => {
    const channels = doc.channels as Record<string, { address: string | null }>;
    const at = (id: string, p: Record<string, string> = {}) =>
      channels[id]!.address!.replace(/\{([^}]+)\}/g, (_, name: string) => p[name] ?? `{${name}}`);
    const device = { host: "alpha", "bdf-token": "0000-0d-00-0" };
    expect(at("resetRequests", { host: "alpha" })).toBe(subjects.request("alpha"));
    expect(at("submit", { host: "alpha" })).toBe(subjects.submit("alpha"));
    expect(at("plan", { host: "alpha" })).toBe(subjects.plan("alpha"));
    for (const ctl of ["status", "image", "release", "breaker", "events"] as const) {
      expect(at(ctl)).toBe(subjects[ctl]);
      expect(channels[`${ctl}Reply`]!.address).toBeNull();
    }
    expect(at("agentOperations", { host: "alpha", op: "probe" })).toBe(subjects.agent("alpha", "probe"));
    expect(at("coordinatorEvents", { ...device, kind: "state.entered" })).toBe(
      subjects.event("alpha", "0000:0d:00.0", "state.entered"),
    );
    expect(at("coordinatorEvents", { host: "alpha", "bdf-token": "agent", kind: "request.rejected" })).toBe(
      subjects.hostEvent("alpha", "request.rejected"),
    );
    expect(at("agentEvents", { ...device, kind: "op.started" })).toBe(
      subjects.agentEvent("alpha", "0000:0d:00.0", "op.started"),
    );
    expect(at("agentEvents", { host: "alpha", "bdf-token": "agent", kind: "heartbeat" })).toBe(
      subjects.agentEvent("alpha", null, "heartbeat"),
    );
    for (const [id, bucket] of [
      ["imagesBucket", BUCKETS.images],
      ["actorsBucket", BUCKETS.actors],
      ["decisionsBucket", BUCKETS.decisions],
      ["leasesBucket", BUCKETS.leases],
    ] as const) {
      expect(at(id, { key: "k" })).toBe(`$KV.${bucket}.k`);
    }
  });

  it("names every kind the coordinator publishes, and the outcomes the lifecycle ends with", () => {
    const kinds = new Set<string>(Object.keys(COORDINATOR_EVENT_DATA));
    expect(Object.values(EVENT).filter((k) => !kinds.has(k))).toEqual([]);
    expect(new Set(OUTCOME_KINDS)).toEqual(OUTCOME_EVENTS);
  });
});

// ---------------------------------------------------------------------------------------------------
// The coordinator's own types fit the schemas it is documented by (checked by tsc, not at run time): a field
// renamed or retyped on either side fails the typecheck here.

/** T without index signatures, all the way down (an interface has none; a z.looseObject's type has one). */
type Known<T> = T extends readonly (infer E)[]
  ? Known<E>[]
  : T extends object
    ? { [K in keyof T as string extends K ? never : K]: Known<T[K]> }
    : T;
type Fits<S extends z.ZodType> = Known<z.input<S>>;

/** What the lifecycle emits of a kind, as the coordinator publishes it (its envelope fields taken out). */
type Emitted<K extends LifecycleEmittedType> = Omit<
  Extract<LifecycleEmitted, { type: K }>,
  "type" | "host" | "bdf" | "requestId" | "atMs"
>;
type Published<K extends string> = K extends CoordinatorEventKind
  ? Omit<Fits<(typeof COORDINATOR_EVENT_DATA)[K]>, "coordinator" | "atMs">
  : never;

const lifecycleEventsFit: { [K in LifecycleEmittedType]: (e: Emitted<K>) => Published<K> } = {
  "state.entered": (e) => e,
  "request.received": (e) => e,
  plan: (e) => e,
  "image.persisted": (e) => e,
  "reset.started": (e) => e,
  "reset.completed": (e) => e,
  "decoder.committed": (e) => e,
  "verify.passed": (e) => e,
  "verify.failed": (e) => e,
  "scope.violation": (e) => e,
  "step.failed": (e) => e,
  released: (e) => e,
  "driver.rebound": (e) => e,
  "driver.rebind-failed": (e) => e,
  refused: (e) => e,
  planned: (e) => e,
  verified: (e) => e,
  failed: (e) => e,
  quarantined: (e) => e,
};

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

const coordinatorTypesFit = {
  plan: (p: MachinePlan): Known<z.input<typeof Plan>> => p,
  refusal: (r: MachineRefusal): Known<z.input<typeof Refusal>> => r,
  request: (r: ResetRequest): Known<z.input<typeof DeviceRequest>> => r,
  refusalReasons: true satisfies Same<MachineRefusal["reason"], Refusal["reason"]>,
  restoreReport: (r: CoordinatorRestoreReport): Known<z.input<typeof RestoreReport>> => r,
  outcome: (o: CoordinatorOutcome): Known<z.input<typeof RequestOutcome>> => o,
  status: (s: CoordinatorStatus): Known<z.input<typeof StatusResult>> => s,
  image: (r: StoredImage): Known<z.input<typeof ImageRecord>> => r,
  verifiedImage: (r: StoredVerifiedImage): Known<z.input<typeof VerifiedImageRecord>> => r,
  actor: (r: StoredActor): Known<z.input<typeof ActorRecord>> => r,
  decision: (r: StoredDecision): Known<z.input<typeof DecisionRecord>> => r,
  lease: (r: StoredLease): Known<z.input<typeof LeaseRecord>> => r,
};

describe("the coordinator's own types", () => {
  it("fit the published schemas (tsc checks the assignments above)", () => {
    expect(Object.keys(lifecycleEventsFit).filter((k) => !(k in COORDINATOR_EVENT_DATA))).toEqual([]);
    expect(Object.keys(coordinatorTypesFit).length).toBeGreaterThan(0);
  });
});
