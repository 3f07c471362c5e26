import { GroupActiveError, OffsetsRequestError } from '../consume/group-errors.ts';
import { ConfigError } from '../errors.ts';

/** What the operator asked wrong: reported by message alone, exit code 2. */
export function isRequestError(err: unknown): err is OffsetsRequestError | GroupActiveError | ConfigError {
  return err instanceof OffsetsRequestError || err instanceof GroupActiveError || err instanceof ConfigError;
}
