/**
 * Command-line flags of the benchmarks: `--flag value` or `--flag=value`, switches without a value,
 * and the checks of a value with the message that names the flag and what was expected.
 *
 * @module
 */

/** A flag that cannot be taken, with why; parsers turn it into their error result. */
export class FlagError extends Error {}

/** `T` with its fields writable, as a parser fills it. */
export type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Sets a flag's value (`value` as given) on `options`, or throws a {@linkcode FlagError}. */
export type ValueFlag<T> = (options: Mutable<T>, value: string, flag: string) => void;

/**
 * `defaults` with `args` applied: each switch (`--json`) and each value flag (`--seconds 10`,
 * `--seconds=10`). Throws a {@linkcode FlagError} for an unknown argument or a missing or bad value.
 */
export function applyFlags<T>(
  args: readonly string[],
  defaults: T,
  switches: Readonly<Record<string, (options: Mutable<T>) => void>>,
  valueFlags: Readonly<Record<string, ValueFlag<T>>>,
): Mutable<T> {
  const options: Mutable<T> = { ...defaults };
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = splitFlag(args[i]);
    const toggle = switches[flag];
    const setter = valueFlags[flag];
    if (toggle !== undefined && inline === undefined) toggle(options);
    else if (setter !== undefined) {
      const value = inline ?? args[++i];
      if (value === undefined) throw new FlagError(`Flag "${flag}" needs a value`);
      setter(options, value, flag);
    } else throw new FlagError(`Unknown argument "${args[i]}": see --help`);
  }
  return options;
}

function splitFlag(arg: string): [string, string | undefined] {
  const equals = arg.indexOf("=");
  return arg.startsWith("--") && equals > 0
    ? [arg.slice(0, equals), arg.slice(equals + 1)]
    : [arg, undefined];
}

/** A number in (0, `max`]. */
export function positiveNumber(flag: string, text: string, max: number): number {
  const value = Number(text);
  if (text.trim() === "" || !(value > 0 && value <= max)) {
    throw new FlagError(`Flag "${flag}" is "${text}": expected a number in (0, ${max}]`);
  }
  return value;
}

/** A number in [0, `max`]. */
export function nonNegativeNumber(flag: string, text: string, max: number): number {
  const value = Number(text);
  if (text.trim() === "" || !(value >= 0 && value <= max)) {
    throw new FlagError(`Flag "${flag}" is "${text}": expected a number in [0, ${max}]`);
  }
  return value;
}

/** An integer from 1 to `max`. */
export function integer(flag: string, text: string, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > max) {
    throw new FlagError(`Flag "${flag}" is "${text}": expected an integer from 1 to ${max}`);
  }
  return value;
}

/** Integers from 1 to `max` separated by commas, each once, in their first order. */
export function integerList(flag: string, text: string, max: number): number[] {
  const parts = text.split(",");
  if (parts.some((part) => !/^\d+$/.test(part) || Number(part) < 1 || Number(part) > max)) {
    throw new FlagError(
      `Flag "${flag}" is "${text}": expected integers from 1 to ${max} separated by commas`,
    );
  }
  return [...new Set(parts.map(Number))];
}

/** A path: any text but the empty one. */
export function nonEmpty(flag: string, text: string): string {
  if (text === "") throw new FlagError(`Flag "${flag}" is empty: expected a path`);
  return text;
}
