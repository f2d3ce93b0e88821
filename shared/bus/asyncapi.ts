// The bus contract as data: an AsyncAPI 3.0 document (docs/asyncapi.yaml) built from the zod schemas of
// shared/bus, so it cannot drift from them. Every subject pattern is a channel, every message has its JSON
// Schema (z.toJSONSchema, shared schemas under components.schemas) and an example. Pure: scripts/asyncapi.ts
// writes the file, test/contract regenerates it and checks it.
import { z } from "zod";
import { toYaml } from "../yaml.ts";
import {
  AGENT_RESULTS,
  BindResult,
  FaultResult,
  InventoryResult,
  ProbeResult,
  QuiesceResult,
  ResetResult,
  RestoreResult,
  SaveResult,
  VerifyResult,
} from "./agent-contract.ts";
import { AGENT_PARAMS, Bdf, ErrorBody, Fence, OpId, ResetMethod, Scope } from "./agent-messages.ts";
import { EXAMPLES, SHARED_EXAMPLE_OBJECTS } from "./asyncapi-examples.ts";
import { EventEnvelope } from "./codec.ts";
import {
  BreakerResult,
  BreakerState,
  controlReply,
  DeviceStatus,
  ImageResult,
  PlanResult,
  ReleaseResult,
  RequestOutcome,
  StatusResult,
  SubmitResult,
  VerifiedStamp,
} from "./control-replies.ts";
import {
  AGENT_EVENTS,
  COORDINATOR_EVENTS,
  DeviceRequest,
  GateResult,
  LastError,
  OUTCOME_KINDS,
  Plan,
  Refusal,
  RefusalReason,
  RestoreReport,
  VerifyMismatch,
  VerifyReport,
} from "./event-data.ts";
import { ActorRecord, DecisionRecord, ImageRecord, LeaseRecord, VerifiedImageRecord } from "./kv-records.ts";
import {
  BreakerResetRequest,
  EventsReply,
  EventsRequest,
  HostName,
  ImageRequest,
  ReleaseRequest,
  RequestId,
  ResetRequestMessage,
  StatusRequest,
  StoredEvent,
} from "./requests.ts";
import { AGENT_OPS, type AgentOp, BUCKETS, PREFIX, STREAMS, subjects } from "./subjects.ts";

export interface MessageExample {
  name: string;
  summary: string;
  headers?: Record<string, string>;
  payload: unknown;
}

/** One message of the contract: its schema (what a reader validates with) and its examples. */
export interface ContractMessage {
  /** components.messages key, and its payload's components.schemas key. */
  id: string;
  title: string;
  summary: string;
  description?: string;
  schema: z.ZodType;
  /** The same schema written as the document shows it, when that differs (events: the envelope by $ref). */
  shown?: z.ZodType;
  headers?: z.ZodType;
  examples: MessageExample[];
}

type Json = Record<string, unknown>;

const ref = (path: string) => ({ $ref: `#/${path}` });
const titleCase = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** The headers of a reset request on the stream: the requestId again, for JetStream's deduplication. */
const ResetRequestHeaders = z.strictObject({ "Nats-Msg-Id": RequestId });

function agentReply(op: AgentOp) {
  return z.discriminatedUnion("ok", [
    z.object({ ok: z.literal(true), opId: OpId, result: AGENT_RESULTS[op] }),
    z.object({ ok: z.literal(false), opId: OpId.nullable(), error: ErrorBody }),
  ]);
}

const AGENT_OP_SUMMARY: Record<AgentOp, string> = {
  inventory: "List the host's PCI functions, CXL devices and bridges.",
  bind: "Bind a driver to a function (or unbind it), optionally verifying the device against an image after.",
  probe: "Read what a plan needs of a device: capabilities, decoders, holders, bridge, siblings.",
  save: "Save the device's image (PCI config, DVSEC, HDM decoders), taking its driver when asked.",
  quiesce: "Bus Master off; for full scope also the cache write-back and invalidate.",
  reset:
    "Reset the function (flr, cxl, sbr, vfio or kernel), quiescing it first and restoring it from an image after (with its verify) when asked; a restore that fails after the reset is in the result, the operation still succeeds.",
  restore:
    "Write the image back (io: PCI config; full: also DVSEC, HDM, decoders committed), optionally verify.",
  verify: "Read the device back and compare it with the image, field by field.",
  fault: "Simulated backends only (chaos role): arm, clear or list injected faults.",
  ping: "A liveness check, answered at once without touching a device or publishing an event: a coordinator whose call gets no reply asks it to tell an agent that is not reading its requests (frozen) from a slow operation.",
};

/** Which messages the contract has, with their schemas and examples (the examples live in asyncapi-examples.ts). */
export function contractMessages(): ContractMessage[] {
  const m = (spec: Omit<ContractMessage, "examples">): ContractMessage => ({
    ...spec,
    examples: EXAMPLES[spec.id] ?? [],
  });
  const control = (
    name: string,
    request: z.ZodType | null,
    result: z.ZodType,
    what: { request?: string; reply: string },
  ) => [
    ...(request
      ? [m({ id: `${name}Request`, title: `${name} request`, summary: what.request ?? "", schema: request })]
      : []),
    m({ id: `${name}Reply`, title: `${name} reply`, summary: what.reply, schema: controlReply(result) }),
  ];
  return [
    m({
      id: "ResetRequest",
      title: "Reset request",
      summary: "Reset one device (bdf) or the devices a selector names; also the body of submit and plan.",
      description:
        "Strict: an unknown field is refused by name. The body's host must be the subject's. Published to the " +
        "stream with the header Nats-Msg-Id = requestId: the same requestId again is the same request.",
      schema: ResetRequestMessage,
      headers: ResetRequestHeaders,
    }),
    ...control("Submit", null, SubmitResult, {
      reply: "The request as written to the stream and each device's first decision (plan or refusal).",
    }),
    ...control("Plan", null, PlanResult, {
      reply: "A dry run: each device's plan or refusal; nothing runs.",
    }),
    ...control("Status", StatusRequest, StatusResult, {
      request: "The fleet's status, or one host's (an empty body is allowed).",
      reply: "Devices, states, leases, breaker, slots in use.",
    }),
    ...control("Image", ImageRequest, ImageResult, {
      request: "A function's last saved image and its last known good one.",
      reply: "The images, with where and when they were saved and verified.",
    }),
    ...control("Release", ReleaseRequest, ReleaseResult, {
      request:
        "Operator: take a device out of quarantine, optionally restoring its last known good image first.",
      reply: "The state reached; with restore, the report. A restore that does not verify is an error reply.",
    }),
    ...control("Breaker", BreakerResetRequest, BreakerResult, {
      request: "Operator: close the fleet circuit breaker.",
      reply: "The breaker, closed.",
    }),
    ...control("Events", EventsRequest, EventsReply, {
      request: "Replay stored events in batches: ask again from nextSeq until nextSeq > lastSeq.",
      reply: "A batch of stored events in stream order, with the next sequence to ask for.",
    }),
    ...AGENT_OPS.flatMap((op) => [
      m({
        id: `${titleCase(op)}Params`,
        title: `agent ${op}`,
        summary: AGENT_OP_SUMMARY[op],
        description:
          "Strict. opId is the idempotency key: the same opId again returns the first result instead of acting twice.",
        schema: AGENT_PARAMS[op],
      }),
      m({
        id: `${titleCase(op)}Reply`,
        title: `agent ${op} reply`,
        summary: `The ${op} result, or the error.`,
        schema: agentReply(op),
      }),
    ]),
    ...Object.entries(COORDINATOR_EVENTS).map(([kind, schema]) =>
      m({
        id: `CoordinatorEvent.${kind}`,
        title: kind,
        summary: schema.shape.data.description ?? kind,
        schema,
        shown: envelopeOf(kind, schema.shape.data),
      }),
    ),
    ...Object.entries(AGENT_EVENTS).map(([kind, schema]) =>
      m({
        id: `AgentEvent.${kind}`,
        title: kind,
        summary: schema.shape.data.description ?? kind,
        schema,
        shown: envelopeOf(kind, schema.shape.data),
      }),
    ),
    m({
      id: "ImageRecord",
      title: "saved image",
      summary: "The images a plan saved before its reset.",
      schema: ImageRecord,
    }),
    m({
      id: "VerifiedImageRecord",
      title: "last known good image",
      summary: "The last image a reset verified on the function.",
      schema: VerifiedImageRecord,
    }),
    m({
      id: "ActorRecord",
      title: "device actor",
      summary: "A device's persisted lifecycle actor.",
      schema: ActorRecord,
    }),
    m({
      id: "DecisionRecord",
      title: "decision",
      summary: "A request decided without its device's actor.",
      schema: DecisionRecord,
    }),
    m({ id: "LeaseRecord", title: "lease", summary: "Who drives a device.", schema: LeaseRecord }),
  ];
}

/** A typed event as the document shows it: the EventEnvelope by $ref, and its kind and data. */
function envelopeOf(kind: string, data: z.ZodType): z.ZodType {
  return z.intersection(EventEnvelope, z.object({ kind: z.literal(kind), data }));
}

/** Shared schemas that get a name of their own under components.schemas (and are $ref'd where used). */
function namedSchemas(): Array<[z.ZodType, string]> {
  return [
    [Bdf, "Bdf"],
    [HostName, "HostName"],
    [EventEnvelope.shape.time, "Timestamp"],
    [Scope, "Scope"],
    [ResetMethod, "ResetMethod"],
    [Fence, "Fence"],
    [ErrorBody, "ErrorBody"],
    [EventEnvelope, "EventEnvelope"],
    [StoredEvent, "StoredEvent"],
    [SaveResult, "Image"],
    [InventoryResult, "InventoryResult"],
    [BindResult, "BindResult"],
    [ProbeResult, "ProbeResult"],
    [QuiesceResult, "QuiesceResult"],
    [ResetResult, "ResetResult"],
    [RestoreResult, "RestoreResult"],
    [VerifyResult, "VerifyResult"],
    [FaultResult, "FaultResult"],
    [RefusalReason, "RefusalReason"],
    [GateResult, "GateResult"],
    [DeviceRequest, "DeviceRequest"],
    [Plan, "Plan"],
    [Refusal, "Refusal"],
    [VerifyMismatch, "VerifyMismatch"],
    [VerifyReport, "VerifyReport"],
    [LastError, "LastError"],
    [RestoreReport, "RestoreReport"],
    [RequestOutcome, "RequestOutcome"],
    [BreakerState, "BreakerState"],
    [DeviceStatus, "DeviceStatus"],
    [VerifiedStamp, "VerifiedStamp"],
    [ResetRequestHeaders, "ResetRequestHeaders"],
  ];
}

const SAFE_INT = Number.MAX_SAFE_INTEGER;

/** zod's output made a plain component: no $schema/$id, no safe-integer bounds (noise for every int). */
function tidy(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(tidy);
  if (value === null || typeof value !== "object") return value;
  const out: Json = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === "$schema" || k === "$id") continue;
    if ((k === "maximum" && v === SAFE_INT) || (k === "minimum" && v === -SAFE_INT)) continue;
    out[k] = tidy(v);
  }
  return out;
}

/** Every schema as JSON Schema (draft-07, as a parser accepts it: `io: "input"`), shared ones by $ref. */
export function componentSchemas(messages: ContractMessage[]): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [schema, id] of namedSchemas()) registry.add(schema, { id });
  for (const msg of messages) registry.add(msg.shown ?? msg.schema, { id: msg.id });
  const { schemas } = z.toJSONSchema(registry, {
    target: "draft-7",
    io: "input",
    unrepresentable: "any",
    uri: (id) => `#/components/schemas/${id}`,
  });
  return Object.fromEntries(Object.entries(schemas).map(([id, s]) => [id, tidy(s) as Json]));
}

const PARAMETERS: Json = {
  host: {
    description:
      "The host's name (1-64 letters, digits, '-' or '_'): the host whose agent serves the device. Fleet-level " +
      "coordinator events use `_coordinator`.",
    examples: ["alpha"],
  },
  "bdf-token": {
    description:
      "A PCI function as one subject token, ':' and '.' becoming '-' (0000:0d:00.0 is 0000-0d-00-0); `agent` " +
      "for host-level events (the envelope's bdf is null).",
    examples: ["0000-0d-00-0", "agent"],
  },
  kind: {
    description:
      "The event kind, as in the envelope's `kind` (it may hold dots: state.entered is two tokens).",
    examples: ["verified", "state.entered"],
  },
  op: { description: "The agent operation.", enum: [...AGENT_OPS] },
  key: { description: "The KV key (see the bucket's description).", examples: ["alpha.0000-0d-00-0"] },
};

const DESCRIPTION = `The NATS bus contract of cxlrc, a reset coordinator for CXL devices: every subject, stream, KV bucket and
message, generated from the zod schemas in shared/bus (\`npx tsx scripts/asyncapi.ts\`; test/contract fails when
this document and the schemas differ).

Operations are written from cxlrc's side (its coordinators and host agents): \`receive\` is what a client sends
to cxlrc (a reset request, a control request, an agent operation), \`send\` is what cxlrc publishes (events).
Request/reply operations answer on the requester's reply subject (its inbox).

## What a client may rely on
- **Envelope version.** Every event is one \`EventEnvelope\` with \`v: 1\`. Within a version changes are additive
  only: new event kinds, new optional fields in envelopes, event data and replies, new control endpoints. A change
  that removes or renames a field, changes its type or meaning, or adds a value to a closed enumeration (outcome
  kinds, refusal reasons, scope, method) comes with a new \`v\`.
- **Ignore what you do not know.** An event kind that is not in this document, a field that is not in its schema:
  skip it, never fail on it. The schemas of what cxlrc sends are open (additional properties allowed) for that
  reason. What cxlrc receives is closed: an unknown field in a request is refused, naming it.
- **One outcome per request id**: \`verified\`, \`failed\`, \`quarantined\` or \`refused\` (a dry run ends with \`plan\`
  with \`data.dryRun: true\`, or \`refused\`; \`planned\` is its outcome when a device's actor decides it). A request
  rejected before it reached a device ends with \`request.rejected\` (bdf null). An outcome is believed only from
  \`cxlrc.evt.>\`, where only coordinators may publish; \`cxlrc.agt.>\` carries the agents' progress, never an outcome.
- **Idempotency.** Publish a reset request with \`Nats-Msg-Id\` set to its requestId (submit does it for you): the
  same requestId again is the same request, never a second reset. Event ids are JetStream msgIDs: an event seen
  twice (a replay overlapping a live subscription) has the same id.
- **Order.** A device's events are stored in the order they happened; only progress events of one step
  (\`state.entered\` of states that do not touch the device, \`decoder.committed\`, \`reset.completed\`) may swap
  among themselves.
- **Errors.** Every control reply is \`{ok: true, result}\` or \`{ok: false, error: {kind, message, details}}\` (an
  agent's reply carries its opId as well): \`details.fields\` names the bad fields of a \`bad-input\`,
  \`details.retryAfterMs\` says when to retry a \`rate-limited\`. Kinds are those of shared/errors.ts.
- **Who may do what** is enforced by the server (deploy/nats, shared/bus/permissions.ts): controllers publish
  requests and use submit/plan for their hosts, readers (sre, operator) have status, image, events and live
  events, operators release and close the breaker. No role but the coordinators has a JetStream API: the past is
  read through \`cxlrc.ctl.events\`, images through \`cxlrc.ctl.image\`.`;

const STREAM_USE: Record<keyof typeof STREAMS, string> = {
  events: "Every event, the coordinators' and the agents' (JetStream msgID = envelope id).",
  requests: "Reset requests (msgID = requestId: the duplicate window drops a repeat).",
};

const BUCKET_USE: Record<keyof typeof BUCKETS, string> = {
  images:
    "The images saved for a request, and each function's last known good image (verified.<host>.<bdf-token>).",
  actors: "Persisted device actors (XState snapshots), written with compare-and-set.",
  leases:
    "Partition leases, one per host: who drives its devices; the entry's revision is the fencing epoch.",
  decisions: "Requests decided without their device's actor, per request id, kept 24 h.",
  meta: "The coordinators' secret that keys outcome event ids.",
  admission:
    "budget.<host>.<bdf-token>: attempts; breaker: its state. (Host slots are kept by the host's owner in memory; older versions wrote host.<host>.)",
};

interface ChannelSpec {
  id: string;
  address: string | null;
  title: string;
  description: string;
  parameters?: string[];
  messages: string[];
  extra?: Json;
}

interface OperationSpec {
  id: string;
  action: "send" | "receive";
  channel: string;
  title: string;
  summary: string;
  messages?: string[];
  reply?: { channel: string; messages?: string[] };
}

const streamOf = (subject: string) =>
  Object.values(STREAMS).find((s) => s.subjects.some((p) => p === subject))?.name;

function channelSpecs(messages: ContractMessage[]): ChannelSpec[] {
  const ids = (prefix: string) => messages.filter((m) => m.id.startsWith(prefix)).map((m) => m.id);
  const ctl = (
    id: string,
    address: string,
    title: string,
    description: string,
    request: string,
    reply: string,
    parameters?: string[],
  ): ChannelSpec[] => [
    { id, address, title, description, messages: [request], ...(parameters ? { parameters } : {}) },
    {
      id: `${id}Reply`,
      address: null,
      title: `${title}: reply`,
      description: "The requester's reply subject (its inbox).",
      messages: [reply],
    },
  ];
  const agentOps = AGENT_OPS.map((op) => `${titleCase(op)}Params`);
  const agentReplies = AGENT_OPS.map((op) => `${titleCase(op)}Reply`);
  return [
    {
      id: "resetRequests",
      address: `${PREFIX}.req.reset.{host}`,
      title: "Reset requests",
      description:
        "Fleet controllers publish reset requests here, into the stream CXLRC_REQUESTS (JetStream publish, " +
        "Nats-Msg-Id = requestId). A controller may be limited to its hosts by the server.",
      parameters: ["host"],
      messages: ["ResetRequest"],
      extra: { "x-cxlrc-stream": streamOf(subjects.requestsAll) },
    },
    ...ctl(
      "submit",
      `${PREFIX}.ctl.submit.{host}`,
      "Submit",
      "A reset request by request/reply: written to the request stream, answered with each device's plan or " +
        "refusal (nothing destructive has happened yet); the outcome follows on the events.",
      "ResetRequest",
      "SubmitReply",
      ["host"],
    ),
    ...ctl(
      "plan",
      `${PREFIX}.ctl.plan.{host}`,
      "Plan",
      "A dry run by request/reply: the plan or refusal of each device, from fresh facts. Nothing is stored.",
      "ResetRequest",
      "PlanReply",
      ["host"],
    ),
    ...ctl(
      "status",
      subjects.status,
      "Status",
      "The fleet as the answering coordinator sees it.",
      "StatusRequest",
      "StatusReply",
    ),
    ...ctl("image", subjects.image, "Image", "A function's saved images.", "ImageRequest", "ImageReply"),
    ...ctl(
      "release",
      subjects.release,
      "Release",
      "Operator: release a quarantined device.",
      "ReleaseRequest",
      "ReleaseReply",
    ),
    ...ctl(
      "breaker",
      subjects.breaker,
      "Breaker",
      "Operator: close the fleet circuit breaker.",
      "BreakerRequest",
      "BreakerReply",
    ),
    ...ctl(
      "events",
      subjects.events,
      "Event replay",
      "Stored events in batches, filtered by host, device, kinds, source, time or sequence. Readers have no " +
        "JetStream API of their own: this is how they read the past.",
      "EventsRequest",
      "EventsReply",
    ),
    {
      id: "agentOperations",
      address: `${PREFIX}.agent.{host}.{op}`,
      title: "Agent operations",
      description:
        "The host agent's operations (a NATS service, one endpoint per operation). Coordinators call them; " +
        "`fault` only on simulated hosts, for the chaos role.",
      parameters: ["host", "op"],
      messages: agentOps,
    },
    {
      id: "agentReplies",
      address: null,
      title: "Agent operations: replies",
      description: "The caller's reply subject (its inbox).",
      messages: agentReplies,
    },
    {
      id: "coordinatorEvents",
      address: `${PREFIX}.evt.{host}.{bdf-token}.{kind}`,
      title: "Coordinator events",
      description:
        "Every transition and decision of the coordinators, stored in CXLRC_EVENTS. Only coordinators may " +
        "publish here: outcomes are believed from this subject space only. Follow live with a subscription " +
        "(cxlrc.evt.<host>.>), read the past with cxlrc.ctl.events.",
      parameters: ["host", "bdf-token", "kind"],
      messages: ids("CoordinatorEvent."),
      extra: { "x-cxlrc-stream": streamOf(subjects.eventsAll) },
    },
    {
      id: "agentEvents",
      address: `${PREFIX}.agt.{host}.{bdf-token}.{kind}`,
      title: "Agent events",
      description:
        "A host agent's progress: each operation's steps (opId in the envelope) and its heartbeat. Only the " +
        "agent of <host> may publish under cxlrc.agt.<host>.>. Stored in CXLRC_EVENTS (heartbeats too).",
      parameters: ["host", "bdf-token", "kind"],
      messages: ids("AgentEvent."),
      extra: { "x-cxlrc-stream": streamOf(subjects.agentEventsAll) },
    },
    {
      id: "imagesBucket",
      address: `$KV.${BUCKETS.images}.{key}`,
      title: `KV ${BUCKETS.images}`,
      description:
        "Coordinators only. Key <host>.<bdf-token>: the images saved for a request (revisions kept); key " +
        "verified.<host>.<bdf-token>: the function's last known good image. Clients read both through cxlrc.ctl.image.",
      parameters: ["key"],
      messages: ["ImageRecord", "VerifiedImageRecord"],
    },
    {
      id: "actorsBucket",
      address: `$KV.${BUCKETS.actors}.{key}`,
      title: `KV ${BUCKETS.actors}`,
      description:
        "Coordinators only. Key <host>.<bdf-token>: the device's persisted actor, written with compare-and-set. " +
        "Clients read device states through cxlrc.ctl.status.",
      parameters: ["key"],
      messages: ["ActorRecord"],
    },
    {
      id: "decisionsBucket",
      address: `$KV.${BUCKETS.decisions}.{key}`,
      title: `KV ${BUCKETS.decisions}`,
      description:
        "Coordinators only. Key: a hash of the request id. Requests decided outside their device's actor, kept 24 h " +
        "so that a redelivery gets the same answer; the decision is also an event.",
      parameters: ["key"],
      messages: ["DecisionRecord"],
    },
    {
      id: "leasesBucket",
      address: `$KV.${BUCKETS.leases}.{key}`,
      title: `KV ${BUCKETS.leases}`,
      description:
        "Coordinators only. Key <host>: the coordinator that owns the host's partition and drives its devices " +
        "(bucket max age = lease time; kept while a device of the host is driven and for partitionLingerMs after); " +
        "the entry's revision is the fencing epoch that events (envelope `epoch`) and agent operations carry.",
      parameters: ["key"],
      messages: ["LeaseRecord"],
    },
  ];
}

function operationSpecs(): OperationSpec[] {
  const ctl = (id: string, title: string, summary: string): OperationSpec => ({
    id,
    action: "receive",
    channel: id,
    title,
    summary,
    reply: { channel: `${id}Reply` },
  });
  return [
    {
      id: "resetRequest",
      action: "receive",
      channel: "resetRequests",
      title: "Request a reset",
      summary: "A fleet controller publishes a reset request; its decisions and outcome follow as events.",
    },
    ctl("submit", "Submit a reset", "Submit a request and get each device's plan or refusal at once."),
    ctl("plan", "Plan a reset", "Dry run: the plan or refusal, nothing executed."),
    ctl("status", "Fleet status", "The fleet's devices, states, leases and breaker."),
    ctl("image", "Saved images", "A function's last saved and last known good images."),
    ctl("release", "Release from quarantine", "Operator: release a device, optionally restoring it first."),
    ctl("breaker", "Close the breaker", "Operator: close the fleet circuit breaker."),
    ctl("events", "Replay events", "Stored events in batches."),
    ...AGENT_OPS.map(
      (op): OperationSpec => ({
        id: `agent${titleCase(op)}`,
        action: "receive",
        channel: "agentOperations",
        title: `Agent: ${op}`,
        summary: `${AGENT_OP_SUMMARY[op]} Subject cxlrc.agent.<host>.${op}.`,
        messages: [`${titleCase(op)}Params`],
        reply: { channel: "agentReplies", messages: [`${titleCase(op)}Reply`] },
      }),
    ),
    {
      id: "coordinatorEvents",
      action: "send",
      channel: "coordinatorEvents",
      title: "Coordinator events",
      summary: "Plans, refusals, progress and the one outcome of each request.",
    },
    {
      id: "agentEvents",
      action: "send",
      channel: "agentEvents",
      title: "Agent events",
      summary: "Operation steps and heartbeats of the host agents.",
    },
  ];
}

/** The whole document as a plain object (key order is the output's order). */
export function buildAsyncApi(opts: { version: string }): Json {
  const messages = contractMessages();
  const byId = new Map(messages.map((msg) => [msg.id, msg]));
  const channels = channelSpecs(messages);
  const channelOf = new Map(channels.map((c) => [c.id, c]));
  const messageRef = (channel: string, id: string) => ref(`channels/${channel}/messages/${id}`);
  const schemas = componentSchemas(messages);

  const channelObjects = Object.fromEntries(
    channels.map((c) => [
      c.id,
      {
        address: c.address,
        title: c.title,
        description: c.description,
        ...(c.parameters
          ? {
              parameters: Object.fromEntries(c.parameters.map((p) => [p, ref(`components/parameters/${p}`)])),
            }
          : {}),
        messages: Object.fromEntries(c.messages.map((id) => [id, ref(`components/messages/${id}`)])),
        ...c.extra,
      },
    ]),
  );
  const operationObjects = Object.fromEntries(
    operationSpecs().map((o) => {
      const replyChannel = o.reply ? channelOf.get(o.reply.channel) : undefined;
      return [
        o.id,
        {
          action: o.action,
          channel: ref(`channels/${o.channel}`),
          title: o.title,
          summary: o.summary,
          messages: (o.messages ?? channelOf.get(o.channel)?.messages ?? []).map((id) =>
            messageRef(o.channel, id),
          ),
          ...(o.reply && replyChannel
            ? {
                reply: {
                  channel: ref(`channels/${o.reply.channel}`),
                  messages: (o.reply.messages ?? replyChannel.messages).map((id) =>
                    messageRef(o.reply!.channel, id),
                  ),
                },
              }
            : {}),
        },
      ];
    }),
  );
  const messageObjects = Object.fromEntries(
    [...byId.values()].map((msg) => [
      msg.id,
      {
        name: msg.id,
        title: msg.title,
        summary: msg.summary,
        ...(msg.description ? { description: msg.description } : {}),
        contentType: "application/json",
        ...(msg.headers ? { headers: ref(`components/schemas/${schemaIdOf(msg.headers)}`) } : {}),
        payload: ref(`components/schemas/${msg.id}`),
        examples: msg.examples.map((e) => ({
          name: e.name,
          summary: e.summary,
          ...(e.headers ? { headers: e.headers } : {}),
          payload: e.payload,
        })),
      },
    ]),
  );

  return {
    asyncapi: "3.0.0",
    info: {
      title: "cxlrc bus contract",
      version: opts.version,
      description: DESCRIPTION,
      license: { name: "Apache-2.0" },
    },
    defaultContentType: "application/json",
    servers: {
      nats: {
        host: "127.0.0.1:4222",
        protocol: "nats",
        description:
          "Any nats-server of the deployment (JetStream enabled). In production: TLS with a client certificate " +
          "per principal (deploy/nats); nkeys, .creds files or user/password where a deployment uses them.",
        security: [
          ref("components/securitySchemes/clientCertificate"),
          ref("components/securitySchemes/user"),
        ],
      },
    },
    channels: channelObjects,
    operations: operationObjects,
    components: {
      schemas,
      messages: messageObjects,
      parameters: PARAMETERS,
      securitySchemes: {
        clientCertificate: {
          type: "X509",
          description:
            "TLS client certificate; the server maps its subject DN to the principal (deploy/nats).",
        },
        user: { type: "userPassword", description: "User and password (or token) of the principal." },
      },
    },
    "x-cxlrc-streams": (Object.keys(STREAMS) as Array<keyof typeof STREAMS>).map((k) => ({
      name: STREAMS[k].name,
      subjects: [...STREAMS[k].subjects],
      holds: STREAM_USE[k],
    })),
    "x-cxlrc-buckets": (Object.keys(BUCKETS) as Array<keyof typeof BUCKETS>).map((k) => ({
      name: BUCKETS[k],
      holds: BUCKET_USE[k],
      access: "coordinators only",
    })),
    "x-cxlrc-outcome-kinds": [...OUTCOME_KINDS],
  };
}

function schemaIdOf(schema: z.ZodType): string {
  const named = namedSchemas().find(([s]) => s === schema);
  if (!named) throw new Error("headers schema has no name");
  return named[1];
}

const HEADER = `# The cxlrc bus contract, AsyncAPI 3.0. Generated from the zod schemas in shared/bus by
# \`npx tsx scripts/asyncapi.ts\`: do not edit. test/contract/asyncapi.test.ts fails when it is out of date.
`;

/** docs/asyncapi.yaml as text. */
export function renderAsyncApi(opts: { version: string }): string {
  return HEADER + toYaml(buildAsyncApi(opts), { anchors: SHARED_EXAMPLE_OBJECTS });
}
