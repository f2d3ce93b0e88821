// The kernel lab: cxlrc's sysfs/VFIO backend and the agent's operations on a real Linux kernel (Debian's
// current one) under QEMU with CXL devices and the emulated IOMMU. Two boots, started together: the
// "single" scenario (one Type-3 device below a root port; first, from the drivers the kernel chose, the driver
// hand-over through the bus) and the "switch" scenario (a CXL switch with a
// device on each of two downstream ports). Each runs all its checks in one guest run; every test asserts on
// what one check read back from the device inside the guest.
import { decoderRebindTests } from "./decoder-rebind.checks.ts";
import { driverHandoverTests } from "./driver-handover.checks.ts";
import { useLabRuns } from "./lab-run.ts";
import { singleDeviceTests } from "./single.checks.ts";
import { switchTests } from "./switch.checks.ts";

const runs = useLabRuns(["single", "switch"]);

driverHandoverTests(runs.single);
singleDeviceTests(runs.single);
decoderRebindTests(runs.single);
switchTests(runs.switch);
