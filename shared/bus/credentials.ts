// Bus credentials come from files or the environment, never from code: the TLS CA / client certificate / key
// and the inbox prefix of the principal (shared/bus/permissions.ts: replies are only readable on
// `_INBOX.<name>.>`). In cxlrc's own deployments (deploy/nats) the client certificate is the identity: the
// server maps its subject DN to the user (verify_and_map) and gen-users.ts writes only these. For other
// deployments an nkey seed file, a .creds file or a user/password may be given as well.
//
// Environment (all optional; CXLRC_NATS_CREDENTIALS_FILE names a JSON file with the same fields):
//   CXLRC_NATS_NKEY_SEED_FILE   file holding the user's nkey seed ("SU..."), not readable by others
//   CXLRC_NATS_NKEY_SEED        the seed itself (a Kubernetes secret as env; prefer the file)
//   CXLRC_NATS_CREDS_FILE       NATS .creds file (JWT + seed)
//   CXLRC_NATS_USER, CXLRC_NATS_PASSWORD or CXLRC_NATS_PASSWORD_FILE
//   CXLRC_NATS_TLS_CA_FILE, CXLRC_NATS_TLS_CERT_FILE, CXLRC_NATS_TLS_KEY_FILE
//   CXLRC_NATS_INBOX_PREFIX     e.g. "_INBOX.agent-host-a" (deploy/nats/gen-users.ts writes it per principal)
// Secrets are read when the connection authenticates (so a rotated seed file is picked up on reconnect) and
// never appear in a log line: describeCredentials() is what may be logged.
import { readFileSync, statSync } from "node:fs";
import {
  type Authenticator,
  type ConnectionOptions,
  credsAuthenticator,
  nkeyAuthenticator,
  nkeys,
} from "@nats-io/transport-node";
import { z } from "zod";
import { CxlrcError } from "../errors.ts";

export interface TlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export type BusAuth =
  | { kind: "nkey"; seedFile: string }
  | { kind: "nkey-env"; seed: string }
  | { kind: "creds"; credsFile: string }
  | { kind: "user"; user: string; pass: string };

export interface BusCredentials {
  auth?: BusAuth;
  tls?: TlsFiles;
  inboxPrefix?: string;
  /** Where they came from (environment, a file path): for messages, never secret. */
  source: string;
}

/** Inbox prefixes are subject tokens without wildcards (nats.js appends ".<nuid>"). */
const INBOX_RE = /^_INBOX(\.[A-Za-z0-9_-]+)*$/;

/** The JSON credentials file (CXLRC_NATS_CREDENTIALS_FILE). */
export const CredentialsFile = z
  .strictObject({
    nkeySeedFile: z.string().min(1).optional(),
    credsFile: z.string().min(1).optional(),
    user: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
    tls: z
      .strictObject({
        caFile: z.string().min(1).optional(),
        certFile: z.string().min(1).optional(),
        keyFile: z.string().min(1).optional(),
      })
      .optional(),
    inboxPrefix: z.string().regex(INBOX_RE, '"_INBOX" followed by .token parts').optional(),
  })
  .superRefine((c, ctx) => {
    const n = [c.nkeySeedFile, c.credsFile, c.user].filter((x) => x !== undefined).length;
    if (n > 1) ctx.addIssue({ code: "custom", message: "give one of nkeySeedFile, credsFile, user" });
    if (c.user !== undefined && c.passwordFile === undefined) {
      ctx.addIssue({ code: "custom", path: ["passwordFile"], message: "user needs passwordFile" });
    }
  });
export type CredentialsFile = z.infer<typeof CredentialsFile>;

function bad(message: string, details: Record<string, unknown> = {}): CxlrcError {
  return new CxlrcError("bad-input", message, details);
}

/** A secret file must not be readable or writable by others (like ssh keys). */
export function checkSecretFile(path: string, what: string): void {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (e) {
    throw bad(`${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { path });
  }
  if ((mode & 0o007) !== 0 || (mode & 0o020) !== 0) {
    throw bad(
      `${what} ${path} is accessible to other users (mode ${(mode & 0o777).toString(8)}): chmod 0600 or 0640`,
      { path, mode: (mode & 0o777).toString(8) },
    );
  }
}

function readSecret(path: string, what: string): string {
  checkSecretFile(path, what);
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    throw bad(`${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { path });
  }
}

/** Parse and check a user nkey seed; the error never quotes the seed. */
export function parseUserSeed(seed: string, where: string): Uint8Array {
  const bytes = new TextEncoder().encode(seed.trim());
  try {
    const kp = nkeys.fromSeed(bytes);
    if (!kp.getPublicKey().startsWith("U")) throw new Error("not a user key");
  } catch {
    throw bad(`${where}: not a user nkey seed (expected "SU..." from nk -gen user)`);
  }
  return bytes;
}

/** The public key belonging to a seed file (safe to log). */
export function publicKeyOf(auth: BusAuth): string | null {
  if (auth.kind === "nkey")
    return publicKeyFromSeed(readSecret(auth.seedFile, "nkey seed file"), auth.seedFile);
  if (auth.kind === "nkey-env") return publicKeyFromSeed(auth.seed, "CXLRC_NATS_NKEY_SEED");
  return null;
}

function publicKeyFromSeed(seed: string, where: string): string {
  return nkeys.fromSeed(parseUserSeed(seed, where)).getPublicKey();
}

function fromFields(
  f: {
    nkeySeedFile?: string | undefined;
    nkeySeed?: string | undefined;
    credsFile?: string | undefined;
    user?: string | undefined;
    password?: string | undefined;
    passwordFile?: string | undefined;
    caFile?: string | undefined;
    certFile?: string | undefined;
    keyFile?: string | undefined;
    inboxPrefix?: string | undefined;
  },
  source: string,
): BusCredentials {
  const methods = [
    f.nkeySeedFile !== undefined && "nkey seed file",
    f.nkeySeed !== undefined && "nkey seed",
    f.credsFile !== undefined && "creds file",
    f.user !== undefined && "user",
  ].filter(Boolean);
  if (methods.length > 1) throw bad(`${source}: more than one way to authenticate (${methods.join(", ")})`);
  let auth: BusAuth | undefined;
  if (f.nkeySeedFile !== undefined) {
    // Fail now (missing, readable by others, not a user seed), not at the first connect.
    parseUserSeed(readSecret(f.nkeySeedFile, "nkey seed file"), `nkey seed file ${f.nkeySeedFile}`);
    auth = { kind: "nkey", seedFile: f.nkeySeedFile };
  } else if (f.nkeySeed !== undefined) {
    parseUserSeed(f.nkeySeed, `${source}: CXLRC_NATS_NKEY_SEED`);
    auth = { kind: "nkey-env", seed: f.nkeySeed.trim() };
  } else if (f.credsFile !== undefined) {
    checkSecretFile(f.credsFile, "creds file");
    auth = { kind: "creds", credsFile: f.credsFile };
  } else if (f.user !== undefined) {
    const pass =
      f.passwordFile !== undefined ? readSecret(f.passwordFile, "password file") : (f.password ?? undefined);
    if (pass === undefined || pass === "") throw bad(`${source}: user ${f.user} has no password`);
    auth = { kind: "user", user: f.user, pass };
  } else if (f.password !== undefined || f.passwordFile !== undefined) {
    throw bad(`${source}: a password without a user`);
  }
  const tls: TlsFiles = {
    ...(f.caFile ? { caFile: f.caFile } : {}),
    ...(f.certFile ? { certFile: f.certFile } : {}),
    ...(f.keyFile ? { keyFile: f.keyFile } : {}),
  };
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw bad(`${source}: a TLS client certificate needs both the certificate and the key file`);
  }
  if (tls.keyFile) checkSecretFile(tls.keyFile, "TLS key file");
  if (f.inboxPrefix !== undefined && !INBOX_RE.test(f.inboxPrefix)) {
    throw bad(
      `${source}: inbox prefix ${JSON.stringify(f.inboxPrefix)} must be "_INBOX" followed by .token parts`,
    );
  }
  return {
    ...(auth ? { auth } : {}),
    ...(Object.keys(tls).length > 0 ? { tls } : {}),
    ...(f.inboxPrefix !== undefined ? { inboxPrefix: f.inboxPrefix } : {}),
    source,
  };
}

/** Load a JSON credentials file (see CredentialsFile). */
export function loadCredentialsFile(path: string): BusCredentials {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw bad(`credentials file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
      path,
    });
  }
  const r = CredentialsFile.safeParse(raw);
  if (!r.success) {
    throw bad(
      `credentials file ${path}: ${r.error.issues.map((i) => `${i.path.join(".") || "(file)"}: ${i.message}`).join("; ")}`,
    );
  }
  const c = r.data;
  return fromFields(
    {
      nkeySeedFile: c.nkeySeedFile,
      credsFile: c.credsFile,
      user: c.user,
      passwordFile: c.passwordFile,
      caFile: c.tls?.caFile,
      certFile: c.tls?.certFile,
      keyFile: c.tls?.keyFile,
      inboxPrefix: c.inboxPrefix,
    },
    `credentials file ${path}`,
  );
}

/** Credentials from CXLRC_NATS_* variables; undefined when none is set. */
export function credentialsFromEnv(env: NodeJS.ProcessEnv = process.env): BusCredentials | undefined {
  const v = (k: string) => {
    const x = env[k];
    return x === undefined || x === "" ? undefined : x;
  };
  const file = v("CXLRC_NATS_CREDENTIALS_FILE");
  const fields = {
    nkeySeedFile: v("CXLRC_NATS_NKEY_SEED_FILE"),
    nkeySeed: v("CXLRC_NATS_NKEY_SEED"),
    credsFile: v("CXLRC_NATS_CREDS_FILE"),
    user: v("CXLRC_NATS_USER"),
    password: v("CXLRC_NATS_PASSWORD"),
    passwordFile: v("CXLRC_NATS_PASSWORD_FILE"),
    caFile: v("CXLRC_NATS_TLS_CA_FILE"),
    certFile: v("CXLRC_NATS_TLS_CERT_FILE"),
    keyFile: v("CXLRC_NATS_TLS_KEY_FILE"),
    inboxPrefix: v("CXLRC_NATS_INBOX_PREFIX"),
  };
  const anyField = Object.values(fields).some((x) => x !== undefined);
  if (file !== undefined) {
    if (anyField)
      throw bad("CXLRC_NATS_CREDENTIALS_FILE is set together with other CXLRC_NATS_* credentials");
    return loadCredentialsFile(file);
  }
  return anyField ? fromFields(fields, "environment") : undefined;
}

/** Connection options (authenticator, TLS, inbox prefix) for nats.js. Secrets are read at authentication. */
export function connectionOptions(c: BusCredentials | undefined): Partial<ConnectionOptions> {
  if (!c) return {};
  const out: Partial<ConnectionOptions> = {};
  const a = c.auth;
  if (a) {
    let authenticator: Authenticator | undefined;
    switch (a.kind) {
      case "nkey":
        authenticator = nkeyAuthenticator(() =>
          parseUserSeed(readSecret(a.seedFile, "nkey seed file"), `nkey seed file ${a.seedFile}`),
        );
        break;
      case "nkey-env": {
        const seed = new TextEncoder().encode(a.seed);
        authenticator = nkeyAuthenticator(() => seed);
        break;
      }
      case "creds":
        authenticator = credsAuthenticator(() => {
          checkSecretFile(a.credsFile, "creds file");
          return new Uint8Array(readFileSync(a.credsFile));
        });
        break;
      case "user":
        out.user = a.user;
        out.pass = a.pass;
        break;
    }
    if (authenticator) out.authenticator = authenticator;
  }
  if (c.tls) out.tls = { ...c.tls };
  if (c.inboxPrefix) out.inboxPrefix = c.inboxPrefix;
  return out;
}

/** What may be logged about credentials: kinds, paths and the public key, never a secret. */
export function describeCredentials(c: BusCredentials | undefined): Record<string, unknown> {
  if (!c) return { auth: "none", tls: false };
  const a = c.auth;
  let publicKey: string | null = null;
  try {
    publicKey = a ? publicKeyOf(a) : null;
  } catch {
    publicKey = null;
  }
  return {
    source: c.source,
    auth: a?.kind ?? "none",
    ...(a?.kind === "nkey" ? { seedFile: a.seedFile } : {}),
    ...(a?.kind === "creds" ? { credsFile: a.credsFile } : {}),
    ...(a?.kind === "user" ? { user: a.user } : {}),
    ...(publicKey ? { publicKey } : {}),
    tls: c.tls ? { ca: c.tls.caFile ?? null, cert: c.tls.certFile ?? null } : false,
    ...(c.inboxPrefix ? { inboxPrefix: c.inboxPrefix } : {}),
  };
}
