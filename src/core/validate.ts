/**
 * Tiny predicates and one error helper for validating public parameters in TypeScript, so that
 * bad input is rejected with "Expected X for Y but received Z" and never reaches C++.
 */

/** Describes a received value briefly for an error message. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length: number }).length ?? value.byteLength}`;
  if (typeof value === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}

/** The standard error for an invalid parameter. */
export function invalidParameterError(name: string, expected: string, actual: unknown): TypeError {
  return new TypeError(`Expected ${expected} for ${name} but received ${describeValue(actual)}`);
}

export const is = {
  defined: <T>(v: T | undefined | null): v is T => v !== undefined && v !== null,
  bool: (v: unknown): v is boolean => typeof v === 'boolean',
  string: (v: unknown): v is string => typeof v === 'string',
  number: (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v),
  integer: (v: unknown): v is number => Number.isInteger(v),
  inRange: (v: number, min: number, max: number): boolean => v >= min && v <= max,
  positiveInteger: (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0,
  nonNegativeInteger: (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0,
  oneOf: <T extends string>(v: unknown, values: readonly T[]): v is T => typeof v === 'string' && (values as readonly string[]).includes(v),
  typedArray: (v: unknown): v is ArrayBufferView => ArrayBuffer.isView(v) && !(v instanceof DataView),
};

/** Throws unless `value` is an integer in [min, max]. */
export function assertInteger(name: string, value: unknown, min = -Infinity, max = Infinity): asserts value is number {
  if (!is.integer(value) || !is.inRange(value, min, max)) {
    const range = min === -Infinity && max === Infinity ? 'an integer' : max === Infinity ? `an integer >= ${min}` : `an integer between ${min} and ${max}`;
    throw invalidParameterError(name, range, value);
  }
}

/** Throws unless `value` is a finite number in [min, max]. */
export function assertNumber(name: string, value: unknown, min = -Infinity, max = Infinity): asserts value is number {
  if (!is.number(value) || !is.inRange(value, min, max)) {
    const range = min === -Infinity && max === Infinity ? 'a finite number' : `a number between ${min} and ${max}`;
    throw invalidParameterError(name, range, value);
  }
}

/** Throws unless `value` is one of `values`. */
export function assertOneOf<T extends string>(name: string, value: unknown, values: readonly T[]): asserts value is T {
  if (!is.oneOf(value, values)) throw invalidParameterError(name, `one of ${values.join(', ')}`, value);
}
