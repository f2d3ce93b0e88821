// The container as shipped, checked against the code since no Docker engine runs here: the Dockerfile builds
// from the packed package and runs it as a non-root user; its HEALTHCHECK command (run here for real against a
// live coordinator) probes the port the services listen on; compose and Kubernetes declare every path the
// services write as a volume, probe /healthz and /readyz on the named metrics port, and the Services and
// ServiceMonitors select the pods and ports that exist.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { defaultStateDir } from "../../services/agent/fence-table.ts";
import { parseAgentConfig } from "../../services/agent/main.ts";
import { parseCoordinatorConfig } from "../../services/coordinator/config.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { type RunningCoordinator, startWorld, type World } from "../coordinator/helpers.ts";

const run = promisify(execFile);
const REPO = new URL("../../", import.meta.url).pathname;
const read = (p: string) => readFileSync(join(REPO, p), "utf8");
// biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
type Any = any;

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions per stage (continuation lines joined, comments dropped). */
function dockerfileStages(text: string): Instruction[][] {
  const joined = text.replace(/\\\n/g, " ");
  const stages: Instruction[][] = [];
  for (const raw of joined.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`Dockerfile line not understood: ${line}`);
    const ins = { op: m[1]!.toUpperCase(), args: m[2]! };
    if (ins.op === "FROM") stages.push([]);
    stages.at(-1)?.push(ins);
  }
  return stages;
}

const stages = dockerfileStages(read("deploy/Dockerfile"));
const final = stages.at(-1)!;
const one = (op: string) => final.filter((i) => i.op === op).map((i) => i.args);
const healthcheck = JSON.parse(/CMD\s+(\[.*\])\s*$/.exec(one("HEALTHCHECK")[0]!)![1]!) as string[];

describe("deploy/Dockerfile", () => {
  it("builds from the sources and the lock file, runs the packed package as a non-root user", () => {
    expect(stages.length).toBe(2);
    expect(stages[0]![0]!.args).toMatch(/^node:20\.20\S* AS build$/);
    expect(final[0]!.args).toMatch(/^node:20\.20\S*$/);
    // Every COPY from the build context names a path that exists and that .dockerignore lets through.
    const ignored = read(".dockerignore")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    for (const c of stages[0]!.filter((i) => i.op === "COPY")) {
      const sources = c.args.split(/\s+/).slice(0, -1);
      for (const s of sources) {
        expect(existsSync(join(REPO, s)), s).toBe(true);
        expect(
          ignored.some((i) => s === i || s.startsWith(`${i}/`)),
          s,
        ).toBe(false);
      }
    }
    for (const secret of ["deploy/compose/secrets", "node_modules", "dist", ".git"])
      expect(ignored).toContain(secret);
    // The build runs the same build script as npm run build, and packs what npm publishes.
    const build = stages[0]!.map((i) => i.args).join("\n");
    expect(build).toContain("node scripts/build.mjs");
    expect(build).toContain("npm pack");
    expect(one("RUN").join("\n")).toMatch(/npm ci --omit=dev --ignore-scripts/);
    expect(one("USER")).toEqual(["node"]);
    expect(one("ENTRYPOINT")).toEqual(['["cxlrc"]']);
    expect(one("VOLUME").join(" ")).toContain(defaultStateDir({}));
  });

  it("its HEALTHCHECK probes the coordinator's default port and the agent's via CXLRC_HEALTH_URL", () => {
    const coordinatorPort = parseCoordinatorConfig({ id: "c", nats: { servers: ["nats://n:4222"] } }).metrics
      .port;
    expect(healthcheck.slice(0, 2)).toEqual(["node", "-e"]);
    expect(healthcheck[2]).toContain(`http://127.0.0.1:${coordinatorPort}/readyz`);
    expect(healthcheck[2]).toContain("process.env.CXLRC_HEALTH_URL");
  });

  describe("the HEALTHCHECK command, run", () => {
    let w: World;
    let c: RunningCoordinator;
    beforeAll(async () => {
      w = await startWorld([simpleHost({ name: "hc1" })]);
      c = await w.coordinator({ metricsPort: 0 });
    }, 30_000);
    afterAll(async () => {
      await c?.stop();
      await w?.close();
    });
    const probe = (url: string) =>
      run(healthcheck[0] === "node" ? process.execPath : healthcheck[0]!, healthcheck.slice(1), {
        env: { PATH: "", CXLRC_HEALTH_URL: url },
        timeout: 10_000,
      }).then(
        () => 0,
        (e: { code: number }) => e.code,
      );

    it("healthy: exit 0 on a serving coordinator; 1 on a closed port and on a 503", async () => {
      const url = c.handle.metricsUrl;
      expect(url).toBeTruthy();
      const base = new URL(url!).origin;
      expect(await probe(`${base}/readyz`)).toBe(0);
      expect(await probe("http://127.0.0.1:1/readyz")).toBe(1);
      await w.server.kill();
      try {
        // Bus gone: not ready (503), still alive.
        let code = 0;
        for (let i = 0; i < 50 && code === 0; i++) {
          code = await probe(`${base}/readyz`);
          if (code === 0) await new Promise((r) => setTimeout(r, 100));
        }
        expect(code).toBe(1);
        expect(await probe(`${base}/healthz`)).toBe(0);
      } finally {
        await w.server.restart();
      }
    }, 30_000);
  });
});

// ---------------------------------------------------------------------------------------------------

function cxlrcServices(): Record<string, Any> {
  const compose = parse(read("deploy/compose/compose.yaml")) as Any;
  return Object.fromEntries(
    Object.entries(compose.services as Record<string, Any>).filter(([, s]) =>
      String(s.image).startsWith("cxlrc:"),
    ),
  );
}

describe("compose.yaml", () => {
  it("every cxlrc container runs the image of deploy/Dockerfile read-only; only the agents' state is writable", () => {
    const compose = parse(read("deploy/compose/compose.yaml")) as Any;
    const services = cxlrcServices();
    expect(Object.keys(services).length).toBe(5);
    const built = Object.values(services).filter((s) => s.build);
    expect(built.length).toBeGreaterThan(0);
    for (const s of built) expect(s.build.dockerfile).toBe("deploy/Dockerfile");
    const version = (JSON.parse(read("package.json")) as { version: string }).version;
    const stateDir = defaultStateDir({});
    for (const [name, s] of Object.entries(services)) {
      expect(s.image, name).toBe(`cxlrc:${version}`);
      expect(s.read_only, name).toBe(true);
      const writable = (s.volumes as string[]).filter((v) => !v.endsWith(":ro"));
      if (name.startsWith("agent-")) {
        expect(writable, name).toEqual([`${name}-state:${stateDir}`]);
        expect(Object.keys(compose.volumes)).toContain(`${name}-state`);
        expect(s.depends_on["coordinator-1"].condition).toBe("service_healthy");
      } else {
        expect(writable, name).toEqual([]);
      }
    }
  });

  it("the health URLs name the ports the service configs listen on, on all interfaces", () => {
    const agent = parseAgentConfig({
      ...JSON.parse(read("deploy/compose/config/agent.json")),
      host: "alpha",
    });
    const coord = parseCoordinatorConfig({
      ...JSON.parse(read("deploy/compose/config/coordinator.json")),
      id: "c",
    });
    expect(coord.metrics.host).toBe("0.0.0.0");
    expect(agent.metrics?.host).toBe("0.0.0.0");
    for (const [name, s] of Object.entries(cxlrcServices())) {
      const url = s.environment?.CXLRC_HEALTH_URL as string | undefined;
      if (name.startsWith("agent-")) expect(url).toBe(`http://127.0.0.1:${agent.metrics?.port}/readyz`);
      else {
        expect(url).toBeUndefined();
        expect(healthcheck[2]).toContain(`127.0.0.1:${coord.metrics.port}/readyz`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------------

function docs(file: string): Any[] {
  return parseAllDocuments(read(`deploy/k8s/${file}`)).map((d) => d.toJS());
}

function checkWorkload(file: string, kind: string, configPort: number) {
  const all = docs(file);
  const workload = all.find((d) => d.kind === kind);
  const pod = workload.spec.template;
  const container = pod.spec.containers[0];
  expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
  const port = container.ports.find((p: Any) => p.name === "metrics");
  expect(port.containerPort).toBe(configPort);
  expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "metrics" });
  expect(container.startupProbe.httpGet).toEqual({ path: "/healthz", port: "metrics" });
  expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "metrics" });
  const service = all.find((d) => d.kind === "Service");
  for (const [k, v] of Object.entries(service.spec.selector)) expect(pod.metadata.labels[k]).toBe(v);
  expect(service.spec.ports).toEqual([{ name: "metrics", port: configPort, targetPort: "metrics" }]);
  const monitor = all.find((d) => d.kind === "ServiceMonitor");
  expect(monitor.apiVersion).toBe("monitoring.coreos.com/v1");
  for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels))
    expect(service.metadata.labels[k]).toBe(v);
  expect(monitor.spec.endpoints[0]).toMatchObject({ port: "metrics", path: "/metrics" });
  expect(monitor.metadata.namespace).toBe(service.metadata.namespace);
  return { container, pod };
}

describe("Kubernetes manifests", () => {
  it("coordinator: probes on the metrics port of its config, a Service and a ServiceMonitor for it", () => {
    const cm = docs("coordinator.yaml").find((d) => d.kind === "ConfigMap");
    const cfg = parseCoordinatorConfig({ ...JSON.parse(cm.data["coordinator.json"]), id: "c" });
    expect(cfg.metrics.host).toBe("0.0.0.0");
    const { container } = checkWorkload("coordinator.yaml", "Deployment", cfg.metrics.port!);
    // Nothing to write: every mount is read-only.
    for (const m of container.volumeMounts) expect(m.readOnly, m.name).toBe(true);
  });

  it("agent: probes on its metrics port, its state directory a node volume, a Service and a ServiceMonitor", () => {
    const documented = /"metrics": \{"port": (\d+), "host": "0\.0\.0\.0"\}/.exec(
      read("deploy/k8s/agent.yaml"),
    );
    expect(documented).not.toBeNull();
    const port = Number(documented![1]);
    expect(parseAgentConfig({ host: "h", metrics: { port, host: "0.0.0.0" } }).metrics?.port).toBe(port);
    const { container, pod } = checkWorkload("agent.yaml", "DaemonSet", port);
    const state = container.volumeMounts.find((m: Any) => m.mountPath === defaultStateDir({}));
    expect(state).toBeDefined();
    expect(state.readOnly).toBeUndefined();
    const volume = pod.spec.volumes.find((v: Any) => v.name === state.name);
    expect(volume.hostPath.path).toBe(defaultStateDir({}));
    const health = container.env.find((e: Any) => e.name === "CXLRC_HEALTH_URL");
    expect(health.value).toBe(`http://127.0.0.1:${port}/readyz`);
  });
});
