// A bounded memory of recent entries: a plain Map (or Set) whose insertion order is its recency.
//
// The oldest entries go in batches, not one per insert: V8 leaves a deleted entry of a Map as a hole until
// the table is next rebuilt, and an iteration starts at the front, so `keys().next()` on a map whose oldest
// entries keep being deleted walks every hole left so far: on average half the map's size per call
// (measured on node 20: 1.1 µs per insert at 4,096 entries, 26 µs at 100,000). One walk per batch of an
// eighth of `max` costs a few steps per insert instead.

/** Past `max` entries by more than an eighth of `max`, the oldest go, down to `max`, in one walk. */
export function trimOldest<K>(memory: Map<K, unknown> | Set<K>, max: number): void {
  if (memory.size <= max + (max >> 3)) return;
  let excess = memory.size - max;
  for (const key of memory.keys()) {
    if (excess-- <= 0) break;
    memory.delete(key);
  }
}

/** Store `value` under `key` as the newest entry; past `max` entries (by an eighth) the oldest go. */
export function remember<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  trimOldest(map, max);
}
