// Follow reset requests on the event stream until each has its outcome (or the wait is given up). What counts
// is decided by applyEvent (track.ts): the coordinator's events only.
import type { EventFeed, FeedEvent } from "./feed.ts";
import { applyEvent, type TrackedRequest } from "./track.ts";

export interface FollowOptions {
  /** Give up after this long (the requests go on; the caller says so). */
  timeoutMs?: number;
  /** Every event of a followed request, after it was applied. */
  onEvent?: (e: FeedEvent, t: TrackedRequest) => void;
  signal?: AbortSignal;
}

/** Resolves "done" when every request has an outcome, "timeout" or "aborted" otherwise. */
export async function followRequests(
  feed: EventFeed,
  requests: TrackedRequest[],
  opts: FollowOptions = {},
): Promise<"done" | "timeout" | "aborted"> {
  const byId = new Map(requests.map((t) => [t.requestId, t]));
  const allDone = () => requests.every((t) => t.outcome !== null);
  if (allDone()) return "done";
  let ended: "timeout" | "aborted" | null = null;
  const timer =
    opts.timeoutMs !== undefined
      ? setTimeout(() => {
          ended = "timeout";
          feed.stop();
        }, opts.timeoutMs)
      : undefined;
  const onAbort = () => {
    ended = "aborted";
    feed.stop();
  };
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const e of feed) {
      const t = e.event.requestId ? byId.get(e.event.requestId) : undefined;
      if (!t) continue;
      if (applyEvent(t, e)) opts.onEvent?.(e, t);
      if (allDone()) return "done";
    }
    return ended ?? (allDone() ? "done" : "aborted");
  } finally {
    if (timer) clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}
