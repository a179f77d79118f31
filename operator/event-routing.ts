// From informer events to work-queue keys (pure: no I/O, no clock). Which object events recompile the routing table,
// and which statuses a change in the set of relays (or in the revision one of them serves) requeues: with the same
// relays, only the objects whose generation differs between the old and the new revision.

import type { Kind } from '../routing/model.ts';
import { objectKey } from '../routing/parse.ts';
import type { RelayView } from './controllers/status.ts';
import { statusKey } from './controllers/object-status.ts';
import { sameHeld, uidOf, type Held } from './controllers/routing/controller.ts';

/** Statuses to requeue: all of them, or these routing keys (kind/namespace/name). */
export type Requeue = { all: true } | { all: false; keys: ReadonlySet<string> };

/** A routing key "kind/namespace/name" (routing/parse.ts objectKey) split into the kind and its status queue key "namespace/name". */
export function splitRoutingKey(key: string): { kind: Kind; key: string } {
  const i = key.indexOf('/');
  return { kind: key.slice(0, i) as Kind, key: key.slice(i + 1) };
}

interface EventMeta {
  metadata?: { namespace?: string; name?: string; generation?: number; uid?: unknown };
}

/**
 * The last generation (and uid) seen of each object: a status-only update (same generation) does not recompile. An
 * object of the same name with another uid does (deleted and re-created while the watch was away: a relist may show
 * it as an update, at generation 1 again).
 */
export class SpecGenerations {
  private readonly seen = new Map<string, Held>();

  /** Whether the event recompiles the routing table, and the status key to requeue (none on delete). */
  observe(
    kind: Kind,
    type: 'add' | 'update' | 'delete',
    o: EventMeta,
  ): { recompile: boolean; status: string | undefined } {
    const ns = o.metadata?.namespace ?? '';
    const name = o.metadata?.name ?? '';
    const id = objectKey(kind, ns, name);
    if (type === 'delete') {
      this.seen.delete(id);
      return { recompile: true, status: undefined };
    }
    const held = { generation: o.metadata?.generation ?? 0, uid: uidOf(o.metadata) };
    const recompile = !sameHeld(this.seen.get(id), held);
    if (recompile) this.seen.set(id, held);
    return { recompile, status: statusKey(ns, name) };
  }
}

/** The relays as last seen (relaysChanged). */
export interface RelaySnapshot {
  readonly signature: string;
  readonly revisions: ReadonlyMap<string, string | undefined>;
  /** The expected relay pods joined with ',', or '-' when unknown. */
  readonly expected: string;
}

export const NO_RELAYS: RelaySnapshot = { signature: '', revisions: new Map(), expected: '-' };

/**
 * What a look at the fresh relays (sorted by name) and the expected pods changes: undefined when nothing did;
 * otherwise the next snapshot and the statuses to requeue. Same relays, some moved to another revision: only the
 * objects whose generation differs between the old and the new revision (`diff`, undefined when either revision is
 * no longer known) can change their count. Otherwise (a relay came or went: every "N/M" changes) all of them.
 */
export function relaysChanged(
  previous: RelaySnapshot,
  relays: readonly RelayView[],
  expectedPods: readonly string[] | undefined,
  diff: (from: string, to: string) => ReadonlySet<string> | undefined,
): { next: RelaySnapshot; requeue: Requeue } | undefined {
  const expected = expectedPods?.join(',') ?? '-';
  const signature = `${relays.map((r) => `${r.name}=${r.revision ?? ''}`).join(',')};expected=${expected}`;
  if (signature === previous.signature) return undefined;
  const next: RelaySnapshot = {
    signature,
    revisions: new Map(relays.map((r) => [r.name, r.revision])),
    expected,
  };
  const before = previous.revisions;
  const sameSet =
    before.size === relays.length &&
    relays.every((r) => before.has(r.name)) &&
    expected === previous.expected;
  if (!sameSet) return { next, requeue: { all: true } };
  const keys = new Set<string>();
  for (const r of relays) {
    const was = before.get(r.name);
    if (was === r.revision) continue;
    const d = was === undefined || r.revision === undefined ? undefined : diff(was, r.revision);
    if (d === undefined) return { next, requeue: { all: true } };
    for (const k of d) keys.add(k);
  }
  return { next, requeue: { all: false, keys } };
}
