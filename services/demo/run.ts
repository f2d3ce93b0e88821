// `cxlrc demo`: a whole cxlrc on one machine, in a few seconds. Its own nats-server, a coordinator, one agent
// per simulated host of the bundled fleet, then a handful of reset requests that show the rules at work
// (FLR, CXL Reset, SBR, a busy sibling, a scope violation repaired, a commit failure quarantined), with live
// progress and a summary. Everything it starts is stopped on the way out, also on Ctrl-C.
import type { NatsConnection } from "@nats-io/transport-node";
import { type EventFeed, eventFilter, type FeedEvent, nextEventSeq, openEvents } from "../../client/feed.ts";
import { applyEvent, newTracked } from "../../client/track.ts";
import { connectBus, ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { exitOnSignals } from "../../shared/children.ts";
import { describeError } from "../../shared/errors.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import { control } from "../cli/bus.ts";
import { EXIT } from "../cli/exit.ts";
import { LiveBoard } from "../cli/format/board.ts";
import type { Colours } from "../cli/format/colour.ts";
import { formatMs } from "../cli/format/duration.ts";
import { eventLine } from "../cli/format/event.ts";
import { decisionsOf, formatDecision } from "../cli/format/plan.ts";
import { newRequestId } from "../cli/request.ts";
import { DEFAULT_UI_HOST } from "../ui/config.ts";
import { startUi, type UiHandle } from "../ui/server.ts";
import { type DemoCoordinator, startDemoCoordinator } from "./coordinator.ts";
import { type DemoBackend, type DemoHost, startDemoWorld, stopDemoHosts } from "./fleet.ts";
import { type EmbeddedNats, ensureNatsServer, NatsServerMissing, startEmbeddedNats } from "./nats-server.ts";
import type { Scenario } from "./scenarios.ts";
import { asExpected, nextSteps, type ScenarioResult, summaryJson, summaryTable } from "./summary.ts";

export interface DemoOptions {
  backend: DemoBackend;
  json: boolean;
  keepRunning: boolean;
  /** May install nats-server with apt-get (root on Debian/Ubuntu). */
  install: boolean;
  /** pino level for the embedded services' logs (stderr). Default "silent". */
  logLevel: string;
  /** Pause between two scenarios of one host, so a person can follow. */
  paceMs: number;
  /** Give up on a scenario after this long. */
  scenarioTimeoutMs: number;
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
  colours: Colours;
  /** Redraw progress in place (a terminal). */
  live: boolean;
}

/** How long the demo's own stop may take after a signal before everything it started is killed. */
const STOP_PATIENCE_MS = 10_000;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

interface Running {
  nats?: EmbeddedNats;
  nc?: NatsConnection;
  coordinator?: DemoCoordinator;
  hosts: DemoHost[];
  feed?: EventFeed;
  ui?: UiHandle;
}

async function shutdown(r: Running): Promise<void> {
  r.feed?.stop();
  await r.ui?.close().catch(() => undefined);
  await stopDemoHosts(r.hosts);
  await r.coordinator?.stop().catch(() => undefined);
  await r.nc?.close().catch(() => undefined);
  await r.nats?.stop();
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const c = opts.colours;
  const say = (line: string) => {
    if (!opts.json) opts.out.write(`${line}\n`);
  };
  const log: Logger = createLogger("cxlrc-demo", { level: opts.logLevel, destination: opts.err });
  const running: Running = { hosts: [] };
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(s, onSignal);
  // The stop below is the way out on a signal; should it hang, or a second signal come, the children are
  // stopped and the process exits anyway (shared/children.ts). Stays installed until the process ends.
  exitOnSignals({ patienceMs: STOP_PATIENCE_MS });

  try {
    let bin: string;
    try {
      bin = ensureNatsServer({ install: opts.install, say: (l) => opts.err.write(`${l}\n`) });
    } catch (e) {
      if (e instanceof NatsServerMissing) {
        opts.err.write(`cxlrc demo: ${e.message}\n`);
        return EXIT.unavailable;
      }
      throw e;
    }
    const t0 = Date.now();
    running.nats = await startEmbeddedNats({ bin });
    const url = running.nats.url;
    running.nc = await connectBus({ servers: url, name: "cxlrc demo", log, waitForServer: false });
    await ensureStreams(await getJsm(running.nc));
    const world = await startDemoWorld({ backend: opts.backend, url, log });
    running.hosts = world.hosts;
    running.coordinator = await startDemoCoordinator({ url, log, hosts: running.hosts.map((h) => h.name) });
    if (abort.signal.aborted) return interrupted(opts);
    // --keep-running: the fleet page too, from the start, so that it shows the demo's resets live.
    if (opts.keepRunning) running.ui = await startDemoUi(running.nc, url, log);

    const devices = running.hosts.map((h) => `${h.name}`).join(", ");
    say(
      `${c.bold("cxlrc demo")}: nats-server at ${url} (pid ${running.nats.pid}), a coordinator, agents for ${devices}`,
    );
    say(c.dim(world.description));
    if (running.ui) say(`the fleet page: ${c.bold(running.ui.url)}`);
    say("");

    const results = await runScenarios(running, world.scenarios, opts, abort.signal);
    if (abort.signal.aborted) return interrupted(opts);
    const elapsed = Date.now() - t0;
    const ok = results.every(asExpected);

    if (opts.json) {
      opts.out.write(
        `${JSON.stringify(
          summaryJson(results, {
            durationMs: elapsed,
            // Where the embedded server ran (gone after the demo unless --keep-running).
            nats: { url, pid: running.nats.pid, dir: running.nats.dir, keptRunning: opts.keepRunning },
            processes: world.processes,
          }),
          null,
          2,
        )}\n`,
      );
    } else {
      say("");
      say(summaryTable(results, c));
      say("");
      say(
        ok
          ? c.green(`All ${results.length} scenarios ended as expected in ${formatMs(elapsed)}.`)
          : c.red(
              `${results.filter((r) => !asExpected(r)).length} of ${results.length} scenarios did not end as expected.`,
            ),
      );
      say("");
      const shown = results.find((r) => r.tracked.outcome === "verified") ?? results[0];
      say(
        nextSteps(
          c,
          opts.keepRunning ? url : null,
          shown ? { host: shown.tracked.host, bdf: shown.tracked.bdf } : null,
        ),
      );
    }

    if (opts.keepRunning) {
      const page = running.ui ? `; the fleet page is at ${running.ui.url}` : "";
      const where = `the bus stays up at ${url}: try \`cxlrc watch --server ${url} --since 1h\` in another terminal${page}; Ctrl-C stops everything`;
      opts.err.write(`${where}\n`);
      await new Promise<void>((resolve) =>
        abort.signal.addEventListener("abort", () => resolve(), { once: true }),
      );
      return ok ? EXIT.ok : EXIT.failure;
    }
    return ok ? EXIT.ok : EXIT.failure;
  } finally {
    for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.removeListener(s, onSignal);
    await shutdown(running);
  }
}

/** The fleet page on its usual port (127.0.0.1:9480), or on any free one when that is taken. */
async function startDemoUi(nc: NatsConnection, url: string, log: Logger): Promise<UiHandle> {
  try {
    return await startUi({ nc, servers: url, log });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
    return await startUi({ nc, servers: url, log, listen: { host: DEFAULT_UI_HOST, port: 0 } });
  }
}

function interrupted(opts: DemoOptions): number {
  opts.err.write("cxlrc demo: interrupted; stopping everything it started\n");
  return EXIT.failure;
}

/** Run every scenario: hosts side by side, the scenarios of one host one after another. */
async function runScenarios(
  r: Running,
  scenarios: readonly Scenario[],
  opts: DemoOptions,
  signal: AbortSignal,
): Promise<ScenarioResult[]> {
  const nc = r.nc!;
  const results: ScenarioResult[] = scenarios.map((s) => {
    const t = newTracked(newRequestId("demo"), s.host, s.bdf);
    t.phase = "waiting";
    t.scope = s.request.scope;
    t.method = s.request.method ?? null;
    return { scenario: s, tracked: t };
  });
  const board = new LiveBoard(opts.out, opts.colours, opts.live && !opts.json);
  if (!opts.json) for (const res of results) board.add({ label: res.scenario.title, tracked: res.tracked });

  // One feed for everything, opened before the first request so no event is missed.
  const startSeq = await nextEventSeq(nc);
  r.feed = await openEvents(nc, eventFilter(), { from: "seq", seq: startSeq });
  const byId = new Map(results.map((res) => [res.tracked.requestId, res]));
  const waiters = new Map<string, () => void>();
  const pump = (async () => {
    for await (const e of r.feed!) {
      const res = e.event.requestId ? byId.get(e.event.requestId) : undefined;
      if (!res || !applyEvent(res.tracked, e)) continue;
      showEvent(e, board, opts);
      if (res.tracked.outcome !== null) waiters.get(res.tracked.requestId)?.();
    }
  })();

  const hostsInOrder = [...new Set(scenarios.map((s) => s.host))];
  await Promise.all(
    hostsInOrder.map(async (host) => {
      const mine = results.filter((res) => res.scenario.host === host);
      for (const [i, res] of mine.entries()) {
        if (signal.aborted) return;
        if (i > 0) await sleep(opts.paceMs, signal);
        await runOne(r, res, opts, signal, waiters, board);
      }
    }),
  );
  r.feed.stop();
  await pump.catch(() => undefined);
  board.stop();
  return results;
}

function showEvent(e: FeedEvent, board: LiveBoard, opts: DemoOptions): void {
  if (opts.json) return;
  if (board.live) board.draw();
  else opts.out.write(`${eventLine(e, opts.colours)}\n`);
}

async function runOne(
  r: Running,
  res: ScenarioResult,
  opts: DemoOptions,
  signal: AbortSignal,
  waiters: Map<string, () => void>,
  board: LiveBoard,
): Promise<void> {
  const { scenario: s } = res;
  const host = r.hosts.find((h) => h.name === s.host);
  if (s.fault) host?.faults?.set(s.bdf, s.fault);
  try {
    await submitAndWait(r, res, opts, signal, waiters, board);
  } finally {
    // The device behaves again for whoever uses the kept-running demo afterwards.
    if (s.fault) host?.faults?.clear(s.bdf);
  }
}

async function submitAndWait(
  r: Running,
  { scenario: s, tracked: t }: ScenarioResult,
  opts: DemoOptions,
  signal: AbortSignal,
  waiters: Map<string, () => void>,
  board: LiveBoard,
): Promise<void> {
  t.phase = "submitted";
  t.startMs = Date.now();
  board.draw();
  const done = new Promise<void>((resolve) => waiters.set(t.requestId, resolve));
  let reply: unknown;
  try {
    reply = await control(r.nc!, subjects.submit(s.host), {
      requestId: t.requestId,
      host: s.host,
      bdf: s.bdf,
      reason: `cxlrc demo: ${s.title}`,
      requester: "cxlrc-demo",
      ...s.request,
    });
  } catch (e) {
    t.outcome = "failed";
    t.reason = describeError(e);
    t.endMs = Date.now();
    board.draw();
    return;
  }
  const [decision] = decisionsOf(reply, { requestId: t.requestId, bdf: s.bdf });
  if (decision?.kind === "refused" || decision?.kind === "rejected") {
    // The refusal is the answer; its event may follow, but the outcome is known now.
    t.outcome = decision.kind;
    t.reason = decision.kind === "refused" ? decision.refusal.reason : decision.message;
    t.endMs = Date.now();
    if (!board.live && !opts.json) opts.out.write(`${formatDecision(decision, opts.colours)}\n`);
    board.draw();
    return;
  }
  const wake = () => waiters.get(t.requestId)?.();
  const timer = setTimeout(wake, opts.scenarioTimeoutMs);
  signal.addEventListener("abort", wake, { once: true });
  await done;
  clearTimeout(timer);
  signal.removeEventListener("abort", wake);
  if (t.outcome === null && !signal.aborted)
    t.reason = `no outcome within ${formatMs(opts.scenarioTimeoutMs)}`;
}
