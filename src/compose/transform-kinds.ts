import { z } from 'zod';
import { dropFieldsTransform } from '../../transforms/drop-fields.ts';
import { filterTransform } from '../../transforms/filter.ts';
import { flattenTransform } from '../../transforms/flatten.ts';
import { renameFieldsTransform } from '../../transforms/rename-fields.ts';
import type { NamedTransform, Transform } from '../transform/transform.ts';
import { byKind } from './by-kind.ts';

/** The built-in transforms by kind, each key its factory's `kind`. Part of the composition root. */
export const builtinTransformKinds = byKind({
  filter: filterTransform,
  rename_fields: renameFieldsTransform,
  drop_fields: dropFieldsTransform,
  flatten: flattenTransform,
});

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
      return builtinTransformKinds.filter.create(config);
    case 'rename_fields':
      return builtinTransformKinds.rename_fields.create(config);
    case 'drop_fields':
      return builtinTransformKinds.drop_fields.create(config);
    case 'flatten':
      return builtinTransformKinds.flatten.create(config);
  }
}

/** Builds the built-in transforms of parsed config entries, named `${index}:${kind}`. */
export function buildTransforms(configs: readonly TransformConfig[]): NamedTransform[] {
  return configs.map((config, index) => ({ name: `${index}:${config.kind}`, apply: createTransform(config) }));
}
