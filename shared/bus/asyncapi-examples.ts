// An example of every message in docs/asyncapi.yaml, taken from a run of the simulator (test/coordinator's
// world) and made uniform: host alpha, device 0000:0d:00.0 below root port 0000:00:03.0, request r-42 (a full
// reset by CXL Reset), coordinator coord-1. test/contract parses each one with its message's zod schema and
// with the document's JSON Schema, so an example that no longer matches fails there.
import type { MessageExample } from "./asyncapi.ts";

const HOST = "alpha";
const BDF = "0000:0d:00.0";
const PORT = "0000:00:03.0";
const COORDINATOR = "coord-1";
const AT_MS = 1_777_887_000_000;
const DEVICE_KEY = "alpha.0000-0d-00-0";
const FENCE = { epoch: 3, owner: COORDINATOR, lease: DEVICE_KEY };

/** The image of the device as the agent saved it for r-42 (shared/image: strict, sealed by its checksum). */
export const IMAGE = {
  version: 1,
  identity: {
    host: "alpha",
    bdf: "0000:0d:00.0",
    vendorId: 32902,
    deviceId: 3475,
    classCode: 1179648,
    serial: null,
    functions: ["0000:0d:00.0"],
  },
  pci: {
    header: [
      "0x0d938086",
      "0x00100002",
      "0x12000001",
      "0x00000010",
      "0x00000004",
      "0x00000020",
      "0x00000000",
      "0x00000000",
      "0x00000000",
      "0x00000000",
      "0x00000000",
      "0x00000000",
      "0x00000000",
      "0x00000040",
      "0x00000000",
      "0x0000010b",
    ],
    pcieCapOffset: 64,
    pcie: {
      devCtl: {
        raw: "0x2837",
        correctableErrorReporting: true,
        nonFatalErrorReporting: true,
        fatalErrorReporting: true,
        unsupportedRequestReporting: false,
        relaxedOrdering: true,
        maxPayloadSize: 1,
        extendedTag: false,
        phantomFunctions: false,
        auxPowerPm: false,
        noSnoop: true,
        maxReadRequestSize: 2,
        initiateFlr: false,
      },
      linkCtl: {
        raw: "0x0000",
        aspmControl: 0,
        readCompletionBoundary: false,
        linkDisable: false,
        retrainLink: false,
        commonClock: false,
        extendedSynch: false,
        clockPm: false,
        hwAutonomousWidthDisable: false,
        bandwidthMgmtIntEnable: false,
        autonomousBandwidthIntEnable: false,
      },
      slotCtl: { raw: "0x0000", slotControl: 0 },
      rootCtl: { raw: "0x0000", rootControl: 0 },
      devCtl2: { raw: "0x0000", completionTimeoutValue: 0, completionTimeoutDisable: false, devCtl2Other: 0 },
      linkCtl2: { raw: "0x0000", targetLinkSpeed: 0, linkCtl2Other: 0 },
    },
  },
  cxl: {
    dvsec: {
      offset: 256,
      revision: 2,
      length: 60,
      registers: {
        capability: {
          raw: "0x09d7",
          cacheCapable: true,
          ioCapable: true,
          memCapable: true,
          memHwInitMode: false,
          hdmCount: 1,
          cacheWbInvCapable: true,
          cxlResetCapable: true,
          cxlResetTimeout: 1,
          cxlResetMemClrCapable: true,
          multipleLogicalDevice: false,
          viralCapable: false,
          pmInitCompletionCapable: false,
        },
        control: {
          raw: "0x0006",
          cacheEnable: false,
          ioEnable: true,
          memEnable: true,
          cacheSfCoverage: 0,
          cacheSfGranularity: 0,
          cacheCleanEviction: false,
          viralEnable: false,
        },
        status: { raw: "0x0000", viralStatus: false },
        control2: {
          raw: "0x0000",
          disableCaching: false,
          initiateCacheWbInv: false,
          initiateCxlReset: false,
          cxlResetMemClrEnable: false,
          desiredVolatileHdmStateAfterHotReset: false,
          modifiedCompletionEnable: false,
        },
        status2: {
          raw: "0x0000",
          cacheInvalid: false,
          cxlResetComplete: false,
          cxlResetError: false,
          volatileHdmPreservationError: false,
          pmInitComplete: false,
        },
        lock: { raw: "0x0000", configLock: false },
        capability2: { raw: "0x0000", cacheSizeUnit: 0, cacheSize: 0 },
        range1SizeHigh: { raw: "0x00000000", memorySizeHigh: 0 },
        range1SizeLow: {
          raw: "0x1000004b",
          memInfoValid: true,
          memActive: true,
          mediaType: 2,
          memoryClass: 2,
          desiredInterleave: 0,
          memActiveTimeout: 0,
          memorySizeLow: 1,
        },
        range1BaseHigh: { raw: "0x00000001", memoryBaseHigh: 1 },
        range1BaseLow: { raw: "0x00000000", memoryBaseLow: 0 },
        range2SizeHigh: { raw: "0x00000000", memorySizeHigh: 0 },
        range2SizeLow: {
          raw: "0x00000000",
          memInfoValid: false,
          memActive: false,
          mediaType: 0,
          memoryClass: 0,
          desiredInterleave: 0,
          memActiveTimeout: 0,
          memorySizeLow: 0,
        },
        range2BaseHigh: { raw: "0x00000000", memoryBaseHigh: 0 },
        range2BaseLow: { raw: "0x00000000", memoryBaseLow: 0 },
      },
    },
    registerLocator: { offset: 320, blocks: [{ bir: 0, blockId: 1, offset: "0x10000" }] },
    component: { bar: 0, offset: 65536 },
    hdm: {
      capabilityOffset: 4352,
      capability: {
        raw: "0x00000001",
        decoderCount: 1,
        targetCount: 0,
        a11to8InterleaveCapable: false,
        a14to12InterleaveCapable: false,
        poisonOnDecodeErrorCapable: false,
        threeSixTwelveWayCapable: false,
        sixteenWayCapable: false,
      },
      decoderCount: 2,
      globalControl: { raw: "0x00000002", poisonOnDecodeErrorEnable: false, hdmDecoderEnable: true },
      decoders: [
        {
          index: 0,
          registers: {
            baseHigh: { raw: "0x00000001", memoryBaseHigh: 1 },
            baseLow: { raw: "0x00000000", memoryBaseLow: 0 },
            sizeHigh: { raw: "0x00000000", memorySizeHigh: 0 },
            sizeLow: { raw: "0x10000000", memorySizeLow: 1 },
            dpaSkipHigh: { raw: "0x00000000", dpaSkipHigh: 0 },
            dpaSkipLow: { raw: "0x00000000", dpaSkipLow: 0 },
            control: {
              raw: "0x00000600",
              interleaveGranularity: 0,
              interleaveWays: 0,
              lockOnCommit: false,
              commit: true,
              committed: true,
              errorNotCommitted: false,
              targetDeviceType: false,
            },
          },
        },
        {
          index: 1,
          registers: {
            baseHigh: { raw: "0x00000000", memoryBaseHigh: 0 },
            baseLow: { raw: "0x00000000", memoryBaseLow: 0 },
            sizeHigh: { raw: "0x00000000", memorySizeHigh: 0 },
            sizeLow: { raw: "0x00000000", memorySizeLow: 0 },
            dpaSkipHigh: { raw: "0x00000000", dpaSkipHigh: 0 },
            dpaSkipLow: { raw: "0x00000000", dpaSkipLow: 0 },
            control: {
              raw: "0x00000000",
              interleaveGranularity: 0,
              interleaveWays: 0,
              lockOnCommit: false,
              commit: false,
              committed: false,
              errorNotCommitted: false,
              targetDeviceType: false,
            },
          },
        },
      ],
    },
    configLock: false,
  },
  takenAt: "2026-05-04T09:30:00.061Z",
  durationMs: 4,
  agentVersion: "0.1.0",
  checksum: "sha256:431e29288d875d62e69c6252c94fe650b7f2e4fcb1ee513510ed79dd43c0d7e6",
};

/** The plan of r-42, as the coordinator published it. */
const PLAN = {
  kind: "plan",
  requestId: "r-42",
  host: "alpha",
  bdf: "0000:0d:00.0",
  requestedScope: "full",
  scope: "full",
  method: "cxl",
  escalated: false,
  escalationReason: null,
  dryRun: false,
  startBy: null,
  functions: ["0000:0d:00.0"],
  targets: ["0000:0d:00.0"],
  siblings: [],
  bridge: null,
  unmaskSbr: false,
  memClear: false,
  cacheFlush: false,
  configLock: "not-set",
  committedDecoders: [0],
  handover: null,
  retainedDecoders: [],
  deadlines: {
    agentCallMs: 2000,
    cacheFlushMs: 0,
    resetWaitMs: 200,
    commitPerDecoderMs: 20,
    phasesMs: {
      gating: 5000,
      savingImage: 2000,
      persistingImage: 15_000,
      regating: 2000,
      quiescing: 2000,
      resetting: 2200,
      awaitingReady: 3000,
      restoring: 2000,
      committingDecoders: 2020,
      verifying: 5000,
      releasing: 5000,
    },
  },
  gates: [
    { gate: "request", passed: true, message: "request names this device" },
    { gate: "quarantine", passed: true, message: "not quarantined" },
    { gate: "deadline", passed: true, message: "no deadline" },
    { gate: "lease", passed: true, message: "no other operation on the device" },
    {
      gate: "method",
      passed: true,
      message: "full scope by cxl",
      details: { scope: "full", method: "cxl", escalated: false },
    },
    { gate: "mem-clear", passed: true, message: "no memory clear asked" },
    { gate: "breaker", passed: true, message: "fleet circuit breaker closed" },
    { gate: "budget", passed: true, message: "999 attempt(s) left in the window" },
    { gate: "device-busy", passed: true, message: "no online memory and no holder" },
    { gate: "siblings", passed: true, message: "cxl does not reach other functions below the bridge" },
    { gate: "host-concurrency", passed: true, message: "below 1 concurrent resets on alpha" },
    { gate: "switch-concurrency", passed: true, message: "not below a switch" },
    { gate: "config-lock", passed: true, message: "CONFIG_LOCK not set", details: { handling: "not-set" } },
  ],
  steps: [
    "gating",
    "savingImage",
    "persistingImage",
    "regating",
    "quiescing",
    "resetting",
    "awaitingReady",
    "restoring",
    "committingDecoders",
    "verifying",
    "releasing",
  ],
  notes: [],
};

/** A brief probe of the device. */
const PROBE = {
  bdf: "0000:0d:00.0",
  vendorId: 32902,
  deviceId: 3475,
  classCode: 1179648,
  flrCapable: true,
  cxl: {
    dvsecOffset: 256,
    cacheCapable: true,
    memCapable: true,
    cxlResetCapable: true,
    cxlResetTimeoutMs: 100,
    cxlResetTimeoutReserved: false,
    memClrCapable: true,
    wbInvCapable: true,
    cacheEnabled: false,
    memEnabled: true,
    configLock: false,
    hdmCount: 1,
    component: { bar: 0, offset: 65536 },
    decoderCount: 2,
  },
  decoders: [
    {
      index: 0,
      base: "0x100000000",
      size: "0x10000000",
      committed: true,
      lockOnCommit: false,
      errorNotCommitted: false,
    },
    { index: 1, base: "0x0", size: "0x0", committed: false, lockOnCommit: false, errorNotCommitted: false },
  ],
  hdmDecoderEnable: true,
  functions: ["0000:0d:00.0"],
  bridge: { bdf: "0000:00:03.0", cxlPort: true, unmaskSbr: false },
  siblings: [],
  holders: [],
  memoryRanges: [{ decoder: 0, start: "0x100000000", end: "0x10fffffff", size: "0x10000000" }],
  resetMethods: ["flr", "bus", "cxl_bus"],
  driver: null,
};

/** The host: one root port, one CXL device. */
const INVENTORY = {
  host: "alpha",
  backend: "sim",
  devices: [
    {
      bdf: "0000:0d:00.0",
      functions: ["0000:0d:00.0"],
      vendorId: 32902,
      deviceId: 3475,
      classCode: 1179648,
      cxl: true,
      cxlFunctions: ["0000:0d:00.0"],
      bridge: "0000:00:03.0",
      siblings: [],
      holders: [],
      resetMethods: ["flr", "bus", "cxl_bus"],
      driver: null,
      iommuGroup: null,
    },
  ],
  bridges: [
    {
      bdf: "0000:00:03.0",
      parent: null,
      secondaryBus: 13,
      subordinateBus: 13,
      cxlPort: true,
      below: ["0000:0d:00.0"],
      driver: "pcieport",
    },
  ],
  functions: [
    {
      bdf: "0000:00:03.0",
      vendorId: 32902,
      deviceId: 3504,
      classCode: 394240,
      headerType: 1,
      multiFunction: false,
      parent: null,
      secondaryBus: 13,
      subordinateBus: 13,
      driver: "pcieport",
      iommuGroup: null,
      resetMethods: [],
    },
    {
      bdf: "0000:0d:00.0",
      vendorId: 32902,
      deviceId: 3475,
      classCode: 1179648,
      headerType: 0,
      multiFunction: false,
      parent: "0000:00:03.0",
      driver: null,
      iommuGroup: null,
      resetMethods: ["flr", "bus", "cxl_bus"],
    },
  ],
  features: ["reset.restore"],
};

const REQUEST = {
  requestId: "r-42",
  host: HOST,
  bdf: BDF,
  scope: "full",
  allowEscalation: false,
  memClear: false,
  reason: "GPU hang",
  dryRun: false,
};
const DRY_PLAN = { ...PLAN, requestId: "r-43", dryRun: true };

/** Written once in the YAML and referred to after that (anchors), by name. */
export const SHARED_EXAMPLE_OBJECTS = new Map<object, string>([
  [IMAGE, "image"],
  [PLAN, "plan"],
  [DRY_PLAN, "dryRunPlan"],
]);
const HOST_BUSY_GATE = {
  gate: "host-concurrency",
  passed: false,
  reason: "host-busy",
  message: "alpha already runs 2 reset(s) (r-40, r-41), the limit is 2; retry in 4000 ms",
  details: { inFlight: ["r-40", "r-41"] },
  retryAfterMs: 4000,
};
const HOST_BUSY = {
  kind: "refusal",
  requestId: "r-44",
  host: HOST,
  bdf: "0000:0e:00.0",
  reason: "host-busy",
  message: HOST_BUSY_GATE.message,
  details: HOST_BUSY_GATE.details,
  retryAfterMs: 4000,
  gates: [
    { gate: "request", passed: true, message: "request names this device" },
    { gate: "quarantine", passed: true, message: "not quarantined" },
    HOST_BUSY_GATE,
  ],
};
const QUARANTINED_REFUSAL = {
  kind: "refusal",
  requestId: "r-45",
  host: HOST,
  bdf: BDF,
  reason: "quarantined",
  message: "0000:0d:00.0 is quarantined: no reset until an operator releases it",
  details: {},
  gates: [],
};
const MISMATCHES = [
  { bdf: BDF, field: "dvsec.control.memEnable", area: "cxl", expected: true, actual: false },
  { bdf: BDF, field: "hdm.hdmGlobalControl.hdmDecoderEnable", area: "cxl", expected: true, actual: false },
  { bdf: BDF, field: "decoder0.control.committed", area: "cxl", expected: true, actual: false },
];
const COMMIT_ERROR = "0000:0d:00.0: decoder 0 reports Error Not Committed";
/** A CXL Reset of the device alone, done and answering again (a reset's reply, without its duration). */
const CXL_RESET_DONE = {
  bdf: BDF,
  target: BDF,
  reached: [BDF],
  method: "cxl",
  details: {
    memClear: false,
    declaredTimeoutMs: 100,
    timeoutReserved: false,
    deadlineMs: 100,
    waitedMs: 100,
    status2: "0x0002",
  },
};
/** A full restore's result (a restore's reply or event, or a reset's that restored). */
const RESTORED = {
  bdf: BDF,
  scope: "full",
  checksum: IMAGE.checksum,
  decoders: [
    { index: 0, action: "committed", decommitted: false },
    { index: 1, action: "programmed", decommitted: false },
  ],
  configLock: false,
  durationMs: 1,
};
/** The same, verified in the same operation (`verify: true`). */
const RESTORED_VERIFIED = {
  ...RESTORED,
  verify: {
    bdf: BDF,
    scope: "full",
    passed: true,
    mismatches: [],
    scopeViolation: false,
    registersChecked: 41,
  },
};
/** The agent's error body for it (a restore's reply, or a reset's restore that stopped there). */
const COMMIT_ERROR_BODY = {
  kind: "commit-error",
  message: COMMIT_ERROR,
  details: { bdf: BDF, decoder: 0, register: "decoder0.control", value: "0x00000a00", waitedMs: 1 },
};
const RESTORE_REPORT = {
  verified: true,
  image: {
    key: DEVICE_KEY,
    revision: 3,
    requestId: "r-42",
    savedAt: "2026-05-04T09:30:00.070Z",
    verifiedAt: "2026-05-04T09:30:00.180Z",
  },
  functions: [
    {
      bdf: BDF,
      decoders: [
        { index: 0, action: "committed" },
        { index: 1, action: "programmed" },
      ],
      passed: true,
      mismatches: [],
    },
  ],
};
const VERIFIED_STAMP = {
  at: "2026-05-04T09:30:00.180Z",
  requestId: "r-42",
  coordinator: COORDINATOR,
  imageKey: DEVICE_KEY,
  imageRevision: 3,
  scope: "full",
  round: 0,
};

const time = (ms: number) => new Date(Date.UTC(2026, 4, 4, 9, 30, 0, ms)).toISOString();

/** A coordinator event of request r-42 (unless told otherwise), at `ms` after the request arrived. */
function coordinatorEvent(
  kind: string,
  ms: number,
  data: Record<string, unknown>,
  o: {
    id?: string;
    requestId?: string | null;
    host?: string;
    bdf?: string | null;
    epoch?: number | null;
  } = {},
) {
  const requestId = o.requestId === undefined ? "r-42" : o.requestId;
  const epoch = o.epoch === undefined ? 3 : o.epoch;
  return {
    v: 1,
    id: o.id ?? `Hq5cPz9cTVbX8mZ0dLr${String(ms).padStart(3, "0")}`,
    time: time(ms),
    source: "coordinator",
    host: o.host ?? HOST,
    bdf: o.bdf === undefined ? BDF : o.bdf,
    kind,
    ...(requestId !== null ? { requestId } : {}),
    ...(epoch !== null ? { epoch } : {}),
    data: { coordinator: COORDINATOR, ...(epoch !== null ? { atMs: AT_MS + ms } : {}), ...data },
  };
}
const outcomeId = (hex: string) => `outcome.${hex.padEnd(32, "0")}`;

/** An agent event of an operation of r-42 (opId), or a host-level one (bdf null, no opId). */
function agentEvent(kind: string, ms: number, data: Record<string, unknown>, opId: string | null, bdf = BDF) {
  return {
    v: 1,
    id: `Jt4wKb2nQeYc7Rs1fUa${String(ms).padStart(3, "0")}`,
    time: time(ms),
    source: "agent",
    host: HOST,
    bdf: opId === null ? null : bdf,
    kind,
    ...(opId !== null ? { opId } : {}),
    data,
  };
}

const one = (name: string, summary: string, payload: unknown): MessageExample => ({ name, summary, payload });
const ok = (result: unknown) => ({ ok: true, result });
const agentOk = (opId: string, result: unknown) => ({ ok: true, opId, result });

const SAVE_OP = "r-42/savingImage/0";
const RESET_OP = "r-42/resetting/0";
const RESTORE_OP = "r-42/restoring/0";
const VERIFIED_EVENT = coordinatorEvent(
  "verified",
  180,
  { outcome: "verified", scope: "full", method: "cxl", repaired: false },
  { id: outcomeId("c30a8700d34103139ff54b3133b26f6e") },
);

/** Examples by message id (components.messages). */
export const EXAMPLES: Record<string, MessageExample[]> = {
  ResetRequest: [
    {
      name: "full-reset",
      summary: "A full reset of one device, published to the request stream.",
      headers: { "Nats-Msg-Id": "r-42" },
      payload: { ...REQUEST, requester: "fleet-ctl-1" },
    },
    {
      name: "selector-dry-run",
      summary: "A dry run for every CXL device of the host.",
      headers: { "Nats-Msg-Id": "r-60" },
      payload: {
        requestId: "r-60",
        host: HOST,
        deviceSelector: { all: true },
        scope: "io",
        reason: "drain",
        dryRun: true,
      },
    },
  ],
  SubmitReply: [
    one(
      "accepted",
      "Written to the stream; the device's actor planned it.",
      ok({
        requestId: "r-42",
        streamSeq: 17,
        queued: false,
        decisions: [
          {
            bdf: BDF,
            requestId: "r-42",
            kind: "plan",
            data: { coordinator: COORDINATOR, atMs: AT_MS + 6, plan: PLAN, request: REQUEST },
          },
        ],
      }),
    ),
    one(
      "duplicate",
      "The same requestId again: nothing new happens; the outcome as this coordinator saw it.",
      ok({
        requestId: "r-42",
        duplicate: true,
        streamSeq: 17,
        outcome: {
          requestId: "r-42",
          host: HOST,
          bdf: BDF,
          outcome: "verified",
          plan: PLAN,
          repaired: false,
          atMs: AT_MS + 180,
        },
      }),
    ),
    one("bad-field", "A field the schema refuses, named.", {
      ok: false,
      error: {
        kind: "bad-input",
        message: 'reset request: field "scope": Invalid option: expected one of "io"|"full"',
        details: {
          fields: ["scope"],
          issues: [
            {
              path: ["scope"],
              code: "invalid_value",
              message: 'Invalid option: expected one of "io"|"full"',
            },
          ],
        },
      },
    }),
  ],
  PlanReply: [
    one(
      "planned",
      "The plan of a dry run.",
      ok({ requestId: "r-43", decisions: [{ bdf: BDF, plan: DRY_PLAN }] }),
    ),
    one(
      "host-busy",
      "Refused: the host's slots are taken; ask again after retryAfterMs.",
      ok({ requestId: "r-44", decisions: [{ bdf: "0000:0e:00.0", refusal: HOST_BUSY }] }),
    ),
  ],
  StatusRequest: [
    one("one-host", "One host's devices.", { host: HOST }),
    one("fleet", "The whole fleet.", {}),
  ],
  StatusReply: [
    one(
      "one-device",
      "A host with one device at rest.",
      ok({
        id: COORDINATOR,
        devices: [
          {
            host: HOST,
            bdf: BDF,
            state: "ready",
            requestId: null,
            leaseHeld: false,
            scopeViolations: 0,
            quarantineReason: null,
            owner: COORDINATOR,
            local: true,
          },
        ],
        states: { ready: 7, quarantined: 1 },
        leasesHeld: [],
        partitionsHeld: [],
        partitionsReleasing: [],
        breaker: {
          status: "closed",
          openedAtMs: null,
          reason: null,
          closedBy: null,
          outcomes: [
            { atMs: AT_MS + 180, failed: false },
            { atMs: AT_MS + 905, failed: true },
          ],
        },
        inFlight: {},
        running: {},
        waiting: 0,
      }),
    ),
  ],
  ImageRequest: [one("image", "The images of one function.", { host: HOST, bdf: BDF })],
  ImageReply: [
    one(
      "verified",
      "The last saved image is also the last known good one.",
      ok({
        v: 1,
        host: HOST,
        bdf: BDF,
        revision: 3,
        savedAt: "2026-05-04T09:30:00.070Z",
        requestId: "r-42",
        opId: "r-42/persistingImage/0",
        coordinator: COORDINATOR,
        image: IMAGE,
        verified: true,
        lastKnownGood: {
          revision: 4,
          savedAt: "2026-05-04T09:30:00.070Z",
          requestId: "r-42",
          opId: "r-42/persistingImage/0",
          verified: VERIFIED_STAMP,
          image: IMAGE,
        },
      }),
    ),
  ],
  ReleaseRequest: [
    one("restore", "Put the last known good image back, verify it, then release.", {
      host: HOST,
      bdf: BDF,
      operator: "sre-1",
      reason: "decoder fixed",
      restore: true,
    }),
  ],
  ReleaseReply: [
    one(
      "released",
      "Restored, verified and released.",
      ok({ host: HOST, bdf: BDF, state: "ready", restore: RESTORE_REPORT }),
    ),
    one("stays-quarantined", "The restore did not verify: the device stays quarantined.", {
      ok: false,
      error: {
        kind: "commit-error",
        message: `0000:0d:00.0 on alpha stays quarantined: release with restore by sre-1: the last known good image (revision 3) did not verify (commit-error: ${COMMIT_ERROR})`,
        details: { bdf: BDF, state: "quarantined" },
      },
    }),
  ],
  BreakerRequest: [
    one("close", "Close the breaker after the cause is fixed.", {
      operator: "sre-1",
      reason: "firmware rolled back",
    }),
  ],
  BreakerReply: [
    one(
      "closed",
      "Closed, by whom and when.",
      ok({
        breaker: {
          status: "closed",
          openedAtMs: null,
          reason: null,
          closedBy: { operator: "sre-1", atMs: AT_MS + 2000 },
          outcomes: [],
        },
      }),
    ),
  ],
  EventsRequest: [
    one("outcomes-since", "The outcomes of one host since a time.", {
      host: HOST,
      kinds: ["verified", "failed", "quarantined", "refused"],
      since: "2026-05-04T09:00:00.000Z",
      max: 100,
    }),
    one("next-batch", "The next batch.", { startSeq: 60 }),
  ],
  EventsReply: [
    one(
      "batch",
      "One event, and where to continue.",
      ok({
        events: [{ seq: 59, subject: "cxlrc.evt.alpha.0000-0d-00-0.verified", event: VERIFIED_EVENT }],
        nextSeq: 60,
        lastSeq: 502,
      }),
    ),
  ],

  InventoryParams: [one("inventory", "List the host.", { opId: "inventory/Vq3Zb8" })],
  InventoryReply: [
    one("one-device", "A root port and the CXL device below it.", agentOk("inventory/Vq3Zb8", INVENTORY)),
  ],
  BindParams: [
    one("hand-back", "Bind the driver the reset took, and verify the device under it.", {
      opId: "r-42/handingBack/0",
      fence: FENCE,
      bdf: BDF,
      driver: "cxl_pci",
      override: null,
      verify: { scope: "full", image: IMAGE },
    }),
  ],
  BindReply: [
    one(
      "bound",
      "Bound again and read back equal to the image.",
      agentOk("r-42/handingBack/0", {
        bdf: BDF,
        driver: "cxl_pci",
        previous: null,
        verify: {
          bdf: BDF,
          scope: "full",
          passed: true,
          mismatches: [],
          scopeViolation: false,
          registersChecked: 27,
        },
      }),
    ),
    one("rebind-failed", "The driver did not bind again.", {
      ok: false,
      opId: "r-42/handingBack/0",
      error: {
        kind: "driver-rebind",
        message: "0000:0d:00.0: driver cxl_pci could not be bound again: probe of cxl_pci failed (-6)",
        details: { bdf: BDF, driver: "cxl_pci" },
        cause: "probe of cxl_pci failed (-6)",
      },
    }),
  ],
  ProbeParams: [
    one("brief", "What a plan needs, without the decoded registers.", {
      opId: "alpha.0000-0d-00-0/facts/1",
      bdf: BDF,
      brief: true,
    }),
  ],
  ProbeReply: [
    one(
      "cxl-device",
      "A CXL Type-2 device with one committed decoder.",
      agentOk("alpha.0000-0d-00-0/facts/1", PROBE),
    ),
  ],
  SaveParams: [one("save", "Save the image before the reset.", { opId: SAVE_OP, fence: FENCE, bdf: BDF })],
  SaveReply: [one("image", "The image.", agentOk(SAVE_OP, IMAGE))],
  QuiesceParams: [
    one("full", "Bus Master off and the cache flushed.", {
      opId: "r-42/quiescing/0",
      fence: FENCE,
      bdf: BDF,
      scope: "full",
    }),
  ],
  QuiesceReply: [
    one(
      "flushed",
      "Quiesced; the cache written back and invalidated.",
      agentOk("r-42/quiescing/0", {
        bdf: BDF,
        scope: "full",
        busMasterWas: true,
        cache: "flushed",
        wbInvInitiated: true,
        durationMs: 12,
      }),
    ),
  ],
  ResetParams: [
    one(
      "cxl-reset",
      "CXL Reset of a device alone: quiesced first, restored and verified after, one operation.",
      {
        opId: RESET_OP,
        fence: FENCE,
        bdf: BDF,
        method: "cxl",
        memClear: false,
        quiesce: { scope: "full" },
        restore: { scope: "full", image: IMAGE, verify: true },
      },
    ),
    one("sbr", "A secondary bus reset of one function among several (each restored in its own operation).", {
      opId: RESET_OP,
      fence: FENCE,
      bdf: BDF,
      method: "sbr",
    }),
  ],
  ResetReply: [
    one(
      "completed",
      "Reset and answering again.",
      agentOk(RESET_OP, {
        ...CXL_RESET_DONE,
        durationMs: 100,
        quiesce: {
          bdf: BDF,
          scope: "full",
          busMasterWas: false,
          cache: "not-needed",
          wbInvInitiated: false,
          durationMs: 0,
        },
        restore: { ok: true, result: RESTORED_VERIFIED },
      }),
    ),
    one(
      "restore-failed",
      "Reset, but the restore after it stopped at a decoder: the operation still succeeds (the reset happened).",
      agentOk(RESET_OP, {
        ...CXL_RESET_DONE,
        durationMs: 101,
        restore: {
          ok: false,
          error: COMMIT_ERROR_BODY,
        },
      }),
    ),
  ],
  RestoreParams: [
    one("full", "Restore everything the image holds and verify in the same operation.", {
      opId: RESTORE_OP,
      fence: FENCE,
      bdf: BDF,
      scope: "full",
      image: IMAGE,
      verify: true,
    }),
  ],
  RestoreReply: [
    one("restored", "Restored, decoders committed, read back equal.", agentOk(RESTORE_OP, RESTORED_VERIFIED)),
    one("commit-error", "A decoder would not commit.", {
      ok: false,
      opId: RESTORE_OP,
      error: COMMIT_ERROR_BODY,
    }),
  ],
  VerifyParams: [
    one("full", "Compare the device with the image.", {
      opId: "r-42/verifying/0",
      fence: FENCE,
      bdf: BDF,
      scope: "full",
      image: IMAGE,
    }),
  ],
  VerifyReply: [
    one(
      "mismatch",
      "A decoder is not committed as the image says.",
      agentOk("r-42/verifying/0", {
        bdf: BDF,
        scope: "full",
        passed: false,
        mismatches: [
          { register: "decoder0.control", field: "committed", expected: true, actual: false, domain: "cxl" },
        ],
        scopeViolation: false,
        registersChecked: 41,
      }),
    ),
  ],
  FaultParams: [
    one("arm", "Arm a fault on a simulated device.", {
      opId: "chaos/17",
      bdf: BDF,
      action: "set",
      fault: { name: "commit-error", decoder: 0 },
    }),
  ],
  FaultReply: [
    one(
      "armed",
      "The device's armed faults.",
      agentOk("chaos/17", { bdf: BDF, faults: [{ name: "commit-error", decoder: 0 }] }),
    ),
  ],
  PingParams: [one("ping", "Is the agent reading its requests?", { opId: "ping-1" })],
  PingReply: [
    one("alive", "It is, running one operation now.", agentOk("ping-1", { host: HOST, inFlight: 1 })),
  ],

  "CoordinatorEvent.request.received": [
    one(
      "received",
      "The device's actor took r-42.",
      coordinatorEvent("request.received", 5, { request: REQUEST }),
    ),
  ],
  "CoordinatorEvent.request.rejected": [
    one(
      "unknown-device",
      "The request names a device the host does not have.",
      coordinatorEvent(
        "request.rejected",
        2,
        {
          error: {
            kind: "bad-input",
            message: "no device 0000:09:00.0 on host alpha",
            details: { fields: ["bdf"], bdf: "0000:09:00.0" },
          },
          streamSeq: 4,
          subject: "cxlrc.req.reset.alpha",
        },
        { id: outcomeId("7f0462a513671242620cd1a8e73bf39a"), requestId: "r-50", bdf: null, epoch: null },
      ),
    ),
  ],
  "CoordinatorEvent.request.duplicate": [
    one(
      "redelivered",
      "The stream delivered r-42 again; it is already taken.",
      coordinatorEvent("request.duplicate", 40, { streamSeq: 17, redelivered: true }, { epoch: null }),
    ),
  ],
  "CoordinatorEvent.request.waiting": [
    one(
      "host-busy",
      "r-49 waits for one of the host's slots.",
      coordinatorEvent(
        "request.waiting",
        3,
        { reason: "host-busy", position: 1, running: ["r-42"] },
        { requestId: "r-49", bdf: "0000:0e:00.0", epoch: null },
      ),
    ),
  ],
  "CoordinatorEvent.plan": [
    one(
      "plan",
      "The plan of r-42: full scope by CXL Reset.",
      coordinatorEvent("plan", 6, { plan: PLAN, request: REQUEST }),
    ),
    one(
      "dry-run",
      "A dry run's answer (its last event).",
      coordinatorEvent(
        "plan",
        4,
        { plan: DRY_PLAN, dryRun: true },
        { id: outcomeId("70ecf836e8cc400ef83bc9d1707b53a7"), requestId: "r-43", epoch: null },
      ),
    ),
  ],
  "CoordinatorEvent.refused": [
    one(
      "quarantined",
      "Refused: the device is quarantined.",
      coordinatorEvent(
        "refused",
        8,
        { outcome: "refused", refusal: QUARANTINED_REFUSAL },
        { id: outcomeId("386ca59a8a26a98538bdb91f1f053b82"), requestId: "r-45", epoch: 9 },
      ),
    ),
    one(
      "host-busy",
      "Refused: the host's slots are taken (retryAfterMs).",
      coordinatorEvent(
        "refused",
        9,
        { outcome: "refused", refusal: HOST_BUSY },
        { id: outcomeId("5be0aa41"), requestId: "r-44", bdf: "0000:0e:00.0", epoch: 4 },
      ),
    ),
  ],
  "CoordinatorEvent.planned": [
    one(
      "planned",
      "A dry run decided by the device's actor.",
      coordinatorEvent(
        "planned",
        7,
        { outcome: "planned", plan: DRY_PLAN },
        { id: outcomeId("9d31c7"), requestId: "r-43" },
      ),
    ),
  ],
  "CoordinatorEvent.verified": [one("verified", "r-42 verified.", VERIFIED_EVENT)],
  "CoordinatorEvent.failed": [
    one(
      "driver-not-back",
      "The reset went through but the driver did not bind again.",
      coordinatorEvent(
        "failed",
        190,
        {
          outcome: "failed",
          error: {
            phase: "handingBack",
            kind: "driver-rebind",
            message:
              "driver cxl_pci not bound again: 0000:0d:00.0: driver cxl_pci could not be bound again: probe of cxl_pci failed (-6)",
          },
          recovered: true,
        },
        { id: outcomeId("f83ba5a961ad4e25aaf3518da864ef8e"), requestId: "r-48", epoch: 16 },
      ),
    ),
  ],
  "CoordinatorEvent.quarantined": [
    one(
      "commit-error",
      "The restore failed twice: quarantined.",
      coordinatorEvent(
        "quarantined",
        95,
        {
          outcome: "quarantined",
          reason: `restore from the image failed 2 time(s): ${COMMIT_ERROR}`,
          error: { phase: "restoring", kind: "commit-error", message: COMMIT_ERROR },
        },
        { id: outcomeId("4ff30591e0dc8264a3e38caa68a0f984"), requestId: "r-46", epoch: 6 },
      ),
    ),
  ],
  "CoordinatorEvent.state.entered": [
    one(
      "resetting",
      "The device entered resetting.",
      coordinatorEvent("state.entered", 40, { state: "resetting" }),
    ),
  ],
  "CoordinatorEvent.image.persisted": [
    one(
      "persisted",
      "The image is stored.",
      coordinatorEvent("image.persisted", 30, { image: { key: DEVICE_KEY, revision: 3 } }),
    ),
  ],
  "CoordinatorEvent.reset.started": [
    one(
      "cxl",
      "CXL Reset of the device.",
      coordinatorEvent("reset.started", 41, {
        scope: "full",
        method: "cxl",
        targets: [BDF],
        memClear: false,
      }),
    ),
  ],
  "CoordinatorEvent.reset.completed": [
    one(
      "cxl",
      "The reset completed.",
      coordinatorEvent("reset.completed", 142, { scope: "full", method: "cxl" }),
    ),
  ],
  "CoordinatorEvent.decoder.committed": [
    one(
      "decoder-0",
      "Decoder 0 committed again.",
      coordinatorEvent("decoder.committed", 160, { decoder: { bdf: BDF, index: 0, retained: false } }),
    ),
  ],
  "CoordinatorEvent.verify.passed": [
    one(
      "passed",
      "Read back equal to the image.",
      coordinatorEvent("verify.passed", 179, {
        scope: "full",
        round: 0,
        result: { passed: true, mismatches: [] },
      }),
    ),
  ],
  "CoordinatorEvent.verify.failed": [
    one(
      "hdm-cleared",
      "An FLR cleared HDM state.",
      coordinatorEvent(
        "verify.failed",
        70,
        { scope: "io", round: 0, mismatches: MISMATCHES },
        { requestId: "r-47", epoch: 5 },
      ),
    ),
  ],
  "CoordinatorEvent.scope.violation": [
    one(
      "flr-cleared-hdm",
      "The io-scope reset reached CXL state: repaired by a full restore next.",
      coordinatorEvent(
        "scope.violation",
        71,
        { fields: MISMATCHES, count: 1 },
        { requestId: "r-47", epoch: 5 },
      ),
    ),
  ],
  "CoordinatorEvent.step.failed": [
    one(
      "restore",
      "The restore failed; it is tried once more.",
      coordinatorEvent(
        "step.failed",
        80,
        { phase: "restoring", error: { kind: "commit-error", message: COMMIT_ERROR }, willRetry: true },
        { requestId: "r-46", epoch: 6 },
      ),
    ),
  ],
  "CoordinatorEvent.driver.rebound": [
    one(
      "rebound",
      "cxl_pci is back and the device verified under it.",
      coordinatorEvent("driver.rebound", 178, {
        drivers: { [BDF]: "cxl_pci" },
        verify: { passed: true, mismatches: [] },
      }),
    ),
  ],
  "CoordinatorEvent.driver.rebind-failed": [
    one(
      "rebind-failed",
      "cxl_pci did not bind again.",
      coordinatorEvent(
        "driver.rebind-failed",
        189,
        {
          drivers: { [BDF]: "cxl_pci" },
          error: {
            kind: "driver-rebind",
            message: "0000:0d:00.0: driver cxl_pci could not be bound again: probe of cxl_pci failed (-6)",
          },
        },
        { requestId: "r-48", epoch: 16 },
      ),
    ),
  ],
  "CoordinatorEvent.released": [
    one(
      "restored",
      "Released after its last known good image was restored and verified.",
      coordinatorEvent(
        "released",
        900,
        { operator: "sre-1", reason: "decoder fixed", restore: RESTORE_REPORT },
        { requestId: null, epoch: 7 },
      ),
    ),
  ],
  "CoordinatorEvent.release.failed": [
    one(
      "not-verified",
      "The restore did not verify: still quarantined.",
      coordinatorEvent(
        "release.failed",
        850,
        {
          operator: "sre-1",
          reason: "try",
          quarantineReason: `release with restore by sre-1: the last known good image (revision 3) did not verify (commit-error: ${COMMIT_ERROR})`,
          restore: {
            ...RESTORE_REPORT,
            verified: false,
            functions: [{ bdf: BDF, decoders: [], passed: false, mismatches: [] }],
            error: { kind: "commit-error", message: COMMIT_ERROR },
          },
        },
        { requestId: null, epoch: null },
      ),
    ),
  ],
  "CoordinatorEvent.lease.lost": [
    one(
      "renew-failed",
      "The coordinator could not renew the device's lease.",
      coordinatorEvent("lease.lost", 60, { reason: "renew-failed" }, { requestId: null, epoch: null }),
    ),
  ],
  "CoordinatorEvent.recovered": [
    one("taken-over", "coord-2 continues r-42 after coord-1 died mid-reset.", {
      ...coordinatorEvent(
        "recovered",
        2500,
        { state: "restoring", previousOwner: COORDINATOR },
        { epoch: null },
      ),
      data: { coordinator: "coord-2", state: "restoring", previousOwner: COORDINATOR },
    }),
  ],
  "CoordinatorEvent.breaker.closed": [
    one(
      "closed",
      "An operator closed the breaker.",
      coordinatorEvent(
        "breaker.closed",
        2000,
        { operator: "sre-1", reason: "firmware rolled back" },
        { host: "_coordinator", bdf: null, requestId: null, epoch: null },
      ),
    ),
  ],

  "AgentEvent.agent.started": [
    one(
      "started",
      "The agent serves.",
      agentEvent("agent.started", 0, { version: "0.1.0", backend: "sysfs", devices: 1 }, null),
    ),
  ],
  "AgentEvent.agent.stopped": [
    one("stopped", "The agent stopped.", agentEvent("agent.stopped", 999, { uptimeMs: 86_400_000 }, null)),
  ],
  "AgentEvent.heartbeat": [
    one(
      "heartbeat",
      "Alive.",
      agentEvent(
        "heartbeat",
        1,
        { host: HOST, version: "0.1.0", devices: 1, inFlight: 0, uptimeMs: 5000 },
        null,
      ),
    ),
  ],
  "AgentEvent.op.started": [
    one(
      "reset",
      "The reset operation began.",
      agentEvent(
        "op.started",
        41,
        { op: "reset", params: { bdf: BDF, method: "cxl", quiesce: { scope: "full" } } },
        RESET_OP,
      ),
    ),
  ],
  "AgentEvent.op.completed": [
    one(
      "restore",
      "The restore operation ended, with its result.",
      agentEvent(
        "op.completed",
        170,
        {
          op: "restore",
          durationMs: 2.1,
          result: RESTORED,
        },
        RESTORE_OP,
      ),
    ),
  ],
  "AgentEvent.op.failed": [
    one(
      "commit-error",
      "The restore operation failed.",
      agentEvent(
        "op.failed",
        80,
        {
          op: "restore",
          durationMs: 0.7,
          error: {
            kind: "commit-error",
            message: COMMIT_ERROR,
            details: { bdf: BDF, decoder: 0, register: "decoder0.control", value: "0x00000a00" },
          },
        },
        "r-46/restoring/0",
      ),
    ),
  ],
  "AgentEvent.image.saved": [
    one(
      "saved",
      "The image is saved.",
      agentEvent(
        "image.saved",
        25,
        { checksum: IMAGE.checksum, cxl: true, decoders: 2, durationMs: 4 },
        SAVE_OP,
      ),
    ),
  ],
  "AgentEvent.kernel-view.differs": [
    one(
      "differs",
      "The kernel's decoder view disagrees with the BAR.",
      agentEvent(
        "kernel-view.differs",
        20,
        { differences: ["decoder 0 size: kernel 0x20000000, BAR 0x10000000"] },
        SAVE_OP,
      ),
    ),
  ],
  "AgentEvent.driver.bound": [
    one(
      "bound",
      "A driver was bound.",
      agentEvent("driver.bound", 175, { driver: "cxl_pci", previous: null }, "r-42/handingBack/0"),
    ),
  ],
  "AgentEvent.driver.unbound": [
    one(
      "unbound",
      "The driver was taken for the reset.",
      agentEvent("driver.unbound", 22, { driver: "cxl_pci", override: null }, SAVE_OP),
    ),
  ],
  "AgentEvent.driver.rebound": [
    one(
      "rebound",
      "The driver is back.",
      agentEvent("driver.rebound", 176, { driver: "cxl_pci", override: null }, "r-42/handingBack/0"),
    ),
  ],
  "AgentEvent.quiesce.bus-master-off": [
    one(
      "off",
      "Bus Master cleared.",
      agentEvent("quiesce.bus-master-off", 42, { busMasterWas: true }, RESET_OP),
    ),
  ],
  "AgentEvent.quiesce.completed": [
    one(
      "completed",
      "Quiesced.",
      agentEvent("quiesce.completed", 55, { scope: "full", cache: "flushed", durationMs: 12 }, RESET_OP),
    ),
  ],
  "AgentEvent.cache.flush-started": [
    one(
      "started",
      "Write-back and invalidate initiated.",
      agentEvent("cache.flush-started", 43, { wbInvInitiated: true }, RESET_OP),
    ),
  ],
  "AgentEvent.cache.flushed": [
    one(
      "flushed",
      "Cache Invalid read back set.",
      agentEvent("cache.flushed", 54, { waitedMs: 11, reads: 4 }, RESET_OP),
    ),
  ],
  "AgentEvent.cache.flush-timeout": [
    one(
      "timeout",
      "Cache Invalid never set.",
      agentEvent("cache.flush-timeout", 1043, { waitedMs: 1000, status2: "0x0000" }, RESET_OP),
    ),
  ],
  "AgentEvent.reset.started": [
    one("cxl", "The reset began.", agentEvent("reset.started", 56, { method: "cxl" }, RESET_OP)),
  ],
  "AgentEvent.reset.initiated": [
    one(
      "cxl",
      "Initiate CXL Reset written.",
      agentEvent(
        "reset.initiated",
        57,
        { method: "cxl", memClear: false, declaredTimeoutMs: 100, deadlineMs: 100 },
        RESET_OP,
      ),
    ),
    one(
      "sbr",
      "Secondary Bus Reset set on the bridge.",
      agentEvent(
        "reset.initiated",
        57,
        { method: "sbr", bridge: PORT, unmaskSbrWas: false, functions: [BDF] },
        RESET_OP,
      ),
    ),
  ],
  "AgentEvent.reset.transactions-pending": [
    one(
      "pending",
      "Transactions Pending did not clear before the FLR.",
      agentEvent("reset.transactions-pending", 50, { waitedMs: 100 }, RESET_OP),
    ),
  ],
  "AgentEvent.reset.timeout-reserved": [
    one(
      "reserved",
      "The device declares a reserved CXL Reset timeout: the longest is used.",
      agentEvent(
        "reset.timeout-reserved",
        56,
        { register: "dvsec.capability", value: "0x0bd7", code: 5, usingMs: 100_000 },
        RESET_OP,
      ),
    ),
  ],
  "AgentEvent.reset.disable-caching-unreachable": [
    one(
      "unreachable",
      "Control2 read all-ones after the reset.",
      agentEvent(
        "reset.disable-caching-unreachable",
        140,
        { register: "dvsec.control2", value: "0xffff" },
        RESET_OP,
      ),
    ),
  ],
  "AgentEvent.reset.functions-answered": [
    one(
      "answered",
      "The functions below the bridge answered after SBR.",
      agentEvent(
        "reset.functions-answered",
        140,
        { bridge: PORT, reached: [BDF], unreached: [], behindBridges: [] },
        RESET_OP,
      ),
    ),
  ],
  "AgentEvent.reset.completed": [
    one(
      "cxl",
      "The reset completed.",
      agentEvent(
        "reset.completed",
        141,
        { method: "cxl", durationMs: 100, target: BDF, reached: [BDF] },
        RESET_OP,
      ),
    ),
  ],
  "AgentEvent.reset.failed": [
    one(
      "timeout",
      "CXL Reset Complete never set.",
      agentEvent(
        "reset.failed",
        1100,
        { method: "cxl", durationMs: 1000, kind: "reset-timeout", bdf: BDF },
        RESET_OP,
      ),
    ),
  ],
  "AgentEvent.restore.started": [
    one(
      "full",
      "The restore began.",
      agentEvent("restore.started", 150, { scope: "full", checksum: IMAGE.checksum }, RESTORE_OP),
    ),
  ],
  "AgentEvent.restore.dvsec": [
    one(
      "dvsec",
      "DVSEC Control and Range Base written.",
      agentEvent("restore.dvsec", 152, { configLocked: false }, RESTORE_OP),
    ),
  ],
  "AgentEvent.restore.completed": [
    one(
      "full",
      "The restore completed.",
      agentEvent("restore.completed", 161, { scope: "full", durationMs: 1, decoders: 2 }, RESTORE_OP),
    ),
  ],
  "AgentEvent.restore.failed": [
    one(
      "commit-error",
      "The restore failed.",
      agentEvent(
        "restore.failed",
        79,
        {
          scope: "full",
          kind: "commit-error",
          bdf: BDF,
          decoder: 0,
          register: "decoder0.control",
          value: "0x00000a00",
          waitedMs: 1,
        },
        "r-46/restoring/0",
      ),
    ),
  ],
  "AgentEvent.decoder.retained": [
    one(
      "retained",
      "A locked decoder kept through CXL Reset.",
      agentEvent(
        "decoder.retained",
        155,
        { decoder: 1, register: "decoder1.control", value: "0x00000700" },
        RESTORE_OP,
      ),
    ),
  ],
  "AgentEvent.decoder.decommitted": [
    one(
      "decommitted",
      "A decoder cleared before it is written.",
      agentEvent("decoder.decommitted", 156, { decoder: 0, waitedMs: 1 }, RESTORE_OP),
    ),
  ],
  "AgentEvent.decoder.committed": [
    one(
      "committed",
      "Decoder 0 committed.",
      agentEvent(
        "decoder.committed",
        158,
        { decoder: 0, base: "0x0000000100000000", size: "0x0000000010000000", waitedMs: 1 },
        RESTORE_OP,
      ),
    ),
  ],
  "AgentEvent.verify.completed": [
    one(
      "passed",
      "Read back equal.",
      agentEvent(
        "verify.completed",
        162,
        { scope: "full", passed: true, mismatches: 0, scopeViolation: false },
        RESTORE_OP,
      ),
    ),
  ],

  ImageRecord: [
    one("saved", "The image r-42 saved.", {
      v: 1,
      host: HOST,
      bdf: BDF,
      images: { [BDF]: IMAGE },
      savedAt: "2026-05-04T09:30:00.070Z",
      requestId: "r-42",
      opId: "r-42/persistingImage/0",
      coordinator: COORDINATOR,
    }),
  ],
  VerifiedImageRecord: [
    one("last-known-good", "The image r-42's verify passed on.", {
      v: 1,
      host: HOST,
      bdf: BDF,
      images: { [BDF]: IMAGE },
      savedAt: "2026-05-04T09:30:00.070Z",
      requestId: "r-42",
      opId: "r-42/persistingImage/0",
      coordinator: COORDINATOR,
      verified: VERIFIED_STAMP,
    }),
  ],
  ActorRecord: [
    one("ready", "A device at rest (the snapshot shortened).", {
      v: 1,
      host: HOST,
      bdf: BDF,
      owner: COORDINATOR,
      savedAt: "2026-05-04T09:30:00.200Z",
      state: "ready",
      active: false,
      snapshot: { status: "active", value: "ready", historyValue: {}, context: { host: HOST, bdf: BDF } },
      requests: ["r-41", "r-42"],
    }),
  ],
  DecisionRecord: [
    one("refused-outside", "Refused while another coordinator drives the device.", {
      v: 1,
      requestId: "r-52",
      host: HOST,
      bdf: BDF,
      event: {
        id: outcomeId("0b7d2e"),
        kind: "refused",
        data: {
          outcome: "refused",
          refusal: {
            kind: "refusal",
            requestId: "r-52",
            host: HOST,
            bdf: BDF,
            reason: "in-progress",
            message: "0000:0d:00.0 is being reset by another coordinator (coord-2)",
            details: {},
            gates: [],
          },
          atMs: AT_MS + 3000,
        },
      },
      coordinator: COORDINATOR,
      at: "2026-05-04T09:30:03.000Z",
    }),
  ],
  LeaseRecord: [
    one("held", "coord-1 drives the device.", {
      owner: COORDINATOR,
      instance: "Kp2mWq7Rt5Yx",
      acquiredAt: AT_MS + 5,
      renewedAt: AT_MS + 4005,
    }),
  ],
};
