// VFIO uapi numbers (include/uapi/linux/vfio.h): every request is _IO(VFIO_TYPE, VFIO_BASE + n) with
// VFIO_TYPE ';' (0x3b) and VFIO_BASE 100; arguments travel by pointer regardless of the _IO encoding.
const VFIO_TYPE = 0x3b;
const VFIO_BASE = 100;
const vfioIo = (n: number) => (VFIO_TYPE << 8) | (VFIO_BASE + n);

export const VFIO_GET_API_VERSION = vfioIo(0);
export const VFIO_CHECK_EXTENSION = vfioIo(1);
export const VFIO_SET_IOMMU = vfioIo(2);
export const VFIO_GROUP_GET_STATUS = vfioIo(3);
export const VFIO_GROUP_SET_CONTAINER = vfioIo(4);
export const VFIO_GROUP_GET_DEVICE_FD = vfioIo(6);
export const VFIO_DEVICE_GET_INFO = vfioIo(7);
export const VFIO_DEVICE_RESET = vfioIo(11);
export const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = vfioIo(12);
export const VFIO_DEVICE_PCI_HOT_RESET = vfioIo(13);

export const VFIO_API_VERSION = 0;
export const VFIO_TYPE1_IOMMU = 1;
/** struct vfio_group_status { u32 argsz; u32 flags; } */
export const VFIO_GROUP_STATUS_BYTES = 8;
export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
/** struct vfio_device_info up to num_irqs (the kernel's minimum argsz): argsz, flags, num_regions, num_irqs. */
export const VFIO_DEVICE_INFO_BYTES = 16;
export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
