// A key read on the reply mux says what nats.js kv.get says, on a real server: absent, a value (its latest
// revision), a delete or purge marker; a bucket that does not exist is an error naming the API subject.
import { jetstream } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus } from "../../shared/bus/client.ts";
import { createKvReader, type KvReader } from "../../shared/bus/kv-read.ts";
import { createReplyMux } from "../../shared/bus/reply-mux.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

describe("KV reads on the reply mux", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let kv: KV;
  let reader: KvReader;
  const mux = () => createReplyMux(nc);
  beforeAll(async () => {
    server = await startNats();
    nc = await connectBus({ servers: server.url, name: "kv-read", log: silentLogger });
    kv = await new Kvm(jetstream(nc)).create("kvread", { history: 3, allow_direct: false });
    reader = createKvReader(mux(), { timeoutMs: 2000 });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  /** What nats.js reads, in the reader's terms. */
  const viaNatsJs = async (key: string) => {
    const e = await kv.get(key);
    return e ? { operation: e.operation, revision: e.revision, value: [...e.value] } : null;
  };
  const viaReader = async (key: string) => {
    const e = await reader.get("kvread", key);
    return e ? { operation: e.operation, revision: e.revision, value: [...e.value] } : null;
  };

  it("says what kv.get says: absent, the latest value, a delete, a purge", async () => {
    expect(await viaReader("never")).toBeNull();
    expect(await viaNatsJs("never")).toBeNull();

    await kv.put("a.b-c", JSON.stringify({ n: 1 }));
    const r2 = await kv.put("a.b-c", JSON.stringify({ n: 2 }));
    expect(await viaReader("a.b-c")).toEqual(await viaNatsJs("a.b-c"));
    const got = await reader.get("kvread", "a.b-c");
    expect(got?.revision).toBe(r2);
    expect(got?.json()).toEqual({ n: 2 });

    await kv.put("gone", "x");
    await kv.delete("gone");
    expect(await viaReader("gone")).toEqual(await viaNatsJs("gone"));
    expect((await viaReader("gone"))?.operation).toBe("DEL");

    await kv.put("wiped", "x");
    await kv.purge("wiped");
    expect(await viaReader("wiped")).toEqual(await viaNatsJs("wiped"));
    expect((await viaReader("wiped"))?.operation).toBe("PURGE");

    // An empty value is a value.
    await kv.put("empty", new Uint8Array(0));
    expect(await viaReader("empty")).toEqual(await viaNatsJs("empty"));
    expect((await viaReader("empty"))?.operation).toBe("PUT");
  });

  it("a bucket that does not exist is an error naming the API subject, not an absent key", async () => {
    const err = await reader.get("nosuchbucket", "k").catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: "backend" });
    expect(String((err as Error).message)).toMatch(/KV_nosuchbucket/);
  });
});
