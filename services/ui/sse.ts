// Server-sent events: one hub, many browsers. A stream is a response held open; each message is a named event
// with one line of JSON (JSON.stringify escapes new lines, so nothing from the bus can end a message early or
// forge another). Each stream says what it wants (a predicate on the message); a comment line now and then
// keeps proxies from closing an idle stream.
import type { ServerResponse } from "node:http";

export interface SseMessage {
  event: string;
  data: unknown;
}

export interface SseStream {
  send(m: SseMessage): void;
  close(): void;
  readonly closed: boolean;
}

/** Turn a response into an event stream (headers already carry the security headers). */
export function openStream(res: ServerResponse, onClose: () => void = () => undefined): SseStream {
  res.writeHead(200, {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    Connection: "keep-alive",
  });
  res.write("retry: 1000\n\n");
  let closed = false;
  const end = () => {
    if (closed) return;
    closed = true;
    onClose();
  };
  res.on("close", end);
  return {
    send(m) {
      if (closed) return;
      res.write(`event: ${m.event}\ndata: ${JSON.stringify(m.data)}\n\n`);
    },
    close() {
      if (!closed) res.end();
      end();
    },
    get closed() {
      return closed;
    },
  };
}

export interface SseHub {
  /** Keep `stream` until it closes; `wants` picks the messages it gets (default: all). */
  add(stream: SseStream, wants?: (m: SseMessage) => boolean): () => void;
  broadcast(m: SseMessage): void;
  readonly size: number;
  close(): void;
}

export function createHub(opts: { keepAliveMs: number }): SseHub {
  const streams = new Map<SseStream, (m: SseMessage) => boolean>();
  const timer = setInterval(() => {
    for (const s of streams.keys()) s.send({ event: "ping", data: Date.now() });
  }, opts.keepAliveMs);
  timer.unref();
  return {
    add(stream, wants = () => true) {
      streams.set(stream, wants);
      return () => streams.delete(stream);
    },
    broadcast(m) {
      for (const [s, wants] of streams) {
        if (s.closed) streams.delete(s);
        else if (wants(m)) s.send(m);
      }
    },
    get size() {
      return streams.size;
    },
    close() {
      clearInterval(timer);
      for (const s of streams.keys()) s.close();
      streams.clear();
    },
  };
}
