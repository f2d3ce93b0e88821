// Child processes and temp dirs that must not outlive this process (nats-server and QEMU in tests, chaos
// coordinators, the demo's bus): SIGKILLed (SIGCONT first, in case they were paused) and removed when this
// process exits, whatever way it exits. Synchronous, as an 'exit' handler must be.
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
let hooked = false;

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", () => {
    for (const child of children) {
      try {
        child.kill("SIGCONT");
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const dir of dirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  });
}

/** Kill `child` when this process exits (unless it is gone by then). Returns: forget it (it ended). */
export function killOnExit(child: ChildProcess): () => void {
  hook();
  children.add(child);
  child.once("exit", () => children.delete(child));
  return () => {
    children.delete(child);
  };
}

/** Remove `dir` when this process exits. Returns: forget it (removed already, or kept on purpose). */
export function removeOnExit(dir: string): () => void {
  hook();
  dirs.add(dir);
  return () => {
    dirs.delete(dir);
  };
}
