// Operation ids: the agent's idempotency key. Derived only from (request, phase, round), so a step run again
// after the snapshot is restored asks for the same operation and gets the first result back.

const MAX_OP_ID = 128; // shared/bus/agent-messages.ts OpId

/** FNV-1a, 32 bit, hex: enough to shorten an over-long request id deterministically. */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

export function opIdFor(subject: string, phase: string, round: number): string {
  const id = `${subject}/${phase}/${round}`;
  if (id.length <= MAX_OP_ID) return id;
  return `${subject.slice(0, 80)}~${fnv1a(subject)}/${phase}/${round}`;
}
