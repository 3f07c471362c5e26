import { TransformError, errorMessage, type RecordCoordinates } from '../errors.ts';
import type { ChangeEvent } from '../model/change-event.ts';
import type { NamedTransform } from './transform.ts';

/**
 * Runs the transforms in order and stops at the first that drops the event (returns null).
 * A throw becomes a TransformError naming the transform and the record, so it can be dead-lettered.
 * Compile once per table at startup.
 */
export function compileChain(transforms: readonly NamedTransform[]): (event: ChangeEvent) => ChangeEvent | null {
  const steps = [...transforms];
  return (event) => {
    let current: ChangeEvent = event;
    for (const step of steps) {
      let next: ChangeEvent | null | undefined;
      try {
        next = step.apply(current);
      } catch (err) {
        // A nested chain (e.g. in a handler) already named the transform that failed.
        if (err instanceof TransformError) throw err;
        throw new TransformError(step.name, errorMessage(err), {
          code: 'TRANSFORM_FAILED',
          cause: err,
          at: coordinates(event),
        });
      }
      // Handlers written loosely may return undefined; dropping silently would hide the bug.
      if (next === undefined) {
        throw new TransformError(step.name, 'returned undefined (return null to drop the event)', {
          code: 'TRANSFORM_FAILED',
          at: coordinates(event),
        });
      }
      if (next === null) return null;
      current = next;
    }
    return current;
  };
}

function coordinates(event: ChangeEvent): RecordCoordinates {
  const { topic, partition, offset } = event.kafka;
  return { topic, partition, offset };
}
