import { z } from 'zod';
import { dropFieldsTransform } from '../../transforms/drop-fields.ts';
import { filterTransform } from '../../transforms/filter.ts';
import { flattenTransform } from '../../transforms/flatten.ts';
import { renameFieldsTransform } from '../../transforms/rename-fields.ts';
import type { Transform, TransformFactory } from './transform.ts';

/** The built-in transforms by kind. Each key equals its factory's `kind`. */
export const transformFactories = {
  filter: filterTransform,
  rename_fields: renameFieldsTransform,
  drop_fields: dropFieldsTransform,
  flatten: flattenTransform,
} satisfies Record<string, TransformFactory>;

export type TransformKind = keyof typeof transformFactories;

/** A transform entry of the config: `kind` plus that kind's own (strict) fields. */
export const transformConfigSchema = z.discriminatedUnion('kind', [
  filterTransform.configSchema.extend({ kind: z.literal('filter') }),
  renameFieldsTransform.configSchema.extend({ kind: z.literal('rename_fields') }),
  dropFieldsTransform.configSchema.extend({ kind: z.literal('drop_fields') }),
  flattenTransform.configSchema.extend({ kind: z.literal('flatten') }),
]);

export type TransformConfig = z.infer<typeof transformConfigSchema>;

/** Builds the transform a parsed config entry describes. */
export function createTransform(config: TransformConfig): Transform {
  switch (config.kind) {
    case 'filter':
      return transformFactories.filter.create(config);
    case 'rename_fields':
      return transformFactories.rename_fields.create(config);
    case 'drop_fields':
      return transformFactories.drop_fields.create(config);
    case 'flatten':
      return transformFactories.flatten.create(config);
  }
}
