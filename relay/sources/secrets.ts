// Which Secrets a new routing snapshot changed: the relay tells the delivery engine, so mail deferred for a wrong
// password goes as soon as the password is rotated (relay/delivery/recovery.ts).
//
// Exports: changedSecrets(before, after).
import type { Credentials } from './types.ts';

/** The keys ("namespace/name") whose credentials differ between the two maps: added, removed or changed. */
export function changedSecrets(
  before: ReadonlyMap<string, Credentials> | undefined,
  after: ReadonlyMap<string, Credentials>,
): Set<string> {
  const changed = new Set<string>();
  for (const [k, v] of after) {
    const old = before?.get(k);
    if (old === undefined || old.username !== v.username || old.password !== v.password) changed.add(k);
  }
  if (before !== undefined) for (const k of before.keys()) if (!after.has(k)) changed.add(k);
  return changed;
}
