// A bounded memory of recent entries: a plain Map whose insertion order is its recency.

/** Store `value` under `key` as the newest entry; past `max` entries the oldest goes. */
export function remember<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value as K);
}
