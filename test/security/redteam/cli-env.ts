// A principal's credentials as the CXLRC_NATS_* environment the real CLI reads (shared/bus/credentials.ts).
import type { BusCredentials } from "../../../shared/bus/credentials.ts";

export function credentialsEnv(c: BusCredentials, url: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { CXLRC_NATS_URL: url };
  const a = c.auth;
  if (a?.kind === "nkey") env.CXLRC_NATS_NKEY_SEED_FILE = a.seedFile;
  else if (a?.kind === "nkey-env") env.CXLRC_NATS_NKEY_SEED = a.seed;
  else if (a?.kind === "creds") env.CXLRC_NATS_CREDS_FILE = a.credsFile;
  else if (a?.kind === "user") throw new TypeError("a user/password principal is not used by these tests");
  if (c.tls?.caFile) env.CXLRC_NATS_TLS_CA_FILE = c.tls.caFile;
  if (c.tls?.certFile) env.CXLRC_NATS_TLS_CERT_FILE = c.tls.certFile;
  if (c.tls?.keyFile) env.CXLRC_NATS_TLS_KEY_FILE = c.tls.keyFile;
  if (c.inboxPrefix) env.CXLRC_NATS_INBOX_PREFIX = c.inboxPrefix;
  return env;
}
