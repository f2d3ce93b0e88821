// The coordinator's configuration file (`cxlrc serve coordinator --config coordinator.json`). Strict: an
// unknown key is an error naming it, so a misspelt limit never silently falls back to its default.
import { readFileSync } from "node:fs";
import { z } from "zod";
import { DEFAULT_POLICY, type Policy } from "../../machines/policy/defaults.ts";
import { formatZodIssues } from "../../shared/bus/codec.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { LOG_LEVELS } from "../../shared/log.ts";

/** The policy's yes/no settings; every other key is a number. */
const POLICY_FLAGS = new Set<string>(["quarantineUnbound"]);

/** Overrides of DEFAULT_POLICY: every key the policy has, of its type; anything else is refused by name. */
export const PolicyOverrides = z.strictObject(
  Object.fromEntries(
    Object.keys(DEFAULT_POLICY).map((k) => [
      k,
      POLICY_FLAGS.has(k)
        ? z.boolean().optional()
        : k === "breakerFailureRatio"
          ? z.number().min(0).max(1).optional()
          : z.number().nonnegative().optional(),
    ]),
  ) as {
    [K in keyof Policy]: Policy[K] extends boolean ? z.ZodOptional<z.ZodBoolean> : z.ZodOptional<z.ZodNumber>;
  },
);

/** Defaults of the control endpoints' limits: far above what an operator, the CLI or a fleet controller sends. */
export const CONTROL_LIMITS_DEFAULT = {
  maxBytes: 64 * 1024,
  perRequesterPerSec: 100,
  perRequesterBurst: 200,
  globalPerSec: 1000,
  globalBurst: 2000,
} as const;

/** Limits of the request/reply control endpoints cxlrc.ctl.* (services/coordinator/intake.ts). */
export const ControlLimits = z.strictObject({
  /** Largest control message accepted (bytes); a larger one gets an error reply naming both sizes. */
  maxBytes: z
    .number()
    .int()
    .min(1024)
    .max(8 * 1024 * 1024)
    .default(CONTROL_LIMITS_DEFAULT.maxBytes),
  /** Sustained control requests per second per caller (the authenticated principal the server names). */
  perRequesterPerSec: z.number().positive().max(1_000_000).default(CONTROL_LIMITS_DEFAULT.perRequesterPerSec),
  /** Requests a requester may send at once after a quiet period. */
  perRequesterBurst: z.number().int().min(1).max(1_000_000).default(CONTROL_LIMITS_DEFAULT.perRequesterBurst),
  /** Sustained control requests per second of every requester together. */
  globalPerSec: z.number().positive().max(1_000_000).default(CONTROL_LIMITS_DEFAULT.globalPerSec),
  globalBurst: z.number().int().min(1).max(1_000_000).default(CONTROL_LIMITS_DEFAULT.globalBurst),
});
export type ControlLimits = z.output<typeof ControlLimits>;

export const CoordinatorConfig = z.strictObject({
  /** Stable id of this coordinator (lease owner, event source). Unique per live process. */
  id: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9_-]+$/, "letters, digits, '-' or '_'"),
  nats: z.strictObject({
    servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    credsFile: z.string().min(1).optional(),
    user: z.string().optional(),
    pass: z.string().optional(),
    token: z.string().optional(),
    timeoutMs: z.number().int().positive().default(5000),
  }),
  /** Lease time of a partition (a host; the leases bucket's max age); renewed every quarter of it. */
  leaseTtlMs: z.number().int().min(500).max(600_000).default(15_000),
  /** How long a host's lease is kept after its last device driven here rests (0: given back at once). */
  partitionLingerMs: z.number().int().min(0).max(60_000).default(250),
  /** JetStream replicas of buckets and streams (1 single server, 3 on a 3-node cluster). */
  replicas: z.number().int().min(1).max(5).default(1),
  /** Prometheus endpoint: port (0 = any free port), null = off. */
  metrics: z
    .strictObject({
      port: z.number().int().min(0).max(65535).nullable().default(9464),
      host: z.string().min(1).default("127.0.0.1"),
    })
    .default({ port: 9464, host: "127.0.0.1" }),
  /** Hosts whose devices are discovered (agent inventory) at start; others appear with their first request. */
  hosts: z.array(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/)).default([]),
  /** Size and rate limits of the control endpoints (cxlrc.ctl.*). */
  control: ControlLimits.default({ ...CONTROL_LIMITS_DEFAULT }),
  /** Overrides of machines/policy DEFAULT_POLICY (limits, timeouts: names carry their unit). */
  policy: PolicyOverrides.default({}),
  logLevel: z.enum(LOG_LEVELS).default("info"),
});
export type CoordinatorConfig = z.output<typeof CoordinatorConfig>;
export type CoordinatorConfigInput = z.input<typeof CoordinatorConfig>;

/** Parse a config object; CxlrcError("bad-input") naming every bad or unknown key. */
export function parseCoordinatorConfig(raw: unknown, where = "coordinator config"): CoordinatorConfig {
  const r = CoordinatorConfig.safeParse(raw);
  if (!r.success) throw new CxlrcError("bad-input", `${where}: ${formatZodIssues(r.error)}`);
  return r.data;
}

export function loadCoordinatorConfig(path: string): CoordinatorConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CxlrcError("bad-input", `cannot read coordinator config ${path}`, { path }, { cause: e });
  }
  return parseCoordinatorConfig(raw, path);
}
