// Decode cost per device: a 4 KiB config space (DVSEC 0, Register Locator, a few other capabilities) plus
// its 64 KiB component block with the HDM decoders. Goal: ≤ 50 µs per device.
import { performance } from "node:perf_hooks";
import { decodeComponentBlock } from "../shared/cxl/component.ts";
import { decodeConfigSpace } from "../shared/cxl/decode.ts";
import { parseDump } from "../shared/cxl/dump.ts";
import { type2Component, type2Config, type2Dump } from "../test/builders/samples.ts";
import { type BenchRow, summarize } from "./lib.ts";

const WARMUP = 2_000;
const RUNS = 20_000;
const GOAL_US = 50;

function measure(name: string, fn: () => unknown, goal?: string): BenchRow {
  for (let i = 0; i < WARMUP; i++) fn();
  const samples = new Array<number>(RUNS);
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    fn();
    samples[i] = (performance.now() - t0) * 1000;
  }
  const { p50, p99, mean } = summarize(samples);
  return { name, runs: RUNS, value: mean, unit: "µs/device", p50, p99, ...(goal ? { goal } : {}) };
}

export async function bench(): Promise<BenchRow[]> {
  const config = type2Config();
  const component = type2Component();
  const dump = type2Dump();
  return [
    measure(
      "decode 4 KiB config + component block",
      () => {
        decodeConfigSpace(config, { bdf: "0d:00.0" });
        decodeComponentBlock(component);
      },
      `≤ ${GOAL_US} µs`,
    ),
    measure("decode 4 KiB config space only", () => decodeConfigSpace(config)),
    measure("parse lspci -xxxx dump (4 KiB) + decode", () => decodeConfigSpace(parseDump(dump)[0]!.bytes)),
  ];
}
