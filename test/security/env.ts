// The security tests' world: a throwaway test CA (deploy/tls/make-test-ca.sh), the accounts file
// (deploy/nats/gen-users.ts: accounts, exports and imports, one user per principal keyed by its certificate's
// subject DN), and a real nats-server started with the deploy configuration (deploy/nats/nats-server.conf, or
// nats-cluster.conf for three nodes) whose absolute paths are rebased into a temp dir. Nothing else in the
// configuration is changed: TLS with client certificates bound to their user (verify_and_map) is on, and only
// the generated users exist, plus one test-only "witness" user per account that may subscribe to everything in
// its account and publish nothing, so a test can see whether a denied message went anywhere. The harness
// passes `-m` (a monitoring port on loopback) for its own checks; the deploy configs have none.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  connect,
  type NatsConnection,
  errors as natsErrors,
  type PermissionViolationError,
} from "@nats-io/transport-node";
import { generate } from "../../deploy/nats/gen-users.ts";
import { connectBus } from "../../shared/bus/client.ts";
import type { BusCredentials } from "../../shared/bus/credentials.ts";
import {
  ACCOUNTS,
  type AccountName,
  certDn,
  inboxPrefix,
  type Roster,
  renderAccountsConf,
  TEST_CERT_DN,
} from "../../shared/bus/permissions.ts";
import { type Logger, silentLogger } from "../../shared/log.ts";
import {
  findFreePort,
  type ServerSpec,
  type Spawned,
  spawnOnFreePorts as spawnFree,
} from "../../shared/natsd/server.ts";

/**
 * Spawn a nats-server on `count` free ports (`spec` builds its command from them), `env` added to its
 * environment (shared/natsd/server.ts spawnOnFreePorts picks the ports afresh when another test's server took
 * one in between).
 */
export async function spawnOnFreePorts(
  count: number,
  env: Record<string, string>,
  spec: (ports: number[]) => ServerSpec,
): Promise<{ s: Spawned; ports: number[] }> {
  const { spawned, ports } = await spawnFree(count, (p) => ({ ...spec(p), env }));
  return { s: spawned, ports };
}

export const REPO = new URL("../../", import.meta.url).pathname;
export const DEPLOY = join(REPO, "deploy");

/** Runs deploy/tls/make-test-ca.sh (the script deployments use for test certificates). */
export function makeTestCa(dir: string, clients: string[]): void {
  execFileSync("sh", [join(DEPLOY, "tls/make-test-ca.sh"), dir, ...clients], { stdio: "pipe" });
}

/**
 * A deploy config with its absolute paths moved into `dir`: TLS files (/etc/cxlrc/tls → dir/tls), the
 * JetStream store (/var/lib/cxlrc/nats → dir/js). Each replaced path must be present, so a renamed path in
 * the deploy file fails here instead of silently testing something else.
 */
export function rebaseConfig(text: string, dir: string, extra: Array<[string, string]> = []): string {
  const pairs: Array<[string, string]> = [
    ["/etc/cxlrc/tls/", `${dir}/tls/`],
    ["/var/lib/cxlrc/nats", `${dir}/js`],
    ...extra,
  ];
  let out = text;
  for (const [from, to] of pairs) {
    if (!out.includes(from)) throw new Error(`deploy config has no ${JSON.stringify(from)} to rebase`);
    out = out.split(from).join(to);
  }
  return out;
}

export interface Conn {
  nc: NatsConnection;
  /** Permission violations the server reported on this connection, in order. */
  violations: PermissionViolationError[];
}

export interface SecureBus {
  dir: string;
  url: string;
  /** Client URLs of every node (one for a single server). */
  urls: string[];
  /** Monitoring (http) URLs of every node, same order. */
  monitorUrls: string[];
  roster: Roster;
  /** principal name → its certificate's subject DN (its user in accounts.conf) */
  dns: Record<string, string>;
  tlsDir: string;
  /** A principal's TLS files and inbox prefix (the certificate is the identity: no nkey, no password). */
  credentials(name: string): BusCredentials;
  /** Connect as a principal (its client certificate, its inbox prefix). */
  connectAs(name: string, opts?: { log?: Logger; url?: string }): Promise<Conn>;
  /** The test-only witness of account CXLRC: subscribes to anything there, publishes nothing. */
  witness: NatsConnection;
  /** One such witness per account (witnesses.CXLRC is `witness`). */
  witnesses: Record<AccountName, NatsConnection>;
  logs(): string;
  stop(): Promise<void>;
}

const WITNESS = "witness";
/** The witness of an account: "witness" in CXLRC, "witness-<account>" elsewhere. */
export function witnessName(account: AccountName): string {
  return account === "CXLRC" ? WITNESS : `${WITNESS}-${account.toLowerCase()}`;
}

function watch(nc: NatsConnection): PermissionViolationError[] {
  const out: PermissionViolationError[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error" && s.error instanceof natsErrors.PermissionViolationError) out.push(s.error);
    }
  })().catch(() => undefined);
  return out;
}

interface Node {
  url: string;
  monitorUrl: string;
  kill(): Promise<void>;
}

/**
 * Start the deploy configuration on loopback: `nodes` = 1 uses nats-server.conf, 3 uses nats-cluster.conf
 * (routes moved to loopback ports, node names from NATS_SERVER_NAME as in compose).
 */
export async function startSecureBus(roster: Roster, opts: { nodes?: 1 | 3 } = {}): Promise<SecureBus> {
  const nodes = opts.nodes ?? 1;
  const dir = mkdtempSync(join(tmpdir(), "cxlrc-sec-"));
  const tlsDir = join(dir, "tls");
  const natsDir = join(dir, "nats");
  const names = roster.principals.map((p) => p.name);
  const witnessNames = ACCOUNTS.map(witnessName);
  makeTestCa(tlsDir, [...names, ...witnessNames]);
  const dns = generate(roster, natsDir, { tlsDir });
  // The witnesses are test oracles, not roles: rendered into the accounts file here only.
  const accounts = renderAccountsConf(roster, {
    header: "# TEST ONLY: the generated accounts plus one witness per account.\n",
    extraUsers: ACCOUNTS.map((account) => ({
      comment: `TEST ONLY witness of ${account}`,
      account,
      dn: certDn(TEST_CERT_DN, witnessName(account)),
      permissions: {
        publish: { allow: [], deny: [">"] },
        subscribe: { allow: [">"], deny: [] },
        responses: null,
      },
    })),
  });

  let logText = "";
  const onLog = (s: string) => {
    logText = (logText + s).slice(-200_000);
  };
  const started: Node[] = [];
  const ordered: Node[] = [];
  const spawnNode = async (confText: string, nodeDir: string, env: Record<string, string>): Promise<Node> => {
    mkdirSync(nodeDir, { recursive: true });
    writeFileSync(join(nodeDir, "accounts.conf"), accounts);
    const conf = join(nodeDir, "nats-server.conf");
    writeFileSync(conf, confText);
    const { s, ports } = await spawnOnFreePorts(2, env, ([port, mport]) => ({
      port: port!,
      args: ["-c", conf, "-a", "127.0.0.1", "-p", String(port), "-m", String(mport)],
      readyTimeoutMs: 15_000,
      onLog,
    }));
    const [port, mport] = ports;
    const node: Node = {
      url: `nats://127.0.0.1:${port}`,
      monitorUrl: `http://127.0.0.1:${mport}`,
      kill: async () => {
        s.child.kill("SIGKILL");
        await s.exited;
      },
    };
    started.push(node);
    return node;
  };

  try {
    if (nodes === 1) {
      const text = rebaseConfig(readFileSync(join(DEPLOY, "nats/nats-server.conf"), "utf8"), dir);
      ordered.push(await spawnNode(text, natsDir, {}));
    } else {
      const routePorts = [await findFreePort(), await findFreePort(), await findFreePort()];
      const base = readFileSync(join(DEPLOY, "nats/nats-cluster.conf"), "utf8");
      const rebased = routePorts.map((rp, i) =>
        rebaseConfig(base, dir, [
          ["0.0.0.0:6222", `127.0.0.1:${rp}`],
          ...routePorts.map((p, k): [string, string] => [
            `nats-route://nats-${k + 1}:6222`,
            `nats-route://127.0.0.1:${p}`,
          ]),
        ]).replace(`${dir}/js`, `${dir}/js-${i + 1}`),
      );
      ordered.push(
        ...(await Promise.all(
          rebased.map((text, i) =>
            spawnNode(text, join(dir, `node-${i + 1}`), { NATS_SERVER_NAME: `nats-${i + 1}` }),
          ),
        )),
      );
    }
  } catch (e) {
    for (const n of started) await n.kill();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  const urls = ordered.map((n) => n.url);
  const credentials = (name: string): BusCredentials => ({
    tls: {
      caFile: join(tlsDir, "ca.pem"),
      certFile: join(tlsDir, `${name}.pem`),
      keyFile: join(tlsDir, `${name}-key.pem`),
    },
    inboxPrefix: inboxPrefix({ name }),
    source: `test principal ${name}`,
  });
  const conns: NatsConnection[] = [];
  const connectAs = async (name: string, o: { log?: Logger; url?: string } = {}): Promise<Conn> => {
    const nc = await connectBus({
      servers: o.url ?? urls,
      name: `test ${name}`,
      credentials: credentials(name),
      log: o.log ?? silentLogger,
      waitForServer: false,
      reconnectWaitMs: 50,
      reconnectMaxWaitMs: 250,
    });
    conns.push(nc);
    return { nc, violations: watch(nc) };
  };
  const witnesses = Object.fromEntries(
    await Promise.all(ACCOUNTS.map(async (a) => [a, (await connectAs(witnessName(a))).nc] as const)),
  ) as Record<AccountName, NatsConnection>;
  const witness = witnesses.CXLRC;
  return {
    dir,
    url: urls[0] as string,
    urls,
    monitorUrls: ordered.map((n) => n.monitorUrl),
    roster,
    dns,
    tlsDir,
    credentials,
    connectAs,
    witness,
    witnesses,
    logs: () => logText,
    async stop() {
      for (const nc of conns) await nc.close().catch(() => undefined);
      for (const n of started) await n.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A raw connection attempt (no reconnects): resolves with the error, or null when it connected. */
export async function tryConnect(opts: Parameters<typeof connect>[0]): Promise<Error | null> {
  try {
    const nc = await connect({ reconnect: false, timeout: 5000, ...opts });
    await nc.flush();
    await nc.close();
    return null;
  } catch (e) {
    return e as Error;
  }
}

/** Poll a condition (waiting for something to happen; never a timing assertion). */
export async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  maxMs = 10_000,
): Promise<void> {
  const end = Date.now() + maxMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
