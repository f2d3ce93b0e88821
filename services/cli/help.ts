// Help text shared by several commands: the bus connection block (every bus command's --help and the top-level
// one) and the top-level usage, built from the command table.
import { COMMANDS } from "./command-table.ts";
import { EXIT } from "./exit.ts";

/** The bus flags and every variable they fall back on, in the order they are looked at. */
export const BUS_USAGE = `Bus connection (flags win over variables, variables over the NATS context):
  --server URL          NATS server(s), comma-separated; else $CXLRC_NATS_URL, then $NATS_URL, then the
                        context's url, then nats://127.0.0.1:4222
  --creds FILE          NATS .creds file (JWT + nkey seed); else the CXLRC_NATS_* credentials below, then
                        $NATS_CREDS, then the context's creds, user/password or token
  --context NAME        NATS CLI context $XDG_CONFIG_HOME/nats/context/NAME.json (default ~/.config/nats/...);
                        else $NATS_CONTEXT, else the one selected in nats/context.txt (nats context select).
                        Its url, creds, user, password, token, cert, key, ca and inbox_prefix are used
Environment:
  CXLRC_NATS_URL, NATS_URL             server URL(s)
  NATS_CREDS                           NATS .creds file
  NATS_CONTEXT                         NATS CLI context name
  CXLRC_NATS_CREDS_FILE                NATS .creds file (before NATS_CREDS)
  CXLRC_NATS_NKEY_SEED_FILE            file holding the user's nkey seed (mode 0600)
  CXLRC_NATS_NKEY_SEED                 the nkey seed itself
  CXLRC_NATS_USER                      user, with CXLRC_NATS_PASSWORD or CXLRC_NATS_PASSWORD_FILE
  CXLRC_NATS_TLS_CA_FILE               TLS CA (before the context's ca)
  CXLRC_NATS_TLS_CERT_FILE             TLS client certificate, with CXLRC_NATS_TLS_KEY_FILE (before the
                                       context's cert and key)
  CXLRC_NATS_INBOX_PREFIX              reply inbox prefix, e.g. _INBOX.sre-1 (before inbox_prefix)
  CXLRC_NATS_CREDENTIALS_FILE          a JSON file with all of the CXLRC_NATS_* credentials (alone)`;

export function topUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    "cxlrc: reset coordinator for CXL devices",
    "",
    "Usage: cxlrc [global options] <command> [options]   (cxlrc <command> --help for details)",
    "",
    "Commands:",
    ...lines,
    "",
    "Global options (before or after the command):",
    "  --json                machine-readable output (commands that print results)",
    "  -h, --help            this text; after a command, the command's",
    "  -V, --version         print cxlrc's version",
    "",
    BUS_USAGE,
    "",
    "Durations take a unit: 500ms, 90s, 10m, 1h, 2d. Shell completion: cxlrc completion bash|zsh|fish.",
    `Exit codes: ${EXIT.ok} ok, ${EXIT.failure} operation failed or refused, ${EXIT.usage} bad input (flags, files, config), ${EXIT.unavailable} bus or service unavailable.`,
  ].join("\n");
}
