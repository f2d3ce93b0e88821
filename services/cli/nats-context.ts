// NATS CLI contexts (`nats context save NAME ...`): $XDG_CONFIG_HOME/nats/context/NAME.json (default
// ~/.config/nats/...), chosen by --context NAME, else $NATS_CONTEXT, else the one `nats context select` wrote to
// nats/context.txt. cxlrc takes the fields below and ignores the others (nsc, jetstream_domain...).
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { CxlrcError } from "../../shared/errors.ts";
import { UsageError } from "./exit.ts";
import { cannotRead, readJsonFile } from "./files.ts";

export interface NatsContext {
  name: string;
  /** The context file it came from (for messages). */
  file: string;
  url?: string;
  creds?: string;
  user?: string;
  password?: string;
  token?: string;
  cert?: string;
  key?: string;
  ca?: string;
  inboxPrefix?: string;
}

/** Context file field → NatsContext field. */
const FIELDS = {
  url: "url",
  creds: "creds",
  user: "user",
  password: "password",
  token: "token",
  cert: "cert",
  key: "key",
  ca: "ca",
  inbox_prefix: "inboxPrefix",
} as const;
const FILE_FIELDS = new Set(["creds", "cert", "key", "ca"]);

export function natsConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "nats");
}

/** The selected context's name: the flag, $NATS_CONTEXT, or nats/context.txt; null when none is. */
export function selectedContextName(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string | null {
  if (flag !== undefined) return flag;
  if (env.NATS_CONTEXT) return env.NATS_CONTEXT;
  const file = join(natsConfigDir(env), "context.txt");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw cannotRead(file, e);
  }
  const name = text.trim();
  return name === "" ? null : name;
}

/** The selected context, read and checked; null when none is selected. */
export function loadNatsContext(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): NatsContext | null {
  const name = selectedContextName(flag, env);
  if (name === null) return null;
  if (!/^[A-Za-z0-9_.@-]+$/.test(name) || name.startsWith(".")) {
    throw new UsageError(`bad context name ${JSON.stringify(name)}: letters, digits, '.', '-', '_' or '@'`);
  }
  const file = join(natsConfigDir(env), "context", `${name}.json`);
  const raw = readJsonFile(file);
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new CxlrcError("bad-input", `${file}: expected a JSON object (a NATS context)`, { path: file });
  }
  const ctx: NatsContext = { name, file };
  for (const [key, field] of Object.entries(FIELDS)) {
    const v = (raw as Record<string, unknown>)[key];
    if (v === undefined || v === null || v === "") continue;
    if (typeof v !== "string") {
      throw new CxlrcError("bad-input", `${file}: "${key}" must be a string`, { path: file, field: key });
    }
    ctx[field] = FILE_FIELDS.has(field) ? expandHome(v) : v;
  }
  return ctx;
}

/** "~/x" as the NATS CLI reads it. */
function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}
