import { CdcError, type CdcErrorOptions } from '../../errors.ts';

/** Why a view could not use an input value; the code names the class of problem. */
export type ViewInputCode =
  | 'VIEW_NOT_NUMERIC'
  | 'VIEW_NOT_COMPARABLE'
  | 'VIEW_NOT_A_TIME'
  | 'VIEW_STATE_NOT_JSON'
  | 'VIEW_NOT_ADDED'
  | 'VIEW_UNAVAILABLE'
  | 'VIEW_NO_KEY'
  | 'VIEW_FUNCTION_FAILED'
  | 'VIEW_INPUT';

/**
 * A change a view cannot apply (a value of the wrong type for an aggregation, a time that is not a
 * time). The same record fails the same way every time, so it is never retriable: the runtime
 * dead-letters it with stage `view`.
 */
export class ViewInputError extends CdcError {
  override readonly stage = 'view';
  override readonly code: ViewInputCode;
  constructor(code: ViewInputCode, message: string, options: Omit<CdcErrorOptions, 'retriable' | 'code'> = {}) {
    super(message, { ...options, code, retriable: false });
    this.code = code;
  }
}

/** A view definition that cannot work (a window whose advance exceeds its size…). */
export class ViewSpecError extends CdcError {
  override readonly stage = 'view';
  constructor(message: string) {
    super(message, { code: 'VIEW_BAD_SPEC', retriable: false });
  }
}

/**
 * A row new to this transaction was stored by another one meanwhile (one primary key on two
 * partitions at once): the transaction read it as absent, so it is rolled back and run again.
 */
export class RowRaceError extends CdcError {
  override readonly stage = 'view';
  constructor(view: string) {
    super(`view ${view}: a row first seen by this transaction was stored by another one meanwhile`, { code: 'VIEW_ROW_RACE', retriable: true });
  }
}

/** 'a string', 'an object', 'null'…: what was received, for messages. */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
