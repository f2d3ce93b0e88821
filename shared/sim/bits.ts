// Bit masks the simulator acts on, looked up by name from the register map (never re-declared by hand).
import { field, fieldMaskInPlace, type RegisterDef } from "../cxl/regdef.ts";
import { CXL_DEVICE, CXL_PORT_EXT, HDM, HDM_DECODER, PCI, PCI_BRIDGE, PCIE } from "../cxl/registers.ts";

const bit = (reg: RegisterDef, name: string) => fieldMaskInPlace(field(reg, name));

export const BIT = {
  memorySpace: bit(PCI.command, "memorySpace"),
  busMaster: bit(PCI.command, "busMaster"),
  intxDisable: bit(PCI.command, "intxDisable"),
  initiateFlr: bit(PCIE.devCtl, "initiateFlr"),
  secondaryBusReset: bit(PCI_BRIDGE.bridgeControl, "secondaryBusReset"),
  unmaskSbr: bit(CXL_PORT_EXT.portControl, "unmaskSbr"),
  cacheEnable: bit(CXL_DEVICE.control, "cacheEnable"),
  memEnable: bit(CXL_DEVICE.control, "memEnable"),
  disableCaching: bit(CXL_DEVICE.control2, "disableCaching"),
  initiateCacheWbInv: bit(CXL_DEVICE.control2, "initiateCacheWbInv"),
  initiateCxlReset: bit(CXL_DEVICE.control2, "initiateCxlReset"),
  cxlResetMemClrEnable: bit(CXL_DEVICE.control2, "cxlResetMemClrEnable"),
  cacheInvalid: bit(CXL_DEVICE.status2, "cacheInvalid"),
  cxlResetComplete: bit(CXL_DEVICE.status2, "cxlResetComplete"),
  cxlResetError: bit(CXL_DEVICE.status2, "cxlResetError"),
  configLock: bit(CXL_DEVICE.lock, "configLock"),
  hdmDecoderEnable: bit(HDM.globalControl, "hdmDecoderEnable"),
  lockOnCommit: bit(HDM_DECODER.control, "lockOnCommit"),
  commit: bit(HDM_DECODER.control, "commit"),
  committed: bit(HDM_DECODER.control, "committed"),
  errorNotCommitted: bit(HDM_DECODER.control, "errorNotCommitted"),
} as const;
