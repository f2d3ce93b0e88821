// VFIO_DEVICE_RESET: the reset with full CXL scope (the seed thread's rule; FLR through config space
// keeps CXL.io scope). Container, group and device fds are opened in the documented order and all closed
// on every path. Note that vfio-pci itself resets the function when the device fd is opened and closed.
import { join } from "node:path";
import { CxlrcError } from "../../../../shared/errors.ts";
import type { Logger } from "../../../../shared/log.ts";
import { O_RDWR, sysClose, sysIoctl, sysOpen } from "./libc.ts";
import { readAttr, readLinkName } from "./sysfs-attr.ts";
import { deviceDir, type SysfsRoots, vfioContainerPath, vfioGroupPath } from "./sysfs-paths.ts";
import {
  VFIO_API_VERSION,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_INFO_BYTES,
  VFIO_DEVICE_RESET,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_FLAGS_VIABLE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_STATUS_BYTES,
  VFIO_SET_IOMMU,
  VFIO_TYPE1_IOMMU,
} from "./vfio-ioctl.ts";

const EBUSY = 16;

/** The system calls vfioReset makes; tests substitute a recording fake. */
export interface VfioSys {
  open(path: string, flags: number): number;
  close(fd: number, path: string): void;
  ioctl(fd: number, path: string, name: string, request: number, arg?: number | Buffer | string): number;
}

export const realVfioSys: VfioSys = { open: sysOpen, close: sysClose, ioctl: sysIoctl };

export interface VfioResetDeps {
  roots: SysfsRoots;
  log: Logger;
  sys?: VfioSys;
}

const unsupported = (message: string, details: Record<string, unknown>) =>
  new CxlrcError("unsupported", message, details);

export async function vfioReset(deps: VfioResetDeps, bdf: string): Promise<void> {
  const { roots, log } = deps;
  const sys = deps.sys ?? realVfioSys;
  const dir = deviceDir(roots, bdf);
  const driver = await readLinkName(join(dir, "driver"));
  if (driver === null || !driver.includes("vfio")) {
    throw unsupported(`${bdf} is bound to ${driver ?? "no driver"}, not a vfio driver: bind vfio-pci first`, {
      bdf,
      driver,
    });
  }
  const groupName = await readLinkName(join(dir, "iommu_group"));
  if (groupName === null || !/^\d+$/.test(groupName)) {
    throw unsupported(`${bdf} has no IOMMU group (${join(dir, "iommu_group")}): VFIO needs an IOMMU`, {
      bdf,
    });
  }
  const group = Number(groupName);
  // vfio-pci offers VFIO_DEVICE_RESET only when the kernel can reset the function. Finding that out through
  // VFIO_DEVICE_GET_INFO means opening the device, and vfio-pci resets a device it opened when it lets go of
  // it (a bus reset: the CXL state is gone) even if the reset is then refused. So ask sysfs first.
  const methods = await readAttr(join(dir, "reset_method"));
  if (methods !== null && methods.trim() === "") {
    throw unsupported(
      `${bdf} has every kernel reset method disabled (reset_method is empty): vfio-pci offers no VFIO_DEVICE_RESET`,
      { bdf, reason: "no-reset-method" },
    );
  }

  const opened: { fd: number; path: string }[] = [];
  const openFd = (path: string) => {
    const fd = sys.open(path, O_RDWR);
    opened.push({ fd, path });
    return fd;
  };
  try {
    const containerPath = vfioContainerPath(roots);
    const container = openFd(containerPath);
    const api = sys.ioctl(container, containerPath, "VFIO_GET_API_VERSION", VFIO_GET_API_VERSION);
    if (api !== VFIO_API_VERSION) {
      throw unsupported(`${containerPath}: VFIO API version ${api}, expected ${VFIO_API_VERSION}`, { bdf });
    }
    const type1 = sys.ioctl(
      container,
      containerPath,
      "VFIO_CHECK_EXTENSION",
      VFIO_CHECK_EXTENSION,
      VFIO_TYPE1_IOMMU,
    );
    if (type1 <= 0) throw unsupported(`${containerPath}: no Type1 IOMMU support`, { bdf });

    const groupPath = vfioGroupPath(roots, group);
    let groupFd: number;
    try {
      groupFd = openFd(groupPath);
    } catch (e) {
      if (e instanceof CxlrcError && e.details.errno === EBUSY) {
        throw new CxlrcError(
          "device-busy",
          `${groupPath} is open elsewhere (EBUSY): another VFIO user (a VM?) holds ${bdf}'s group`,
          { bdf, path: groupPath, errno: EBUSY },
          { cause: e },
        );
      }
      throw e;
    }
    const status = Buffer.alloc(VFIO_GROUP_STATUS_BYTES);
    status.writeUInt32LE(VFIO_GROUP_STATUS_BYTES, 0);
    sys.ioctl(groupFd, groupPath, "VFIO_GROUP_GET_STATUS", VFIO_GROUP_GET_STATUS, status);
    if ((status.readUInt32LE(4) & VFIO_GROUP_FLAGS_VIABLE) === 0) {
      throw unsupported(
        `IOMMU group ${group} of ${bdf} is not viable: every device in it must be bound to a vfio driver or unbound`,
        { bdf, group },
      );
    }
    const containerArg = Buffer.alloc(4);
    containerArg.writeInt32LE(container, 0);
    sys.ioctl(groupFd, groupPath, "VFIO_GROUP_SET_CONTAINER", VFIO_GROUP_SET_CONTAINER, containerArg);
    sys.ioctl(container, containerPath, "VFIO_SET_IOMMU", VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU);

    const devicePath = `${groupPath} device ${bdf}`;
    const deviceFd = sys.ioctl(groupFd, groupPath, "VFIO_GROUP_GET_DEVICE_FD", VFIO_GROUP_GET_DEVICE_FD, bdf);
    opened.push({ fd: deviceFd, path: devicePath });
    const info = Buffer.alloc(VFIO_DEVICE_INFO_BYTES);
    info.writeUInt32LE(VFIO_DEVICE_INFO_BYTES, 0);
    sys.ioctl(deviceFd, devicePath, "VFIO_DEVICE_GET_INFO", VFIO_DEVICE_GET_INFO, info);
    const flags = info.readUInt32LE(4);
    if ((flags & VFIO_DEVICE_FLAGS_RESET) === 0) {
      // The device was opened: vfio-pci resets it when the fds close, so its CXL state may be lost.
      throw unsupported(
        `${bdf} does not support VFIO_DEVICE_RESET (device info flags 0x${flags.toString(16)})`,
        {
          bdf,
          flags,
          deviceOpened: true,
        },
      );
    }
    sys.ioctl(deviceFd, devicePath, "VFIO_DEVICE_RESET", VFIO_DEVICE_RESET);
    log.info({ bdf, group, regions: info.readUInt32LE(8) }, "VFIO device reset done");
  } finally {
    for (const { fd, path } of opened.reverse()) {
      try {
        sys.close(fd, path);
      } catch (e) {
        log.warn({ err: e, bdf, path }, "closing VFIO fd failed");
      }
    }
  }
}
