/**
 * The generations of state-machine spaces on a node's storage (see `generationPrefix`): finding
 * every one present without reading their data, and deleting one in bounded transactions. The
 * driver deletes a generation once no replica uses it and no snapshot is being staged into it: a
 * replaced generation after a snapshot install, a removed replica's, an abandoned staging's.
 *
 * @module
 */
import {
  generationPrefix,
  type NodeStorage,
  PREFIX,
  prefixEnd,
  type ReadableStore,
  readU64,
} from "./node_storage.ts";

/** Keys deleted per transaction when a generation is removed. */
export const DELETE_KEYS_PER_TRANSACTION = 2000;

/** One generation of one replica's spaces. */
export interface Generation {
  readonly peerId: number;
  readonly generation: number;
}

/** The key naming a generation in sets of live ones. */
export function generationKey(peerId: number, generation: number): string {
  return `${peerId}/${generation}`;
}

/**
 * Every generation with at least one key, found by seeking from one generation's prefix to the
 * next (one read per generation, whatever its size).
 */
export function* storedGenerations(store: ReadableStore): Iterable<Generation> {
  for (const prefix of [PREFIX.space, PREFIX.generationSpace]) {
    const end = new Uint8Array([prefix + 1]);
    let from: Uint8Array = new Uint8Array([prefix]);
    for (;;) {
      const first = firstKey(store, from, end);
      if (first === undefined) break;
      const peerId = readU64(first, 1);
      const generation = prefix === PREFIX.space ? 0 : readU64(first, 9);
      yield { peerId, generation };
      from = prefixEnd(generationPrefix(peerId, generation));
    }
  }
}

function firstKey(
  store: ReadableStore,
  start: Uint8Array,
  end: Uint8Array,
): Uint8Array | undefined {
  for (const { key } of store.range(start, end)) return key;
  return undefined;
}

/**
 * Deletes every key of a generation, {@linkcode DELETE_KEYS_PER_TRANSACTION} per transaction;
 * `going()` is asked between transactions (false stops early). Returns the keys deleted.
 */
export async function deleteGeneration(
  store: NodeStorage,
  generation: Generation,
  going: () => boolean,
): Promise<number> {
  const start = generationPrefix(generation.peerId, generation.generation);
  const end = prefixEnd(start);
  let deleted = 0;
  while (going()) {
    const count = await store.write(() =>
      store.removeRange(start, end, DELETE_KEYS_PER_TRANSACTION)
    );
    deleted += count;
    if (count < DELETE_KEYS_PER_TRANSACTION) break;
  }
  return deleted;
}
