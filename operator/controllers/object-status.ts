// The status reconciler the three kind controllers share: gather (cache + routing state + relay heartbeats) ->
// decide (pure, ./status.ts) -> apply (the condition helper; a status write through the status subresource only
// when something changed, by server-side apply with the operator's field manager, so conditions other writers own,
// e.g. the preflight's ServersReachable, are left alone) -> Events on transitions.

import type { Kind } from '../../routing/model.ts';
import { API_VERSION } from '../../routing/model.ts';
import { canonicalJson } from '../../routing/canonical.ts';
import type { MailrouteObject } from '../../routing/types.ts';
import { setConditions, type StatusLike } from '../kube/conditions.ts';
import type { EventRecorder } from '../kube/ssa.ts';
import { serverSideApply } from '../kube/ssa.ts';
import { describeFailure, type KubeRest } from '../kube/rest.ts';
import type { ReconcileOutcome } from '../kube/workqueue.ts';
import { uidOf, type RoutingState } from './routing/controller.ts';
import { objectKey } from '../../routing/parse.ts';
import { decideStatus, statusEvents, type RelayView, type StatusFacts } from './status.ts';

export const PLURALS: Record<Kind, string> = {
  MailDomain: 'maildomains',
  DeliveryPolicy: 'deliverypolicies',
  TestRecipient: 'testrecipients',
};

export interface StatusControllerDeps<O extends MailrouteObject> {
  kind: Kind;
  rest: KubeRest;
  state: RoutingState;
  events: EventRecorder;
  get: (namespace: string, name: string) => O | undefined;
  relays: () => readonly RelayView[];
  /** The relay pods meant to exist (StatefulSet replicas), undefined when no StatefulSet is known. */
  expectedRelays?: () => readonly string[] | undefined;
  now: () => Date;
  /** Kind-specific facts (missing Secrets, expiresAt). */
  extra?: (
    obj: O,
  ) => Partial<
    Pick<StatusFacts, 'missingSecrets' | 'invalidSecrets' | 'expiresAt' | 'backscatterRisk' | 'transitions'>
  >;
  /**
   * Kind-specific status fields this controller owns besides the conditions, for kubectl's printer columns (which
   * are JSONPaths on the object itself), e.g. DeliveryPolicy status.domain. An undefined value removes the field.
   */
  fields?: (obj: O, now: Date) => StatusFields;
}

/** Status fields besides the conditions (see StatusControllerDeps.fields): strings, flags, or small objects (parity). */
export type StatusFields = Readonly<
  Record<string, string | boolean | Readonly<Record<string, unknown>> | undefined>
>;

/** The defined fields of `fields`, and whether they differ from what `status` holds now. */
export function statusFieldsUpdate(
  status: unknown,
  fields: StatusFields,
): { fields: Record<string, unknown>; changed: boolean } {
  const current = typeof status === 'object' && status !== null ? (status as Record<string, unknown>) : {};
  const out: Record<string, unknown> = {};
  let changed = false;
  // Objects are compared as canonical JSON: the API server returns their keys in its own order.
  const same = (a: unknown, b: unknown): boolean =>
    a === b ||
    (typeof a === 'object' &&
      typeof b === 'object' &&
      a !== null &&
      b !== null &&
      canonicalJson(a) === canonicalJson(b));
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined) out[k] = v;
    if (!same(current[k], v)) changed = true;
  }
  return { fields: out, changed };
}

export function statusKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

export class ObjectStatusController<O extends MailrouteObject> {
  readonly kind: Kind;
  private readonly d: StatusControllerDeps<O>;
  writes = 0;

  constructor(deps: StatusControllerDeps<O>) {
    this.kind = deps.kind;
    this.d = deps;
  }

  async reconcile(key: string): Promise<ReconcileOutcome> {
    const [namespace, name] = splitKey(key);
    const obj = this.d.get(namespace, name);
    if (obj === undefined) return { ok: true };
    // Before the first compile (start, failover) there is nothing true to say; writing "not compiled" would flap every
    // status on each failover. The first compile requeues every object: once its table is written, or at once when
    // that fails (the status then says ApplyFailed).
    if (!this.d.state.compiled) return { ok: true };
    const generation = obj.metadata.generation ?? 0;
    const okey = objectKey(this.kind, namespace, name);
    const now = this.d.now();
    const st = this.d.state;
    // This generation was not compiled yet: its issues are unknown (a new second policy is not "Accepted" until the
    // compile has seen it). The routing controller requeues the object once it has.
    const uid = uidOf(obj.metadata);
    if (!st.compiledSpec(okey, generation, uid)) return { ok: true };
    const decision = decideStatus({
      kind: this.kind,
      generation,
      issues: st.issuesByKey.get(okey) ?? [],
      missingSecrets: [],
      compiledGeneration: st.currentGeneration(okey, uid),
      compiled: st.compiled,
      relays: this.d.relays(),
      expectedRelays: this.d.expectedRelays?.(),
      noPolicyFor:
        this.kind === 'MailDomain' && st.unroutedMailDomains.has(okey)
          ? (obj as { spec?: { domain?: string } }).spec?.domain
          : undefined,
      generationIn: (rev) => st.history.generationIn(rev, okey, uid),
      applyFailure: st.applyFailure(okey),
      now,
      ...this.d.extra?.(obj),
    });
    // An object whose generation was not compiled yet waits for the routing controller (which requeues all).
    const update = setConditions(obj.status, decision.conditions, generation, now);
    const wanted = this.d.fields?.(obj, now) ?? {};
    const own = statusFieldsUpdate(obj.status, wanted);
    if (update.changed || own.changed) {
      const body = {
        apiVersion: API_VERSION,
        kind: this.kind,
        metadata: { name, namespace },
        // Server-side apply: a field of ours left out of the body (an undefined one) is removed.
        status: { ...own.fields, observedGeneration: generation, conditions: update.conditions },
      };
      const r = await serverSideApply(
        this.d.rest,
        `/apis/mailroute.io/v1alpha1/namespaces/${namespace}/${PLURALS[this.kind]}/${name}/status`,
        body,
      );
      if (!r.ok) {
        if (r.status === 404) return { ok: true };
        return { ok: false, error: `status of ${this.kind} ${namespace}/${name}: ${describeFailure(r)}` };
      }
      this.writes++;
      // Keep the cache's view current so a reconcile before the watch event does not write again.
      (obj as { status?: unknown }).status = {
        ...withoutKeys(obj.status ?? {}, Object.keys(wanted)),
        ...own.fields,
        observedGeneration: generation,
        conditions: mergeConditions(obj.status, update.conditions),
      };
      // Events follow Ready (./status.ts statusEvents): a new object gets a single one for its first Ready.
      for (const e of statusEvents(update.transitions)) {
        await this.d.events.event(
          {
            apiVersion: API_VERSION,
            kind: this.kind,
            namespace,
            name,
            ...(typeof obj.metadata.uid === 'string' ? { uid: obj.metadata.uid } : {}),
          },
          e.type,
          e.reason,
          e.message,
        );
      }
    }
    return decision.requeueAfterMs !== undefined
      ? { ok: true, requeueAfterMs: decision.requeueAfterMs }
      : { ok: true };
  }
}

function withoutKeys(o: object, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));
}

function mergeConditions(status: StatusLike | undefined, mine: readonly { type: string }[]): unknown[] {
  const types = new Set(mine.map((c) => c.type));
  return [...(status?.conditions ?? []).filter((c) => c.type === undefined || !types.has(c.type)), ...mine];
}
