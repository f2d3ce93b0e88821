// The pieces on their own: the endpoint's routes, the readiness gate's reasons, the package version finder
// (source tree and dist/ alike), and how `cxlrc serve agent` fills in the agent's metrics section.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Counter, Registry } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import { parseAgentConfig } from "../../services/agent/main.ts";
import { AGENT_VERSION } from "../../services/agent/service.ts";
import { agentConfigInput } from "../../services/cli/commands/serve.ts";
import { connectBus } from "../../shared/bus/client.ts";
import { serveMetrics } from "../../shared/http/metrics-server.ts";
import { createReadinessGate } from "../../shared/http/readiness.ts";
import { silentLogger } from "../../shared/log.ts";
import { startNats } from "../../shared/natsd/server.ts";
import { findPackageJson, packageVersion } from "../../shared/version.ts";
import { get, rootPackageVersion } from "./support.ts";

const dir = mkdtempSync(join(tmpdir(), "cxlrc-metrics-parts-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the endpoint", () => {
  it("serves the registry on /metrics, liveness and readiness beside it, 404 elsewhere, 405 for other methods", async () => {
    const registry = new Registry();
    new Counter({ name: "parts_things_total", help: "Things", registers: [registry] }).inc(3);
    let ready: { ready: true } | { ready: false; reason: string } = { ready: false, reason: "starting" };
    const server = await serveMetrics({ registry, port: 0, readiness: () => ready });
    try {
      const base = server.baseUrl;
      expect(server.url).toBe(`${base}/metrics`);
      const res = await fetch(`${base}/metrics?x=1`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe(registry.contentType);
      expect(await res.text()).toMatch(/^parts_things_total 3$/m);
      expect(await get(base, "/readyz")).toEqual({ status: 503, body: "not ready: starting\n" });
      ready = { ready: true };
      expect(await get(base, "/readyz")).toEqual({ status: 200, body: "ready\n" });
      expect(await get(base, "/healthz")).toEqual({ status: 200, body: "ok\n" });
      expect(await get(base, "/healthz", "HEAD")).toEqual({ status: 200, body: "" });
      const post = await fetch(`${base}/metrics`, { method: "POST" });
      expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
      expect(await get(base, "/health")).toMatchObject({ status: 404 });
      expect((await get(base, "/metrics/")).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});

describe("the readiness gate", () => {
  it("is ready only while serving on a connected bus, and names why not otherwise", async () => {
    const gate = createReadinessGate();
    expect(gate.check()).toEqual({ ready: false, reason: "starting" });
    gate.enter("serving");
    expect(gate.check()).toEqual({ ready: false, reason: "no bus connection" });
    const nats = await startNats();
    try {
      const nc = await connectBus({ servers: nats.url, name: "gate", log: silentLogger });
      gate.follow(nc);
      expect(gate.check()).toEqual({ ready: true });
      gate.enter("stopping");
      expect(gate.check()).toEqual({ ready: false, reason: "stopping" });
      gate.enter("serving");
      await nc.close();
      expect(gate.check()).toEqual({ ready: false, reason: "bus connection closed" });
      gate.close();
    } finally {
      await nats.stop();
    }
  });
});

describe("the package version", () => {
  it("is package.json's, for the agent (micro-service version) as for build info", () => {
    expect(packageVersion()).toBe(rootPackageVersion());
    expect(AGENT_VERSION).toBe(rootPackageVersion());
  });

  it("is found by walking up past other packages, from the source tree and from dist/ one level deeper", () => {
    const root = join(dir, "checkout");
    mkdirSync(join(root, "shared"), { recursive: true });
    mkdirSync(join(root, "dist", "shared"), { recursive: true });
    writeFileSync(join(root, "package.json"), JSON.stringify({ name: "cxlrc", version: "9.8.7" }));
    // Some other package.json nearer than the project's (a published dist/ with its own manifest).
    writeFileSync(
      join(root, "dist", "package.json"),
      JSON.stringify({ name: "something-else", version: "1.0.0" }),
    );
    writeFileSync(join(root, "dist", "shared", "package.json"), "{ not json");
    const expected = { path: join(root, "package.json"), version: "9.8.7" };
    expect(findPackageJson(join(root, "shared"))).toEqual(expected);
    expect(findPackageJson(join(root, "dist", "shared"))).toEqual(expected);
    expect(findPackageJson(join(root, "dist", "shared"), "no-such-package-anywhere")).toBeNull();
  });
});

describe("serve agent's metrics options", () => {
  const parsed = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
    parseAgentConfig(agentConfigInput(["--host", "alpha", ...argv], env)).metrics;

  it("off for an embedded agent, on at 127.0.0.1:9465 for `serve agent` without a metrics section", () => {
    expect(parseAgentConfig({ host: "alpha" }).metrics).toBeUndefined();
    expect(parsed([])).toEqual({ port: 9465, host: "127.0.0.1" });
  });

  it("--metrics-port and CXLRC_METRICS_PORT set the port (flag first), 'off' turns it off, the file's host stays", () => {
    expect(parsed([], { CXLRC_METRICS_PORT: "9999" })).toEqual({ port: 9999, host: "127.0.0.1" });
    expect(parsed(["--metrics-port", "0"], { CXLRC_METRICS_PORT: "9999" })).toEqual({
      port: 0,
      host: "127.0.0.1",
    });
    expect(parsed(["--metrics-port", "off"])).toEqual({ port: null, host: "127.0.0.1" });
    const file = join(dir, "agent.json");
    writeFileSync(file, JSON.stringify({ metrics: { host: "0.0.0.0", port: 9100 } }));
    expect(parsed(["--config", file])).toEqual({ port: 9100, host: "0.0.0.0" });
    expect(parsed(["--config", file, "--metrics-port", "9200"])).toEqual({ port: 9200, host: "0.0.0.0" });
    expect(() => parsed(["--metrics-port", "nine"])).toThrow(/--metrics-port/);
  });
});
