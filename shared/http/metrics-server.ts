// The HTTP endpoint of a service (coordinator, agent), on node:http: GET /metrics (Prometheus text of its
// registry), /healthz (liveness: 200 while the process answers) and /readyz (readiness: 200, or 503 with a
// one-line reason). Kubernetes probes and the containers' HEALTHCHECK call these exact paths.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { Readiness } from "./readiness.ts";

export const PATHS = { metrics: "/metrics", healthz: "/healthz", readyz: "/readyz" } as const;

export interface MetricsServerOptions {
  registry: Registry;
  /** 0 = a free port. */
  port: number;
  /** Default 127.0.0.1: the endpoint says what the service does, so it is not exposed unless asked. */
  host?: string;
  readiness: () => Readiness;
}

export interface MetricsServer {
  readonly port: number;
  /** http://host:port/metrics */
  readonly url: string;
  /** http://host:port (append PATHS.*) */
  readonly baseUrl: string;
  close(): Promise<void>;
}

const TEXT = "text/plain; charset=utf-8";

export async function serveMetrics(o: MetricsServerOptions): Promise<MetricsServer> {
  const host = o.host ?? "127.0.0.1";
  const server: Server = createServer((req, res) => route(o, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const baseUrl = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  return {
    port,
    url: `${baseUrl}${PATHS.metrics}`,
    baseUrl,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function route(o: MetricsServerOptions, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? "/").split("?")[0];
  if (path !== PATHS.metrics && path !== PATHS.healthz && path !== PATHS.readyz) {
    send(res, 404, TEXT, `not found: ${PATHS.metrics}, ${PATHS.healthz}, ${PATHS.readyz}\n`);
  } else if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    send(res, 405, TEXT, "method not allowed: GET or HEAD\n");
  } else if (path === PATHS.healthz) {
    send(res, 200, TEXT, "ok\n");
  } else if (path === PATHS.readyz) {
    const r = o.readiness();
    if (r.ready) send(res, 200, TEXT, "ready\n");
    else send(res, 503, TEXT, `not ready: ${r.reason}\n`);
  } else {
    o.registry.metrics().then(
      (body) => send(res, 200, o.registry.contentType, body),
      (err: unknown) =>
        send(res, 500, TEXT, `metrics not collected: ${(err as Error)?.message ?? String(err)}\n`),
    );
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
  res.end(res.req.method === "HEAD" ? undefined : body);
}
