// The fleet page's HTTP surface against a real nats-server, coordinator and simulated agents: bad input named
// (404 unknown device, 400 bad filters, 404 unknown paths, 405 other methods), the security headers, hostile
// event text escaped, no credential in any output, and a bus outage reported and recovered from by itself.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientOn } from "../../client/index.ts";
import { parseListen, parseUiConfig, startUi, type UiHandle } from "../../services/ui/server.ts";
import { encodeJson } from "../../shared/bus/codec.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { type RunningCoordinator, startWorld, until, type World } from "../coordinator/helpers.ts";

const BDF = "0000:01:00.0";

type Json = Record<string, unknown>;
const getJson = async (url: string, init?: RequestInit) => {
  const res = await fetch(url, init);
  return { res, body: (await res.json()) as Json };
};

describe("fleet page over HTTP", () => {
  let w: World;
  let c: RunningCoordinator;
  let ui: UiHandle;
  const api = (p: string) => new URL(p, ui.url).toString();
  const fleet = async () => (await getJson(api("/api/fleet"))).body as { bus: Json; devices: Json[] };

  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "h1" }), simpleHost({ name: "h2" })]);
    c = await w.coordinator({ hosts: ["h1", "h2"] });
    ui = await startUi({ nc: w.nc, listen: { port: 0 }, busRetryMs: 50, statusRefreshMs: 200 });
    expect(await until(async () => (await fleet()).devices.length === 2)).toBe(true);
    // One reset, so that h1 has an image and events to replay.
    const h = await clientOn(w.nc).reset({ host: "h1", bdf: BDF, scope: "full", reason: "ui test" });
    expect((await h.outcome).kind).toBe("verified");
  });
  afterAll(async () => {
    await ui?.close();
    await c?.stop();
    await w?.close();
  });

  it("binds 127.0.0.1 by default and sends the security headers on every answer", async () => {
    expect(ui.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    for (const p of ["/", "/api/fleet", "/assets/app.js", "/api/nope"]) {
      const res = await fetch(api(p));
      expect(res.headers.get("content-security-policy")).toMatch(/default-src 'self'/);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    }
    const page = await (await fetch(ui.url)).text();
    // Scripts are files (the CSP forbids inline ones): one <script src>, no script body, no inline style.
    expect(page.match(/<script[^>]*>/g)).toEqual(['<script type="module" src="/assets/app.js">']);
    expect(page).not.toMatch(/<script[^>]*>[^<]+<\/script>/);
    expect(page).not.toMatch(/ style=/);
    expect((await fetch(api("/assets/app.js"))).headers.get("content-type")).toMatch(/^text\/javascript/);
  });

  it("an unknown device is a 404 naming it; a malformed one a 400 naming the field", async () => {
    const unknown = await getJson(api("/api/devices/h1/0000:0e:00.0"));
    expect(unknown.res.status).toBe(404);
    expect(unknown.body.error).toMatch(/h1 0000:0e:00\.0/);
    const known = await getJson(api(`/api/devices/h1/${BDF}`));
    expect(known.res.status).toBe(200);
    expect(known.body).toMatchObject({ cell: { label: `h1 ${BDF}: ready (verified)` } });
    const bad = await getJson(api("/api/devices/h1/01:00.0"));
    expect(bad.res.status).toBe(400);
    expect(bad.body).toMatchObject({ field: "bdf" });
  });

  it("a malformed filter is a 400 naming the field", async () => {
    for (const [q, field] of [
      ["bdf=0000:1:0.0", "bdf"],
      ["kind=exploded", "kind"],
      ["since=yesterday", "since"],
      ["since=2999-01-01T00:00:00Z", "since"],
      ["host=a.b", "host"],
      ["colour=red", "colour"],
    ] as const) {
      const { res, body } = await getJson(api(`/api/events?${q}`));
      expect([q, res.status, body.field]).toEqual([q, 400, field]);
      expect(String(body.error)).toContain(field === "colour" ? "unknown filter" : field);
    }
  });

  it("unknown paths are 404, other methods 405", async () => {
    expect((await fetch(api("/admin"))).status).toBe(404);
    expect((await fetch(api(`/api/devices/h1/${BDF}/secrets`))).status).toBe(404);
    const post = await fetch(api("/api/fleet"), { method: "POST", body: "{}" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET");
    expect((await fetch(api("/"), { method: "DELETE" })).status).toBe(405);
  });

  it("answers only to its loopback name (a rebound DNS name gets nothing)", async () => {
    const { request } = await import("node:http");
    const status = await new Promise<number>((resolve, reject) => {
      const u = new URL(ui.url);
      request(
        { host: u.hostname, port: u.port, path: "/api/fleet", headers: { host: "evil.example:80" } },
        (r) => {
          r.resume();
          resolve(r.statusCode ?? 0);
        },
      )
        .on("error", reject)
        .end();
    });
    expect(status).toBe(421);
  });

  it("the image endpoint decodes the last saved image as `cxlrc image show` does", async () => {
    const { res, body } = await getJson(api(`/api/devices/h1/${BDF}/image`));
    expect(res.status).toBe(200);
    expect(body.text).toMatch(/^image of h1 0000:01:00\.0/);
    expect(body.text).toContain("CXL DVSEC for CXL Devices");
    expect(body.text).toMatch(/decoder0 {2}base 0x100000000 {2}size 0x10000000 {2}committed/);
    expect((body.decoders as Json[])[0]).toEqual({ index: 0, committed: true });
    const none = await getJson(api(`/api/devices/h2/${BDF}/image`));
    expect(none.res.status).toBe(404);
    expect(none.body.error).toMatch(/no image saved for h2 0000:01:00\.0/);
  });

  it("escapes hostile text from the bus before it reaches HTML", async () => {
    const hostile = `<script>alert("pwned")</script><img src=x onerror=alert(1)>`;
    const env = (kind: string, source: string, data: Json) => ({
      v: 1,
      id: `hostile-${kind}-${Date.now()}`,
      time: new Date().toISOString(),
      source,
      host: "h2",
      bdf: "0000:0e:00.0",
      kind,
      requestId: "hostile-1",
      data,
    });
    // An agent's event (listed only) and a quarantine on the coordinator's subject (changes the grid).
    w.nc.publish(
      subjects.agentEvent("h2", "0000:0e:00.0", "op.failed"),
      encodeJson(env("op.failed", "agent", { op: hostile, error: { kind: "x", message: hostile } })),
    );
    w.nc.publish(
      subjects.event("h2", "0000:0e:00.0", "quarantined"),
      encodeJson(
        env("quarantined", "coordinator", {
          coordinator: "c1",
          outcome: "quarantined",
          reason: hostile,
          error: null,
        }),
      ),
    );
    w.nc.publish(
      subjects.event("h2", "0000:0e:00.0", "state.entered"),
      encodeJson(env("state.entered", "coordinator", { coordinator: "c1", state: "quarantined" })),
    );
    await w.nc.flush();
    expect(
      await until(async () =>
        (await fleet()).devices.some((d) => d.bdf === "0000:0e:00.0" && d.cls === "quarantined"),
      ),
    ).toBe(true);
    const page = await (await fetch(ui.url)).text();
    expect(page).toContain(
      "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;",
    );
    expect(page).not.toContain("<script>alert");
    expect(page).not.toContain("<img src=x");
    // The JSON API carries it as data (the script puts it in with textContent).
    const detail = await getJson(api("/api/devices/h2/0000:0e:00.0"));
    expect(detail.body.quarantineReason).toBe(hostile);
  });

  it("shows no credential or bus URL with a password, even when the bus refuses", async () => {
    const secret = "s3cret-pass";
    const other = await startUi({
      servers: `nats://ui:${secret}@127.0.0.1:1`,
      listen: { port: 0 },
      busRetryMs: 50,
    });
    try {
      let bus: Json = {};
      expect(
        await until(async () => {
          bus = ((await (await fetch(new URL("/api/fleet", other.url))).json()) as { bus: Json }).bus;
          return String(bus.message).startsWith("bus unreachable");
        }),
      ).toBe(true);
      const outputs = [
        JSON.stringify(bus),
        await (await fetch(other.url)).text(),
        await (await fetch(new URL(`/api/devices/h1/${BDF}/image`, other.url))).text(),
      ];
      for (const o of outputs) {
        expect(o).not.toContain(secret);
        expect(o).not.toContain("ui:");
      }
    } finally {
      await other.close();
    }
  });

  it("starts from connection options as well as from a connection", async () => {
    const own = await startUi({ servers: w.server.url, listen: { port: 0 }, busRetryMs: 50 });
    try {
      expect(
        await until(async () => {
          const f = (await (await fetch(new URL("/api/fleet", own.url))).json()) as {
            bus: Json;
            devices: Json[];
          };
          return f.bus.coordinator === true && f.devices.length >= 2;
        }),
      ).toBe(true);
    } finally {
      await own.close();
    }
  });

  it("config is strict and --listen is parsed", () => {
    expect(() => parseUiConfig({ listen: { port: 1 }, lisen: 2 })).toThrow(/unknown field "lisen"/);
    expect(() => parseUiConfig({ listen: { port: 70000 } })).toThrow(/listen\.port/);
    expect(parseUiConfig({}).listen).toEqual({ host: "127.0.0.1", port: 9480 });
    expect(parseListen("127.0.0.1:8080")).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(parseListen("8081")).toEqual({ host: "127.0.0.1", port: 8081 });
    expect(parseListen("[::1]:8082")).toEqual({ host: "::1", port: 8082 });
    expect(() => parseListen("localhost:99999")).toThrow(/--listen/);
  });

  it("the bus goes away: the page says so, the bus API answers 503, and it recovers by itself", async () => {
    await w.server.kill();
    expect(await until(async () => (await fleet()).bus.connected === false)).toBe(true);
    const bus = (await fleet()).bus;
    expect(String(bus.message)).toMatch(/^bus unreachable/);
    // The page still serves, from the model it has, and says the bus is unreachable.
    const page = await (await fetch(ui.url)).text();
    expect(page).toMatch(/<p id="bus" role="status"[^>]*>bus unreachable/);
    expect((await fleet()).devices.length).toBeGreaterThanOrEqual(2);
    const image = await getJson(api(`/api/devices/h1/${BDF}/image`));
    expect(image.res.status).toBe(503);
    expect(image.body.error).toMatch(/bus unreachable/);
    const replay = await getJson(api("/api/events?since=1h"));
    expect(replay.res.status).toBe(503);
    // The fleet stream pushes the state to a browser connected now.
    const stream = await fetch(api("/api/stream"));
    const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("event: fleet")) text += (await reader.read()).value ?? "";
    expect(text).toMatch(/event: bus\ndata: \{"connected":false/);

    await w.server.restart();
    // The state change reaches the open stream without a reload.
    while (!/"connected":true,"coordinator":true/.test(text)) text += (await reader.read()).value ?? "";
    await reader.cancel();
    expect((await fleet()).bus).toMatchObject({
      connected: true,
      coordinator: true,
      message: "bus connected",
    });
    expect(await until(async () => (await fetch(api(`/api/devices/h1/${BDF}/image`))).status === 200)).toBe(
      true,
    );
    // Events after the outage reach the model again.
    const h = await clientOn(w.nc).reset({ host: "h2", bdf: BDF, scope: "io", reason: "after the outage" });
    expect((await h.outcome).kind).toBe("verified");
    expect(
      await until(
        async () =>
          (await getJson(api(`/api/devices/h2/${BDF}`))).body.cell !== undefined &&
          ((await getJson(api(`/api/devices/h2/${BDF}`))).body.cell as Json).text === "ready (verified)",
      ),
    ).toBe(true);
  });
});
