// The page's one link to the bus, as the SRE principal (read only: status, image, replay, live events). It
// keeps the fleet model fed: the coordinator's status first, then the events replayed from a window back and
// live from there (client.watch: no gap between the two). When the bus goes away the page is told at once
// (the connection's status), and when it comes back the link syncs again by itself: status, then the events
// from a little before the last one it saw (copies are dropped by envelope id in the model).
import type { NatsConnection } from "@nats-io/transport-node";
import { type ClientEvent, type CxlrcClient, clientOn } from "../../client/index.ts";
import type { Logger } from "../../shared/log.ts";

export interface BusState {
  /** The NATS connection is up. */
  connected: boolean;
  /** The coordinator answered the last status request. */
  coordinator: boolean;
  /** One sentence for the status line (never a URL or a credential). */
  message: string;
  /** When this state began (ISO). */
  since: string;
}

export interface BusLinkOptions {
  /** A connection the caller owns (left open on close)… */
  nc?: NatsConnection;
  /** …or how to open one (the link owns it and retries until the bus answers). */
  connect?: () => Promise<CxlrcClient>;
  timeoutMs: number;
  historyWindowMs: number;
  retryMs: number;
  /** The coordinator's status is asked again this often while in sync (breaker, a coordinator gone). */
  statusRefreshMs: number;
  log: Logger;
  onStatus(reply: Record<string, unknown>): void;
  onEvent(e: ClientEvent): void;
  onState(s: BusState): void;
}

export interface BusLink {
  state(): BusState;
  /** The client, while the bus is reachable (null before the first connection). */
  client(): CxlrcClient | null;
  /** Ask the coordinator's status again (after an outcome: breaker, quarantine reasons); errors only logged. */
  refreshStatus(): void;
  close(): Promise<void>;
}

/** Events from this long before the last one seen are replayed after an outage (clocks, late publishers). */
const RESYNC_OVERLAP_MS = 5000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export function startBusLink(o: BusLinkOptions): BusLink {
  let client: CxlrcClient | null = o.nc ? clientOn(o.nc, { name: "cxlrc ui", timeoutMs: o.timeoutMs }) : null;
  let state: BusState = {
    connected: false,
    coordinator: false,
    message: "connecting to the bus",
    since: now(),
  };
  let stopped = false;
  /** Each sync starts a generation; events of an older generation's watch are dropped. */
  let generation = 0;
  let watchAbort: AbortController | null = null;
  let lastEventMs: number | null = null;
  let wake: (() => void) | null = null;
  let statusIter: { stop(): void } | null = null;
  /** The connection is up, as its status events say (nats.js keeps no such flag of its own). */
  let up = o.nc ? !o.nc.isClosed() : false;

  function now() {
    return new Date().toISOString();
  }
  const setState = (connected: boolean, coordinator: boolean, message: string) => {
    message = withoutSecrets(message);
    if (state.connected === connected && state.coordinator === coordinator && state.message === message)
      return;
    state = { connected, coordinator, message, since: now() };
    o.log.info({ connected, coordinator, message }, "bus state");
    o.onState(state);
  };
  const nudge = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  /** Wait for a nudge (the connection came back, close) or the retry time. */
  const pause = (ms: number) =>
    Promise.race([
      sleep(ms),
      new Promise<void>((r) => {
        wake = r;
      }),
    ]);

  const followConnection = (nc: NatsConnection) => {
    const it = nc.status();
    statusIter = it as unknown as { stop(): void };
    void (async () => {
      for await (const s of it) {
        if (s.type === "disconnect" || s.type === "staleConnection") {
          up = false;
          watchAbort?.abort();
          setState(false, false, "bus unreachable: reconnecting");
        } else if (s.type === "reconnect") {
          up = true;
          setState(true, false, "bus back: syncing");
          nudge();
        } else if (s.type === "close") {
          up = false;
          setState(false, false, "bus unreachable: connection closed");
          nudge();
        }
      }
    })().catch((e: unknown) => o.log.warn({ err: String(e) }, "bus status loop ended"));
  };

  const sync = async (c: CxlrcClient): Promise<boolean> => {
    let reply: Record<string, unknown>;
    try {
      reply = await c.status();
    } catch (e) {
      if (c.nc.isClosed()) setState(false, false, "bus unreachable: connection closed");
      else if (up) setState(true, false, `coordinator not answering: ${(e as Error).message}`);
      else setState(false, false, "bus unreachable: reconnecting");
      return false;
    }
    o.onStatus(reply);
    const gen = ++generation;
    const ac = new AbortController();
    watchAbort?.abort();
    watchAbort = ac;
    const since = new Date(
      lastEventMs === null ? Date.now() - o.historyWindowMs : lastEventMs - RESYNC_OVERLAP_MS,
    );
    setState(true, true, "bus connected");
    void (async () => {
      for await (const e of c.watch({ since, signal: ac.signal })) {
        if (gen !== generation || ac.signal.aborted) break;
        const t = Date.parse(e.time);
        if (!Number.isNaN(t) && t <= Date.now() + 60_000) lastEventMs = Math.max(lastEventMs ?? 0, t);
        o.onEvent(e);
      }
    })().catch((e: unknown) => {
      if (gen !== generation || ac.signal.aborted) return;
      o.log.warn({ err: String(e) }, "event stream ended: syncing again");
      setState(state.connected, false, `event stream ended: ${(e as Error).message}`);
      nudge();
    });
    return true;
  };

  const run = async () => {
    while (!stopped) {
      if (!client) {
        try {
          client = await o.connect!();
          up = !client.nc.isClosed();
          followConnection(client.nc);
        } catch (e) {
          o.log.warn({ err: withoutSecrets((e as Error).message) }, "cannot connect to the bus");
          setState(false, false, "bus unreachable: cannot connect (retrying)");
          await pause(o.retryMs);
          continue;
        }
      }
      if (client.nc.isClosed()) return;
      if (!up) {
        await pause(o.retryMs);
        continue;
      }
      if (!(state.connected && state.coordinator)) {
        const ok = await sync(client);
        if (!ok) {
          await pause(o.retryMs);
          continue;
        }
      }
      // In sync: look again after a while, or at once when something nudges (reconnect, the stream's end).
      await pause(o.statusRefreshMs);
      if (!stopped && up && state.coordinator) await refresh();
    }
  };
  if (o.nc) followConnection(o.nc);
  const running = run().catch((e: unknown) => o.log.error({ err: String(e) }, "bus link failed"));

  let refreshing = false;
  async function refresh(): Promise<void> {
    const c = client;
    if (!c || refreshing || !state.coordinator) return;
    refreshing = true;
    try {
      o.onStatus(await c.status());
    } catch (e) {
      // Still connected but no answer: the coordinator is gone; the run loop syncs again once it answers.
      if (up && !stopped) setState(true, false, `coordinator not answering: ${(e as Error).message}`);
    } finally {
      refreshing = false;
    }
  }
  return {
    state: () => state,
    client: () => client,
    refreshStatus() {
      void refresh().then(() => {
        if (!state.coordinator) nudge();
      });
    },
    async close() {
      stopped = true;
      watchAbort?.abort();
      statusIter?.stop();
      nudge();
      await running;
      if (client && !o.nc) await client.close();
    },
  };
}

/**
 * A sentence for the page: server addresses with a user or password in them lose that part (an error message
 * may quote the URL it was given).
 */
export function withoutSecrets(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, "$1[redacted]@");
}
