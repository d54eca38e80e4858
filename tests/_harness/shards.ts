/**
 * Which shard a key is in on a fresh dev cluster, for tests that need keys in given shards:
 * placement splits the hash space evenly and numbers the shards from 1 (services/placement,
 * bootstrap), and moves never change the ranges.
 */
import { keyHash, splitEvenly } from "@tinykv/shard";

const encoder = new TextEncoder();

/** The shard `key` is in on a fresh cluster of `shards` shards. */
export function shardOfKey(key: string, shards: number): number {
  const hash = keyHash(encoder.encode(key));
  return splitEvenly(shards).findIndex((range) => hash >= range.lo && hash < range.hi) + 1;
}

/**
 * `perShard` keys `name(i)` in each of `shards` shards, the first ones found, in key order.
 * Throws when 10,000 names do not fill every shard.
 */
export function keysInEveryShard(
  shards: number,
  perShard: number,
  name: (i: number) => string,
): string[] {
  const counts = new Map<number, number>();
  const keys: string[] = [];
  for (let i = 0; keys.length < shards * perShard; i++) {
    if (i >= 10_000) throw new Error(`Found only ${keys.length} keys in every shard`);
    const key = name(i);
    const shard = shardOfKey(key, shards);
    if ((counts.get(shard) ?? 0) >= perShard) continue;
    counts.set(shard, (counts.get(shard) ?? 0) + 1);
    keys.push(key);
  }
  return keys.sort();
}
