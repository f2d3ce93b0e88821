// A real n-node nats-server cluster for chaos tests and `cxlrc chaos`: free loopback client and route ports,
// full-mesh routes, JetStream on every node (own store dir), server names n1..nN, one cluster name. Ready
// once every node greets and JetStream has a meta leader ($JS.API.INFO answers). Any node can be killed
// (SIGKILL, store kept), restarted on the same ports and store, paused (SIGSTOP) and resumed; the leader of
// a stream is found from stream info. Every process is SIGKILLed and every temp dir removed on exit.
//
// deploy/nats/nats-cluster.conf and deploy/compose/compose.yaml describe the same topology for production
// (three nodes, full-mesh routes, replicas 3), with TLS and nkeys.
//
// Timings on 2.9.10 (libraries.md): ready ≈ 5 s after start; killing a stream leader stops writes for 4–6 s.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { removeOnExit } from "../children.ts";
import { retry } from "../retry.ts";
import { AddressInUse, findFreePort, PORT_REUSE_BACKOFF, spawnServer } from "./server.ts";

export interface StartClusterOptions {
  /** Cluster name. Default "cxlrc-test". */
  clusterName?: string;
  /** Server name prefix: nodes are <prefix>1..<prefix>n. Default "n". */
  namePrefix?: string;
  /** How long to wait for all nodes to greet and a JetStream meta leader. Default 30 s. */
  readyTimeoutMs?: number;
  /** SIGTERM → SIGKILL grace period in stop(). Default 3 s. */
  stopGraceMs?: number;
  /** Extra config text appended to every node's config. */
  extraConfig?: string;
  /** Keep the store dirs after stop(). Default false. */
  keepStoreDirs?: boolean;
}

export interface ClusterNode {
  readonly index: number;
  /** Server name (n1, n2…): what stream info's cluster.leader reports. */
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly routePort: number;
  /** HTTP monitoring port (/varz, /jsz…). */
  readonly monitorPort: number;
  readonly storeDir: string;
  readonly pid: number | null;
  readonly running: boolean;
  readonly paused: boolean;
  logs(): string;
}

export interface ClusterHandle {
  readonly size: number;
  readonly name: string;
  readonly nodes: readonly ClusterNode[];
  /** Client URLs of every node (running or not): give them all to a client. */
  readonly urls: string[];
  /** Index of a node by server name, or -1. */
  indexOf(serverName: string): number;
  /** SIGKILL a node (its store stays; restart() recovers it). */
  kill(index: number): Promise<void>;
  /** Start a killed node again on the same ports and store (kills it first if it runs). */
  restart(index: number): Promise<void>;
  /** SIGSTOP: sockets stay open, nothing answers. */
  pause(index: number): void;
  /** SIGCONT. */
  resume(index: number): void;
  /**
   * Wait until JetStream answers $JS.API.INFO with a meta leader that sees every running node as a current
   * peer (after start, kills and restarts: streams with replicas can be placed).
   */
  waitReady(timeoutMs?: number): Promise<void>;
  /**
   * Wait until the cluster is whole again: JetStream ready (waitReady) and every stream has a leader with all
   * its replicas current. Before breaking a node of a 3-node cluster, so that only one node is ever behind.
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Server name of the current JetStream meta leader. */
  metaLeader(timeoutMs?: number): Promise<string>;
  /** Index of the node leading `stream` (a KV bucket's stream is KV_<bucket>), or -1 when none is known. */
  streamLeader(stream: string, timeoutMs?: number): Promise<number>;
  /** A client connection to the running nodes (closed by stop()). */
  connect(name?: string): Promise<NatsConnection>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface NodeState {
  index: number;
  name: string;
  port: number;
  routePort: number;
  monitorPort: number;
  storeDir: string;
  configPath: string;
  spawned: Awaited<ReturnType<typeof spawnServer>> | undefined;
  paused: boolean;
  log: string;
}

/** Distinct free loopback ports (a port handed out twice in a row is asked for again). */
async function freePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await findFreePort());
  return [...out];
}

function nodeConfig(o: {
  name: string;
  port: number;
  routePort: number;
  monitorPort: number;
  storeDir: string;
  clusterName: string;
  routes: number[];
  extra: string;
}): string {
  return [
    `server_name: ${o.name}`,
    `listen: 127.0.0.1:${o.port}`,
    `http: 127.0.0.1:${o.monitorPort}`,
    "jetstream {",
    `  store_dir: ${JSON.stringify(o.storeDir)}`,
    "  max_memory_store: 64MB",
    "  max_file_store: 16GB",
    "}",
    // One node: no cluster block (JetStream runs standalone, replicas 1).
    ...(o.routes.length === 0
      ? []
      : [
          "cluster {",
          `  name: ${o.clusterName}`,
          `  listen: 127.0.0.1:${o.routePort}`,
          "  routes: [",
          ...o.routes.map((p) => `    nats-route://127.0.0.1:${p}`),
          "  ]",
          "}",
        ]),
    "max_payload: 1MB",
    o.extra,
    "",
  ].join("\n");
}

/** Start n nats-server processes as one JetStream cluster and wait for a meta leader. */
export async function startCluster(n = 3, opts: StartClusterOptions = {}): Promise<ClusterHandle> {
  if (!Number.isInteger(n) || n < 1 || n > 7) throw new RangeError(`cluster size must be 1..7, got ${n}`);
  const clusterName = opts.clusterName ?? "cxlrc-test";
  const prefix = opts.namePrefix ?? "n";
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const stopGraceMs = opts.stopGraceMs ?? 3_000;
  const workDir = mkdtempSync(join(tmpdir(), "cxlrc-cluster-"));
  const forgetDir = removeOnExit(workDir);
  const clients = new Set<NatsConnection>();

  const nodes: NodeState[] = [];
  const spawnNode = async (s: NodeState) => {
    // A restarted node's old listener can linger a moment after exit.
    s.spawned = await retry(
      () =>
        spawnServer({
          port: s.port,
          args: ["-c", s.configPath],
          readyTimeoutMs: readyTimeoutMs,
          onLog: (t) => {
            s.log += t;
            if (s.log.length > 65_536) s.log = s.log.slice(-65_536);
          },
        }),
      { attempts: 31, ...PORT_REUSE_BACKOFF, retryIf: (e) => e instanceof AddressInUse },
    );
    s.paused = false;
  };

  const start = async () => {
    const ports = await freePorts(3 * n);
    for (let i = 0; i < n; i++) {
      const storeDir = join(workDir, `${prefix}${i + 1}`, "store");
      nodes.push({
        index: i,
        name: `${prefix}${i + 1}`,
        port: ports[3 * i]!,
        routePort: ports[3 * i + 1]!,
        monitorPort: ports[3 * i + 2]!,
        storeDir,
        configPath: join(workDir, `${prefix}${i + 1}.conf`),
        spawned: undefined,
        paused: false,
        log: "",
      });
    }
    for (const s of nodes) {
      writeFileSync(
        s.configPath,
        nodeConfig({
          name: s.name,
          port: s.port,
          routePort: s.routePort,
          monitorPort: s.monitorPort,
          storeDir: s.storeDir,
          clusterName,
          routes: n > 1 ? nodes.map((x) => x.routePort) : [],
          extra: opts.extraConfig ?? "",
        }),
      );
    }
    await Promise.all(nodes.map(spawnNode));
  };

  const terminate = async (s: NodeState, graceful: boolean) => {
    const sp = s.spawned;
    if (!sp) return;
    s.spawned = undefined;
    s.paused = false;
    if (sp.child.exitCode !== null || sp.child.signalCode !== null) return;
    sp.child.kill("SIGCONT");
    if (graceful) {
      sp.child.kill("SIGTERM");
      const t = setTimeout(() => sp.child.kill("SIGKILL"), stopGraceMs);
      await sp.exited;
      clearTimeout(t);
    } else {
      sp.child.kill("SIGKILL");
      await sp.exited;
    }
  };

  const node = (i: number): NodeState => {
    const s = nodes[i];
    if (!s) throw new RangeError(`no node ${i} in a cluster of ${n} (indexes 0..${n - 1})`);
    return s;
  };

  const urls = () => nodes.map((s) => `nats://127.0.0.1:${s.port}`);

  /** A short-lived connection to whichever node answers, for admin queries. */
  const withAdmin = async <T>(fn: (nc: NatsConnection) => Promise<T>, timeoutMs: number): Promise<T> => {
    const live = nodes.filter((s) => s.spawned && !s.paused).map((s) => `nats://127.0.0.1:${s.port}`);
    if (live.length === 0) throw new Error("no cluster node is running");
    const nc = await connect({ servers: live, timeout: Math.min(2000, timeoutMs), maxReconnectAttempts: 0 });
    try {
      return await fn(nc);
    } finally {
      await nc.close().catch(() => undefined);
    }
  };

  /**
   * The meta leader as the running nodes' /jsz reports it, and how many of its peers it sees as current
   * (asked of the leader itself when it answers: its view of the replicas is the one that counts).
   */
  const monitoredMeta = async (): Promise<{ leader: string; currentPeers: number }> => {
    let leader = "";
    for (const s of nodes) {
      if (!s.spawned || s.paused) continue;
      try {
        const r = await fetch(`http://127.0.0.1:${s.monitorPort}/jsz`, { signal: AbortSignal.timeout(1000) });
        const body = (await r.json()) as {
          meta_cluster?: { leader?: string; replicas?: Array<{ name: string; current?: boolean }> };
        };
        if (n === 1) return { leader: s.name, currentPeers: 0 };
        const meta = body.meta_cluster;
        if (!meta?.leader) continue;
        leader = meta.leader;
        if (meta.leader === s.name) {
          return { leader, currentPeers: (meta.replicas ?? []).filter((p) => p.current).length };
        }
      } catch {
        // next node
      }
    }
    return { leader, currentPeers: -1 };
  };

  /** Meta leader elected and answering $JS.API.INFO; with `allPeers`, every running node current. */
  const metaLeaderWith = async (timeoutMs: number, allPeers: boolean): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      try {
        await withAdmin(async (nc) => {
          const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 1000 });
          // $JS.API.INFO: answered by the meta leader only once one is elected.
          await jsm.getAccountInfo();
        }, 2000);
        const meta = await monitoredMeta();
        if (!meta.leader) throw new Error("no node reports a meta leader yet");
        const running = nodes.filter((x) => x.spawned && !x.paused).length;
        if (allPeers && meta.currentPeers < running - 1) {
          throw new Error(
            `meta leader ${meta.leader} sees ${meta.currentPeers} of ${running - 1} peers current`,
          );
        }
        return meta.leader;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(`JetStream not ready within ${timeoutMs} ms (last: ${last})`);
      }
      await sleep(200);
    }
  };
  const metaLeader = (timeoutMs = readyTimeoutMs) => metaLeaderWith(timeoutMs, false);

  /** Read-only views of the nodes (built once the nodes exist). */
  let views: ClusterNode[] = [];
  const buildViews = () => {
    views = nodes.map((s) => ({
      index: s.index,
      name: s.name,
      get url() {
        return `nats://127.0.0.1:${s.port}`;
      },
      port: s.port,
      routePort: s.routePort,
      monitorPort: s.monitorPort,
      storeDir: s.storeDir,
      get pid() {
        return s.spawned?.child.pid ?? null;
      },
      get running() {
        return s.spawned !== undefined;
      },
      get paused() {
        return s.paused;
      },
      logs: () => s.log,
    }));
  };

  const handle: ClusterHandle = {
    size: n,
    name: clusterName,
    get nodes() {
      return views;
    },
    get urls() {
      return urls();
    },
    indexOf: (serverName) => nodes.findIndex((s) => s.name === serverName),
    async kill(i) {
      await terminate(node(i), false);
    },
    async restart(i) {
      const s = node(i);
      await terminate(s, false);
      await spawnNode(s);
    },
    pause(i) {
      const s = node(i);
      if (!s.spawned) return;
      s.spawned.child.kill("SIGSTOP");
      s.paused = true;
    },
    resume(i) {
      const s = node(i);
      if (!s.spawned) return;
      s.spawned.child.kill("SIGCONT");
      s.paused = false;
    },
    async waitReady(timeoutMs = readyTimeoutMs) {
      await metaLeaderWith(timeoutMs, true);
    },
    metaLeader,
    async waitHealthy(timeoutMs = readyTimeoutMs) {
      const deadline = Date.now() + timeoutMs;
      await metaLeaderWith(timeoutMs, true);
      let last = "";
      for (;;) {
        try {
          const behind = await withAdmin(async (nc) => {
            const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 1000 });
            const out: string[] = [];
            for await (const si of jsm.streams.list()) {
              const c = si.cluster;
              if (!c || n === 1) continue;
              if (!c.leader) out.push(`${si.config.name}: no leader`);
              for (const r of c.replicas ?? [])
                if (!r.current) out.push(`${si.config.name}: ${r.name} behind`);
            }
            return out;
          }, 2000);
          if (behind.length === 0) return;
          last = behind.join(", ");
        } catch (e) {
          last = (e as Error).message;
        }
        if (Date.now() > deadline) throw new Error(`cluster not healthy within ${timeoutMs} ms: ${last}`);
        await sleep(250);
      }
    },
    async streamLeader(stream, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        try {
          const leader = await withAdmin(async (nc) => {
            const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 1000 });
            return (await jsm.streams.info(stream)).cluster?.leader ?? "";
          }, 2000);
          if (leader) return handle.indexOf(leader);
          if (n === 1) return 0;
        } catch (e) {
          if (/stream not found/i.test((e as Error).message)) return -1;
        }
        if (Date.now() > deadline) return -1;
        await sleep(200);
      }
    },
    async connect(name = "cxlrc-cluster-client") {
      const nc = await connect({
        servers: urls(),
        name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        noAsyncTraces: true,
      });
      clients.add(nc);
      void nc.closed().then(() => clients.delete(nc));
      return nc;
    },
    async stop() {
      await Promise.allSettled([...clients].map((c) => c.close()));
      await Promise.allSettled(nodes.map((s) => terminate(s, true)));
      if (!opts.keepStoreDirs) {
        rmSync(workDir, { recursive: true, force: true });
        forgetDir();
      }
    },
  };

  try {
    await start();
    buildViews();
    await handle.waitReady(readyTimeoutMs);
  } catch (e) {
    await handle.stop().catch(() => undefined);
    throw e;
  }
  return handle;
}
