// The reset request `cxlrc reset` and `cxlrc plan` send: built from the flags, checked by the same zod schema
// the coordinator uses (so a bad value is named here, exit 2, before anything goes on the bus).
import { hostname, userInfo } from "node:os";
import { nuid } from "@nats-io/transport-node";
import { formatZodIssues } from "../../shared/bus/codec.ts";
import { type ResetRequestInput, ResetRequestMessage } from "../../shared/bus/requests.ts";
import {
  checkBdfArg,
  checkHostArg,
  checkScopeArg,
  type Options,
  parseDeadline,
  parseFlags,
  takePositionals,
} from "./args.ts";
import { UsageError } from "./exit.ts";

export const REQUEST_USAGE = `  --scope io|full       io: FLR only, CXL.cache/CXL.mem state must survive; full: CXL Reset, SBR or
                        VFIO reset, the CXL state is rebuilt from the saved image (required)
  --allow-escalation    io on a function without FLR may move to full scope (the plan says so)
  --mem-clear           CXL Reset: clear the device memory (only on a Mem Clr capable device)
  --method cxl|sbr|vfio full scope: the method to use (default: the policy's choice)
  --sibling BDF         SBR: include this function below the same bridge (saved and restored too);
                        repeat for several
  --reason TEXT         why (kept in every event of the request; default names the user and host)
  --request-id ID       idempotency key (default: a new one); re-sending an id does not reset twice
  --deadline WHEN       do not start after this time: a duration from now (10m, 1h) or an ISO time
  --json                machine-readable output (one JSON object per line)`;

export function defaultReason(): string {
  let user = "unknown";
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (containers)
  }
  return `operator request via cxlrc CLI (${user}@${hostname()})`;
}

export function requester(): string {
  let user = "unknown";
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry
  }
  return `cli:${user}@${hostname()}`.slice(0, 128);
}

export function newRequestId(prefix = "cli"): string {
  return `${prefix}-${nuid.next()}`;
}

/** The flags and HOST BDF of `reset` / `plan` (their options: command-table.ts), checked into a request. */
export function parseRequestArgs(command: string, argv: string[], options: Options) {
  const { values, positionals } = parseFlags(command, argv, options);
  const [hostArg, bdfArg] = takePositionals(command, positionals, ["HOST", "BDF"]);
  const host = checkHostArg(hostArg!);
  const bdf = checkBdfArg(bdfArg!);
  const scope = checkScopeArg(values.scope as string | undefined);
  const method = values.method as string | undefined;
  if (method !== undefined && !["cxl", "sbr", "vfio"].includes(method)) {
    throw new UsageError(`bad --method ${JSON.stringify(method)}: cxl, sbr or vfio`);
  }
  if (method !== undefined && scope !== "full") throw new UsageError("--method applies to --scope full only");
  const siblings = ((values.sibling as string[] | undefined) ?? []).map(checkBdfArg);
  const input: ResetRequestInput = {
    requestId: (values["request-id"] as string | undefined) ?? newRequestId(),
    host,
    bdf,
    scope,
    allowEscalation: values["allow-escalation"] === true,
    memClear: values["mem-clear"] === true,
    reason: (values.reason as string | undefined) ?? defaultReason(),
    requester: requester(),
    ...(method ? { method: method as "cxl" | "sbr" | "vfio" } : {}),
    ...(siblings.length > 0 ? { siblings } : {}),
    ...(values.deadline !== undefined ? { deadline: parseDeadline(values.deadline as string) } : {}),
  };
  const checked = ResetRequestMessage.safeParse(input);
  if (!checked.success) throw new UsageError(`bad request: ${formatZodIssues(checked.error)}`);
  return { values: values as Record<string, string | boolean | string[] | undefined>, request: input };
}
