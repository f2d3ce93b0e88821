import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createSysfsBackend } from "../../services/agent/backends/sysfs/sysfs-backend.ts";
import type { HardwareBackend } from "../../shared/hw/backend.ts";
import { configSpace, createFakeSysfs, type FakeSysfs } from "../harness/fake-sysfs.ts";

const DEV = "0000:01:00.0";
let fake: FakeSysfs;
let hw: HardwareBackend;

beforeEach(() => {
  fake = createFakeSysfs();
  fake.addDevice({
    bdf: "0000:00:01.0",
    headerType: 1,
    secondaryBus: 1,
    subordinateBus: 1,
    classCode: 0x060400,
  });
  fake.addDevice({ bdf: DEV, parent: "0000:00:01.0", vendorId: 0x1e98, deviceId: 0x0d93 });
  hw = createSysfsBackend({ sysfsRoot: fake.sysfsRoot, procRoot: fake.procRoot, devRoot: fake.devRoot });
});
afterEach(async () => {
  await hw.close();
  fake.cleanup();
});

const configBytes = () => readFileSync(fake.file(DEV, "config"));

describe("config space on the fake tree", () => {
  it("reads the header fields little-endian at width 1, 2 and 4", async () => {
    expect(await hw.configRead(DEV, 0x00, 2)).toBe(0x1e98);
    expect(await hw.configRead(DEV, 0x02, 2)).toBe(0x0d93);
    expect(await hw.configRead(DEV, 0x00, 4)).toBe(0x0d931e98);
    expect(await hw.configRead(DEV, 0x0b, 1)).toBe(0x05);
  });

  it("writes land at the offset with exactly the width, little-endian", async () => {
    await hw.configWrite(DEV, 0x104, 4, 0xa1b2c3d4);
    await hw.configWrite(DEV, 0x10a, 2, 0xbeef);
    await hw.configWrite(DEV, 0x10f, 1, 0x7e);
    const b = configBytes();
    expect([...b.subarray(0x103, 0x110)]).toEqual([
      0, 0xd4, 0xc3, 0xb2, 0xa1, 0, 0, 0xef, 0xbe, 0, 0, 0, 0x7e,
    ]);
    expect(b.length).toBe(4096);
    expect(await hw.configRead(DEV, 0x104, 4)).toBe(0xa1b2c3d4);
    expect(await hw.configRead(DEV, 0x10a, 2)).toBe(0xbeef);
  });

  it("refuses unaligned, out-of-range, wrong-width and oversized accesses with a clear error", async () => {
    await expect(hw.configRead(DEV, 0x101, 2)).rejects.toThrow(
      "config offset 0x101 is not aligned to its width 2",
    );
    await expect(hw.configWrite(DEV, 0x102, 4, 0)).rejects.toThrow("not aligned to its width 4");
    await expect(hw.configRead(DEV, 4096, 4)).rejects.toThrow("outside config space");
    await expect(hw.configRead(DEV, -4, 4)).rejects.toMatchObject({ kind: "bad-input" });
    await expect(hw.configRead(DEV, 0, 3 as 4)).rejects.toThrow("width must be 1, 2 or 4");
    await expect(hw.configWrite(DEV, 0, 1, 0x100)).rejects.toThrow("does not fit in 1 byte");
    await expect(hw.configRead("1:2:3", 0, 4)).rejects.toMatchObject({ kind: "bad-input" });
  });

  it("an absent function reads all-ones and refuses writes", async () => {
    expect(await hw.configRead("0000:05:00.0", 0, 4)).toBe(0xffffffff);
    expect(await hw.configRead("0000:05:00.0", 0, 2)).toBe(0xffff);
    await expect(hw.configWrite("0000:05:00.0", 4, 2, 0)).rejects.toMatchObject({ kind: "device-absent" });
  });

  it("a 256-byte config space reads all-ones beyond it and refuses writes there", async () => {
    fake.addDevice({ bdf: "0000:00:02.0", config: configSpace({ size: 256 }) });
    expect(await hw.configRead("0000:00:02.0", 0x100, 4)).toBe(0xffffffff);
    await expect(hw.configWrite("0000:00:02.0", 0x100, 4, 1)).rejects.toThrow(
      "beyond 0000:00:02.0's config space (256 bytes)",
    );
    expect((await hw.configReadAll("0000:00:02.0")).length).toBe(256);
  });

  it("configReadAll returns the whole file, including earlier writes", async () => {
    await hw.configWrite(DEV, 0xffc, 4, 0x12345678);
    const all = await hw.configReadAll(DEV);
    expect(Buffer.from(all).equals(configBytes())).toBe(true);
    expect(all.length).toBe(4096);
  });
});

describe("MMIO through mmap of resource0", () => {
  it("writes reach the file and reads see the file", async () => {
    await hw.mmioWrite32(DEV, 0, 0x1110, 0xcafef00d);
    expect(readFileSync(fake.file(DEV, "resource0")).readUInt32LE(0x1110)).toBe(0xcafef00d);
    const res = readFileSync(fake.file(DEV, "resource0"));
    res.writeUInt32LE(0x00310001, 0x1114);
    writeFileSync(fake.file(DEV, "resource0"), res); // same inode: the shared mapping sees it
    expect(await hw.mmioRead32(DEV, 0, 0x1114)).toBe(0x00310001);
    expect(await hw.mmioRead32(DEV, 0, 0xfffc)).toBe(0);
  });

  it("refuses unaligned offsets, offsets past the BAR and bad values", async () => {
    await expect(hw.mmioRead32(DEV, 0, 0x1112)).rejects.toThrow(
      /must be 4-byte aligned and inside the BAR \(65536 bytes/,
    );
    await expect(hw.mmioRead32(DEV, 0, 0x10000)).rejects.toMatchObject({ kind: "bad-input" });
    await expect(hw.mmioWrite32(DEV, 0, 0, 2 ** 32)).rejects.toThrow("not a 32-bit unsigned integer");
    await expect(hw.mmioRead32(DEV, 6, 0)).rejects.toThrow("BAR number must be 0..5");
  });

  it("a missing resource file is an error naming its path", async () => {
    const path = fake.file(DEV, "resource2");
    await expect(hw.mmioRead32(DEV, 2, 0)).rejects.toThrow(
      `BAR 2 of ${DEV}: cannot stat ${path}: ENOENT (2)`,
    );
    rmSync(fake.file(DEV, "resource0"));
    await expect(hw.mmioRead32(DEV, 0, 0)).rejects.toMatchObject({ kind: "backend", details: { errno: 2 } });
  });

  it("close() unmaps, and the backend refuses use afterwards", async () => {
    await hw.mmioWrite32(DEV, 0, 0, 1);
    await hw.close();
    await hw.close(); // idempotent
    await expect(hw.mmioRead32(DEV, 0, 0)).rejects.toThrow("closed");
    await expect(hw.configRead(DEV, 0, 4)).rejects.toThrow("closed");
  });
});
