// Small attack primitives: a request whose fate is classified (refused by the server, nobody there, timed
// out, or answered), and holdable agent operations (a reset frozen at a known point).
import type { NatsConnection } from "@nats-io/transport-node";
import { operations } from "../../../services/agent/ops/index.ts";
import type { OpContext } from "../../../services/agent/service.ts";
import { encodeJson } from "../../../shared/bus/codec.ts";

export type Fate =
  | { kind: "violation" }
  | { kind: "no-responders" }
  | { kind: "timeout" }
  | { kind: "answered"; text: string };

/** Send one request and say what became of it. */
export async function attempt(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  timeoutMs = 1500,
): Promise<Fate> {
  try {
    const m = await nc.request(subject, typeof body === "string" ? body : encodeJson(body), {
      timeout: timeoutMs,
    });
    return { kind: "answered", text: m.string() };
  } catch (e) {
    const text = `${(e as Error).message} ${String((e as { cause?: unknown }).cause ?? "")}`;
    if (/permissions? violation/i.test(text)) return { kind: "violation" };
    if (/no responders|503/i.test(text)) return { kind: "no-responders" };
    if (/timeout/i.test(text)) return { kind: "timeout" };
    throw e;
  }
}

/** Is a JetStream API answer a success (not an error object)? */
export function jsApiSucceeded(f: Fate): boolean {
  if (f.kind !== "answered") return false;
  try {
    const v = JSON.parse(f.text) as { error?: unknown };
    return v.error === undefined;
  } catch {
    return false;
  }
}

/** Agent operations whose `save` can be held: a reset frozen while saving its image, whatever the timing. */
export function holdableOperations() {
  let hold: Promise<void> | null = null;
  let entered: (() => void) | null = null;
  const ops = {
    ...operations,
    async save(ctx: OpContext, p: Parameters<typeof operations.save>[1]) {
      entered?.();
      if (hold) await hold;
      return operations.save(ctx, p);
    },
  };
  return {
    operations: ops,
    /** Hold every save from now on; resolves `saving` when one is entered; call the result to let go. */
    hold(): { saving: Promise<void>; release: () => void } {
      let release!: () => void;
      hold = new Promise<void>((r) => {
        release = r;
      });
      const saving = new Promise<void>((r) => {
        entered = r;
      });
      return {
        saving,
        release: () => {
          hold = null;
          entered = null;
          release();
        },
      };
    },
  };
}
