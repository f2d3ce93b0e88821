// Following requests with few subscriptions: reset() calls of one client share one live subscription per host
// on the coordinator's subject space (cxlrc.evt.<host>.>), opened and flushed before the request is sent, so
// no event of it can pass unseen and no replay is needed. Each event is handed to the request it names; an
// event whose envelope disagrees with its subject is dropped (only what the server vouches for counts).
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { subjects } from "../shared/bus/subjects.ts";
import { clientError } from "./errors.ts";
import { type FeedEvent, feedEventOf, fromCoordinator } from "./feed-event.ts";

type Handler = (e: FeedEvent) => void;

export interface RequestFollower {
  /** Subscribe for the host (once) and route its events for requestId to `handler`; call the result to stop. */
  follow(host: string, requestId: string, handler: Handler): Promise<() => void>;
  close(): void;
}

export function requestFollower(nc: NatsConnection): RequestFollower {
  const hosts = new Map<string, { sub: Subscription; ready: Promise<void> }>();
  const handlers = new Map<string, Handler>();
  let failure: unknown = null;

  const onMessage = (err: Error | null, m: { subject: string; data: Uint8Array }) => {
    if (err) {
      failure = err;
      return;
    }
    const item = feedEventOf(m.subject, m.data);
    if (!item || !fromCoordinator(item) || !item.event.requestId) return;
    handlers.get(item.event.requestId)?.(item);
  };

  return {
    async follow(host, requestId, handler) {
      const subject = subjects.eventsOfHost(host);
      let h = hosts.get(host);
      if (!h) {
        const sub = nc.subscribe(subject, { callback: onMessage });
        // Flushed: the server has the subscription before the request goes out.
        const ready = nc.flush().then(() => {
          if (failure) throw failure;
        });
        h = { sub, ready };
        hosts.set(host, h);
        ready.catch(() => {
          hosts.delete(host);
          sub.unsubscribe();
        });
      }
      try {
        await h.ready;
      } catch (e) {
        throw clientError(e, subject);
      }
      if (failure) throw clientError(failure, subject);
      handlers.set(requestId, handler);
      // The host's subscription stays for the client's later calls (close() ends it).
      return () => {
        if (handlers.get(requestId) === handler) handlers.delete(requestId);
      };
    },
    close() {
      for (const h of hosts.values()) h.sub.unsubscribe();
      hosts.clear();
      handlers.clear();
    },
  };
}
