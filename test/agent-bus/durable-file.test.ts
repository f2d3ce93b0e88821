// The agent's state files are written without blocking the event loop, and a burst of saves (ten devices
// raising their epochs at once) coalesces: the latest text is written once after the write in progress, and
// every save resolves only once a text holding its state is durable. A failed write rejects every save it
// held; the next save writes again.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { durableFile } from "../../services/agent/durable-file.ts";

describe("durable state file", () => {
  const root = mkdtempSync(join(tmpdir(), "cxlrc-durable-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("a burst of saves is written twice (the first, then the latest), and each resolves with its text on disk", async () => {
    const dir = join(root, "burst");
    mkdirSync(dir);
    const path = join(dir, "state.json");
    const f = durableFile(dir, path);
    // What is on disk when each save resolves: its own text or a later one, never an earlier one.
    const seen = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        f.save(`{"n":${i}}`).then(() => (JSON.parse(readFileSync(path, "utf8")) as { n: number }).n),
      ),
    );
    expect(f.writes).toBe(2);
    expect(readFileSync(path, "utf8")).toBe('{"n":9}');
    seen.forEach((n, i) => {
      expect(n, `save ${i}`).toBeGreaterThanOrEqual(i);
    });
    expect(seen.slice(1)).toEqual(Array(9).fill(9));
    expect(readdirSync(dir)).toEqual(["state.json"]);
    // Alone, a save is one write.
    await f.save('{"n":10}');
    expect(f.writes).toBe(3);
    expect(readFileSync(path, "utf8")).toBe('{"n":10}');
  });

  it("a write that fails rejects the saves it held; the next save writes again", async () => {
    const dir = join(root, "gone");
    mkdirSync(dir);
    const path = join(dir, "state.json");
    const f = durableFile(dir, path);
    rmSync(dir, { recursive: true });
    await expect(f.save("{}")).rejects.toThrow(/ENOENT/);
    mkdirSync(dir);
    await f.save('{"back":true}');
    expect(readFileSync(path, "utf8")).toBe('{"back":true}');
  });
});
