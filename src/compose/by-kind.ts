/** A map of factories by kind whose every key equals its factory's `kind`. */
export type KeyedByKind<M> = { readonly [K in keyof M]: { readonly kind: K } };

/**
 * Checks, at compile time, that each key of a registry equals its factory's `kind` (a factory
 * filed under another name fails to type-check), and returns the map as given.
 */
export function byKind<const M extends Readonly<Record<string, { readonly kind: string }>>>(map: M & KeyedByKind<M>): M {
  return map;
}
