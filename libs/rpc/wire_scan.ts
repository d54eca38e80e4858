/**
 * Reading a protobuf message's wire bytes without decoding it, to refuse a request before its
 * decoding costs what it would: an 8 MiB Txn of a million empty operations takes seconds of CPU
 * and hundreds of megabytes to decode, only to be refused for having more than 128 of them.
 *
 * The scan fails closed: what it cannot read as plainly as the decoder would — a group (proto3 has
 * none, but protobufjs skips them in unknown fields), a varint longer than 10 bytes, a tag or a
 * length longer than 5 bytes or past 2^32, a value past the end — makes the message malformed, so
 * that no encoding the decoder accepts can hide a field from the scan.
 *
 * @module
 */

/** A top-level field of a message, as its wire bytes hold it. */
export interface WireField {
  /** The field number. */
  readonly field: number;
  /** Where its value starts, and where it ends (exclusive), in the message's bytes. */
  readonly start: number;
  readonly end: number;
}

/**
 * Calls `visit` with each top-level field of `bytes`, in order, until it returns false. Whether
 * the bytes read plainly up to there: false at the first malformed part (see the module).
 */
export function eachWireField(bytes: Uint8Array, visit: (field: WireField) => boolean): boolean {
  let at = 0;
  /** A varint of at most `maxBytes` bytes, below 2^35 (-1: malformed). */
  const varint = (maxBytes: number): number => {
    let value = 0;
    for (let i = 0; i < maxBytes; i++) {
      if (at >= bytes.length) return -1;
      const byte = bytes[at++];
      if (i < 5) value += (byte & 0x7f) * 2 ** (7 * i);
      if ((byte & 0x80) === 0) return value;
    }
    return -1;
  };
  while (at < bytes.length) {
    const tag = varint(5);
    if (tag < 0 || tag >= 2 ** 32) return false;
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (field === 0) return false;
    let start = at;
    if (wireType === 0) {
      if (varint(10) < 0) return false;
    } else if (wireType === 1) {
      at += 8;
    } else if (wireType === 2) {
      const length = varint(5);
      if (length < 0 || length >= 2 ** 32) return false;
      start = at;
      at += length;
    } else if (wireType === 5) {
      at += 4;
    } else {
      return false;
    }
    if (at > bytes.length) return false;
    if (!visit({ field, start, end: at })) return true;
  }
  return true;
}

/**
 * Why `bytes` cannot be a message with at most `max` entries in each of `fields` (number → name)
 * at its top level: the first field past `max`, or that the bytes are malformed (see the module);
 * undefined when neither.
 */
export function repeatedPast(
  bytes: Uint8Array,
  fields: ReadonlyMap<number, string>,
  max: number,
  limitName: string,
): string | undefined {
  const counts = new Map<number, number>();
  let past: string | undefined;
  const plain = eachWireField(bytes, ({ field }) => {
    const name = fields.get(field);
    if (name === undefined) return true;
    const count = (counts.get(field) ?? 0) + 1;
    counts.set(field, count);
    if (count <= max) return true;
    past = `Field "${name}" has more than ${max} entries: the maximum is ${max} (${limitName})`;
    return false;
  });
  return past ?? (plain ? undefined : MALFORMED);
}

/** The refusal of bytes the scan cannot read plainly. */
export const MALFORMED = "The message is not plain protobuf (a group, an overlong varint, a tag " +
  "or length past 2^32, or a value past the end)";
