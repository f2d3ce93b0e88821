// Wrong credentials are their own typed error: the server refuses the connection (an authorization
// violation), which the client says as "permission-denied", not as a server that is down.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientError, connect } from "../../client/index.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

describe("client credentials", () => {
  let nats: NatsServerHandle;
  beforeAll(async () => {
    nats = await startNats({ jetstream: false, args: ["--user", "fleet", "--pass", "right-one"] });
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it("wrong credentials: permission-denied; right ones: connected", async () => {
    const err = await connect({ servers: nats.url, user: "fleet", pass: "wrong" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect(err).toMatchObject({ kind: "permission-denied" });
    expect((err as Error).message).toMatch(/refused the credentials/);
    const ok = await connect({ servers: nats.url, user: "fleet", pass: "right-one" });
    expect(ok.nc.isClosed()).toBe(false);
    await ok.close();
    expect(ok.nc.isClosed()).toBe(true);
  });

  it("nothing listening: unreachable, naming the server", async () => {
    const err = await connect({ servers: "nats://127.0.0.1:1" }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: "unreachable" });
    expect((err as Error).message).toMatch(/nats:\/\/127\.0\.0\.1:1/);
  });
});
