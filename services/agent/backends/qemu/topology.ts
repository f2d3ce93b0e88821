// QEMU command lines for the CXL topologies cxlrc tests against (QEMU 7.2, q35 with cxl=on).
// Every Type-3 device gets its own memory and LSA backend files (sparse, made by the caller).
import { join } from "node:path";

export const TOPOLOGY_NAMES = ["single", "two-root-ports", "switch"] as const;
export type TopologyName = (typeof TOPOLOGY_NAMES)[number];

/** First bus number of the CXL host bridge (pxb-cxl bus_nr). */
export const CXL_HOST_BRIDGE_BUS = 12;
/** Sizes of the backing files (sparse, so nothing is written to disk). */
export const CXL_MEM_SIZE = "512M";
export const CXL_LSA_SIZE = "256M";
export const CXL_MEM_SIZE_BYTES = 512 * 1024 * 1024;
export const CXL_LSA_SIZE_BYTES = 256 * 1024 * 1024;

export type QemuDriver = "pxb-cxl" | "cxl-rp" | "cxl-upstream" | "cxl-downstream" | "cxl-type3";

export interface QemuDeviceSpec {
  driver: QemuDriver;
  /** QEMU id (-device ...,id=). */
  id: string;
  /** id of the QEMU bus (device) it sits on. */
  bus: string;
  props: Record<string, string | number>;
}

export interface BackingFile {
  path: string;
  sizeBytes: number;
}

export interface TopologyPlan {
  name: TopologyName;
  devices: QemuDeviceSpec[];
  backingFiles: BackingFile[];
  /** Machine and device arguments (without the qtest/accel ones). */
  args: string[];
}

const HOST_BRIDGE_ID = "cxl.1";

/** Port and Type-3 layout of each topology, as (driver, id, parent) rows. */
function layout(name: TopologyName): Array<{ driver: QemuDriver; id: string; bus: string; port?: number }> {
  switch (name) {
    case "single":
      return [
        { driver: "cxl-rp", id: "rp0", bus: HOST_BRIDGE_ID, port: 0 },
        { driver: "cxl-type3", id: "mem0", bus: "rp0" },
      ];
    case "two-root-ports":
      return [
        { driver: "cxl-rp", id: "rp0", bus: HOST_BRIDGE_ID, port: 0 },
        { driver: "cxl-type3", id: "mem0", bus: "rp0" },
        { driver: "cxl-rp", id: "rp1", bus: HOST_BRIDGE_ID, port: 1 },
        { driver: "cxl-type3", id: "mem1", bus: "rp1" },
      ];
    case "switch":
      return [
        { driver: "cxl-rp", id: "rp0", bus: HOST_BRIDGE_ID, port: 0 },
        { driver: "cxl-upstream", id: "us0", bus: "rp0" },
        { driver: "cxl-downstream", id: "ds0", bus: "us0", port: 0 },
        { driver: "cxl-type3", id: "mem0", bus: "ds0" },
        { driver: "cxl-downstream", id: "ds1", bus: "us0", port: 1 },
        { driver: "cxl-type3", id: "mem1", bus: "ds1" },
      ];
  }
}

/** Build the QEMU arguments for a topology; backing files go in `dir` (the caller creates them). */
export function buildTopology(name: TopologyName, dir: string): TopologyPlan {
  const devices: QemuDeviceSpec[] = [
    { driver: "pxb-cxl", id: HOST_BRIDGE_ID, bus: "pcie.0", props: { bus_nr: CXL_HOST_BRIDGE_BUS } },
  ];
  const backingFiles: BackingFile[] = [];
  const objects: string[] = [];
  // Every port needs a distinct (chassis, slot) pair; slots from 2 up, as in QEMU's docs/system/devices/cxl.rst.
  let slot = 2;
  let type3Count = 0;
  for (const row of layout(name)) {
    const props: Record<string, string | number> = {};
    if (row.driver === "cxl-rp" || row.driver === "cxl-downstream") {
      props.port = row.port!;
      props.chassis = 0;
      props.slot = slot++;
    }
    if (row.driver === "cxl-type3") {
      const n = type3Count++;
      const mem = { path: join(dir, `cxl-mem${n}.raw`), sizeBytes: CXL_MEM_SIZE_BYTES };
      const lsa = { path: join(dir, `cxl-lsa${n}.raw`), sizeBytes: CXL_LSA_SIZE_BYTES };
      backingFiles.push(mem, lsa);
      objects.push(
        "-object",
        `memory-backend-file,id=cxl-mem${n},share=on,mem-path=${mem.path},size=${CXL_MEM_SIZE}`,
        "-object",
        `memory-backend-file,id=cxl-lsa${n},share=on,mem-path=${lsa.path},size=${CXL_LSA_SIZE}`,
      );
      props.memdev = `cxl-mem${n}`;
      props.lsa = `cxl-lsa${n}`;
    }
    devices.push({ driver: row.driver, id: row.id, bus: row.bus, props });
  }
  const fmw = [`cxl-fmw.0.targets.0=${HOST_BRIDGE_ID}`, "cxl-fmw.0.size=4G"];
  // Several devices below one host bridge: name the interleave granularity explicitly (accepted by 7.2).
  if (type3Count > 1) fmw.push("cxl-fmw.0.interleave-granularity=8k");
  const args = [
    "-machine",
    "q35,cxl=on",
    "-m",
    "1G,maxmem=4G,slots=4",
    ...objects,
    ...devices.flatMap((d) => ["-device", deviceArg(d)]),
    "-M",
    fmw.join(","),
  ];
  return { name, devices, backingFiles, args };
}

function deviceArg(d: QemuDeviceSpec): string {
  const props = Object.entries(d.props).map(([k, v]) => `${k}=${v}`);
  return [d.driver, ...props, `bus=${d.bus}`, `id=${d.id}`].join(",");
}

export function isTopologyName(s: string): s is TopologyName {
  return (TOPOLOGY_NAMES as readonly string[]).includes(s);
}
