// The routing controller: compiles every MailDomain, DeliveryPolicy and TestRecipient in the cache with the
// routing core and server-side applies the result to ConfigMap mailroute-routing (inline, or sharded when big;
// contract/routing-configmap.ts). One key ("routing"), so bursts of changes coalesce into one compile.
// It keeps the compile result (issues, which generation of each object is in which revision) for the status
// controllers, and garbage-collects shards of revisions no fresh relay serves any more. The table it applies carries
// the domains that left it within --removed-domain-grace (routing/removed-domains.ts), seeded at start from the table
// applied before. When a write fails (the namespace missing, RBAC, a webhook, 422 too large), RoutingState says why, so
// that the statuses of the objects whose change is not in the cluster say so too (Programmed=False ApplyFailed).

import { objectKey } from '../../../routing/parse.ts';
import type { OwnerReference } from '../../../contract/owner.ts';
import type { CompileIssue, ObjectRef, RoutingTable } from '../../../routing/model.ts';
import { compile, type CompileNotice, type CompileResult } from '../../../routing/compile.ts';
import type { DomainClaim, MailrouteObject } from '../../../routing/types.ts';
import {
  encodeRouting,
  readRouting,
  REVISION_ANNOTATION,
  SHARD_LABEL,
  type ConfigMapLike,
  type EncodedRouting,
} from '../../../contract/routing-configmap.ts';
import { canonicalJson, sha256Hex } from '../../../routing/canonical.ts';
import { RemovedDomains, withRemovedDomains } from '../../../routing/removed-domains.ts';
import { serverSideApply } from '../../kube/ssa.ts';
import { describeFailure, PARTIAL_METADATA_LIST, type KubeRest } from '../../kube/rest.ts';
import type { ReconcileOutcome } from '../../kube/workqueue.ts';
import type { Logger } from '../../kube/supervisor.ts';

export const ROUTING_QUEUE_KEY = 'routing';

/**
 * An object as a compile saw it: its generation and its uid. The uid tells a deleted and re-created object (`kubectl
 * replace --force`, a restore, Argo CD's Replace) from the one it replaces: both start at generation 1.
 */
export interface Held {
  generation: number;
  uid: string;
}

/** The same object at the same generation (undefined: not there). */
export function sameHeld(a: Held | undefined, b: Held | undefined): boolean {
  return a !== undefined && b !== undefined && a.generation === b.generation && a.uid === b.uid;
}

/** An object's uid ('' for one that never went through an API server: a manifest, a unit test's object). */
export function uidOf(metadata: { readonly [key: string]: unknown } | undefined): string {
  const uid = metadata?.['uid'];
  return typeof uid === 'string' ? uid : '';
}

/** Which object (generation and uid) each recent revision holds (relays may serve an older revision). */
export class RevisionHistory {
  private readonly max: number;
  private readonly revisions = new Map<string, Map<string, Held>>();

  constructor(max = 16) {
    this.max = max;
  }

  /**
   * The revision holds these sources, each with the uid uidOf gives its key ('' when unknown). Adding a revision
   * again refreshes its recency and its uids: the same table compiled from a re-created object of the same spec is
   * the same revision, and a relay that serves it routes by the new object.
   */
  add(revision: string, sources: readonly ObjectRef[], uidOf: (key: string) => string = () => ''): void {
    const m = new Map<string, Held>();
    for (const s of sources) {
      const key = objectKey(s.kind, s.namespace, s.name);
      m.set(key, { generation: s.generation, uid: uidOf(key) });
    }
    this.revisions.delete(revision);
    this.revisions.set(revision, m);
    while (this.revisions.size > this.max) {
      const oldest = this.revisions.keys().next().value as string;
      this.revisions.delete(oldest);
    }
  }

  /** The generation of the object with this uid that the revision holds; undefined: none, or another object. */
  generationIn(revision: string, key: string, uid: string): number | undefined {
    const h = this.revisions.get(revision)?.get(key);
    return h !== undefined && h.uid === uid ? h.generation : undefined;
  }

  has(revision: string): boolean {
    return this.revisions.has(revision);
  }

  /** Object keys whose generation or uid differs between two revisions (present in one only counts); undefined if unknown. */
  diff(a: string, b: string): Set<string> | undefined {
    const ma = this.revisions.get(a);
    const mb = this.revisions.get(b);
    if (ma === undefined || mb === undefined) return undefined;
    const out = new Set<string>();
    for (const [k, h] of ma) if (!sameHeld(h, mb.get(k))) out.add(k);
    for (const k of mb.keys()) if (!ma.has(k)) out.add(k);
    return out;
  }
}

/**
 * A failed API request in a few words for a status message: `404 namespaces "x" not found` (the HTTP status and the API
 * server's message, without its reason word), `NetworkError: ...` when there was no answer; at most 300 characters.
 */
export function briefFailure(r: { status: number; reason: string; message: string }): string {
  const s = r.status === 0 ? `${r.reason}: ${r.message}` : `${r.status} ${r.message}`;
  return s.length > 300 ? `${s.slice(0, 299)}…` : s;
}

/** Statuses to requeue: all of them, or these object keys (kind/namespace/name). */
type Requeue = { all: true } | { all: false; keys: ReadonlySet<string> };

/** A write that failed: briefFailure of its last attempt, and since when (epoch ms) it has been failing. */
interface WriteFailure {
  error: string;
  sinceMs: number;
}

/** What the status controllers read. Mutated only by the routing controller. */
export class RoutingState {
  compiled = false;
  revision: string | undefined;
  /** revision applied to the cluster (undefined until the first apply succeeded) */
  appliedRevision: string | undefined;
  /** The revision the routing ConfigMap held when this process first read it (undefined: none, or unreadable). */
  startRevision: string | undefined;
  /**
   * The last write of the routing table (a shard or the index) failed; undefined once one succeeded. `concerns`: the
   * objects whose status the compiles since the last written table changed (their change is not in the cluster).
   */
  tableFailure: (WriteFailure & { concerns: Requeue }) | undefined;
  /**
   * The last write of Secret mailroute-credentials failed; `keys`: the MailDomains and DeliveryPolicies of the domains
   * whose servers authenticate (an authSecretRef), whose mail needs it.
   */
  credentialsFailure: (WriteFailure & { keys: ReadonlySet<string> }) | undefined;
  issuesByKey = new Map<string, CompileIssue[]>();
  /** The generation and uid of every object the last compile was given (included in the table or not). */
  seen = new Map<string, Held>();
  /** MailDomain keys whose domain is in the table without an accepted DeliveryPolicy (status NoPolicy). */
  unroutedMailDomains = new Set<string>();
  readonly history = new RevisionHistory();

  /**
   * Whether the last compile saw this generation of this object (uid): only then are its issues (or their absence)
   * known. A re-created object is not the one it replaces, though its name and generation are the same.
   */
  compiledSpec(key: string, generation: number, uid: string): boolean {
    return sameHeld(this.seen.get(key), { generation, uid });
  }

  currentGeneration(key: string, uid: string): number | undefined {
    return this.revision === undefined ? undefined : this.history.generationIn(this.revision, key, uid);
  }

  /**
   * Why the cluster lacks what the last compile made of this object (the status message of Programmed=False
   * ApplyFailed), or undefined. A failed write of the table concerns the objects whose status the compiles since the
   * last written table changed (a new generation, a problem found or gone, a MailDomain whose policy came or went;
   * every object before the first write), unless the cluster holds the compiled revision all the same (the last applied,
   * else the one read at start): an unchanged object is routed as before. A failed write of the credentials concerns
   * the objects whose servers authenticate.
   */
  applyFailure(key: string): string | undefined {
    const t = this.tableFailure;
    if (
      t !== undefined &&
      (this.appliedRevision ?? this.startRevision) !== this.revision &&
      (t.concerns.all || t.concerns.keys.has(key))
    )
      return `routing table not written: ${t.error}`;
    if (this.credentialsFailure?.keys.has(key) === true)
      return `credentials Secret not written: ${this.credentialsFailure.error}`;
    return undefined;
  }
}

export interface RoutingControllerDeps {
  namespace: string;
  configMapName: string;
  rest: KubeRest;
  logger: Logger;
  state: RoutingState;
  /** Objects from the informer caches. */
  objects: () => MailrouteObject[];
  /** Cluster-scoped DomainClaims from the informer cache (none: every namespace may use any domain). */
  claims?: () => readonly DomainClaim[];
  /** After each fresh compile: what the winners of cross-namespace conflicts should hear (Warning Events). */
  onNotices?: (notices: readonly CompileNotice[]) => void;
  /** Revisions served by relays with a fresh heartbeat. */
  relayRevisions: () => ReadonlySet<string>;
  /**
   * Called when the compile result changed, with the object keys (kind/namespace/name) whose issues or compiled
   * generation changed; `all` on the first compile. Only their status can change because of the compile itself
   * (a change in what the relays serve is handled by the relay watch). Called by the first reconcile after the
   * compile whose table is in the cluster: after a failed apply, by its retry, with the keys of every compile since.
   * While writes fail it is called too, so that statuses say so (RoutingState.applyFailure): with `all` when a write
   * starts or stops failing, or fails for another reason, else with the keys of the compiles since the last call.
   */
  onCompiled: (
    result: CompileResult,
    changed: { all: true } | { all: false; keys: ReadonlySet<string> },
  ) => void;
  onApplied?: (revision: string, bytes: number, format: EncodedRouting['format']) => void;
  /**
   * Runs on every reconcile before the table is applied (the credentials Secret: a relay must have the
   * credentials before the table that needs them). A failure fails the reconcile, so it is retried.
   */
  beforeApply?: (
    table: RoutingTable,
  ) => Promise<
    { ok: true } | { ok: false; error: string; /** briefFailure of the API error */ brief?: string }
  >;
  inlineMaxBytes?: number;
  shardMaxBytes?: number;
  /** ownerReferences of the ConfigMaps it writes (operator/owner.ts); read at each apply. */
  owners?: () => readonly OwnerReference[];
  /**
   * How often the reconcile runs without a change (--routing-resync): the index and the current revision's shards are
   * checked (written again if someone changed or deleted them) and old shards collected. Default 60 s. Also the longest
   * a failed reconcile waits for its retry: the cause of a failed write (a missing namespace, RBAC, a webhook) is often
   * fixed without an event the operator sees.
   */
  resyncMs?: number;
  /**
   * How long a domain that left the table stays in its removedDomains (routing/removed-domains.ts), so that every relay,
   * also one with an empty spool, answers 451 for it rather than 554. 0: not carried. Default 24 h.
   */
  removedDomainGraceMs?: number;
  now?: () => number;
}

export interface RoutingTimings {
  gatherMs: number;
  compileMs: number;
  encodeMs: number;
  applyMs: number;
  objects: number;
  bytes: number;
  shards: number;
}

function mergeRequeue(a: Requeue | undefined, b: Requeue): Requeue {
  if (a === undefined) return b;
  if (a.all || b.all) return { all: true };
  return { all: false, keys: new Set([...a.keys, ...b.keys]) };
}

/** The generation and uid of every object a compile is given. */
function heldBy(objects: readonly MailrouteObject[]): Map<string, Held> {
  const seen = new Map<string, Held>();
  for (const o of objects) {
    seen.set(objectKey(o.kind, o.metadata.namespace ?? '', o.metadata.name), {
      generation: o.metadata.generation ?? 0,
      uid: uidOf(o.metadata),
    });
  }
  return seen;
}

/** The MailDomains and DeliveryPolicies of the table's domains whose servers authenticate (their mail needs the credentials). */
function authenticatingKeys(table: RoutingTable): Set<string> {
  const keys = new Set<string>();
  for (const d of Object.values(table.domains)) {
    if (!Object.values(d.servers).some((s) => s.authSecretRef !== undefined)) continue;
    keys.add(objectKey('MailDomain', d.mailDomain.namespace, d.mailDomain.name));
    if (d.policy !== undefined) keys.add(objectKey('DeliveryPolicy', d.policy.namespace, d.policy.name));
  }
  return keys;
}

/** A shard ConfigMap as a LIST of metadata shows it. */
interface ListedShard {
  name: string;
  revision: string | undefined;
  resourceVersion: string | undefined;
}

export class RoutingController {
  private readonly d: RoutingControllerDeps;
  private lastIssuesJson = '';
  /**
   * The resourceVersion the API server gave each shard ConfigMap this process wrote, by name. A shard the cluster holds
   * with another resourceVersion (or not at all) is not the one written: someone changed or deleted it.
   */
  private readonly written = new Map<string, string>();
  /** The resourceVersion of the index as this process last wrote it (undefined: not known). */
  private indexVersion: string | undefined;
  /** The shard names of the revision last encoded (to check them without encoding the table again). */
  private shardNames: { revision: string; names: readonly string[] } | undefined;
  private gcNeeded = true;
  private dirty = true;
  /** The last compile and what it was given. */
  private last: { compiled: CompileResult; seen: Map<string, Held> } | undefined;
  /**
   * The statuses the compiles published since the last applied table change (publish): requeued once a reconcile
   * has applied its table, so that a failed apply and its retry lose none of them.
   */
  private owed: Requeue | undefined;
  /** The statuses the compiles published since statuses were last requeued (owed or not): a failed apply requeues them. */
  private unreported: Requeue | undefined;
  /** The domains of the tables applied, and those that left them within the grace (seeded from the applied table). */
  private readonly removed: RemovedDomains;
  private seeded = false;
  /** The last compile result with its removed domains, reused while neither changes (no JSON and hash again). */
  private lastWithRemoved: { compiled: CompileResult; removed: string; result: CompileResult } | undefined;
  lastTimings: RoutingTimings | undefined;

  constructor(deps: RoutingControllerDeps) {
    this.d = deps;
    this.removed = new RemovedDomains(deps.removedDomainGraceMs ?? 24 * 3_600_000);
  }

  requestGc(): void {
    this.gcNeeded = true;
  }

  /** An object changed (or a re-list happened): the next reconcile compiles again. */
  markDirty(): void {
    this.dirty = true;
  }

  private get cmPath(): string {
    return `/api/v1/namespaces/${this.d.namespace}/configmaps`;
  }

  /**
   * Compile (when marked dirty), publish the result to the status controllers, make the cluster hold the table as
   * written, requeue the statuses the compile changed, collect old shards. Every step that can fail leaves what the
   * retry needs: the applied table is read before anything is compiled, a compile is published whole (synchronously)
   * together with the statuses it owes, and those are requeued only by a reconcile whose table is in the cluster.
   */
  async reconcile(): Promise<ReconcileOutcome> {
    const out = await this.sync();
    // The retry of a failed reconcile waits at most one resync, however long it has been failing (the queue's backoff
    // would reach 5 minutes): the table is written within about a minute of its cause being fixed.
    return out.ok ? out : { ...out, maxBackoffMs: this.d.resyncMs ?? 60_000 };
  }

  private async sync(): Promise<ReconcileOutcome> {
    const now = this.d.now ?? Date.now;
    // What the table served before this operator started (its removed domains, and the domains that may leave now).
    // Read before anything else: a failure here changes nothing, and the retry starts from the beginning.
    if (!this.seeded) {
      const seed = await this.readApplied();
      if (!seed.ok) return { ok: false, error: seed.error };
      this.seeded = true;
    }
    const t0 = now();
    // A periodic resync (drift check, shard GC) with no object change since the last compile reuses its result.
    let last = this.last;
    const fresh = last === undefined || this.dirty;
    let objects: MailrouteObject[] = [];
    let claims: readonly DomainClaim[] = [];
    if (fresh) {
      this.dirty = false;
      objects = this.d.objects();
      claims = this.d.claims?.() ?? [];
    }
    const t1 = now();
    if (last === undefined || fresh) {
      const compiled = compile(objects, claims);
      last = this.last = { compiled, seen: heldBy(objects) };
      this.d.onNotices?.(compiled.notices);
    }
    const result = this.withRemovedDomains(last.compiled, now());
    const t2 = now();
    this.publish(result, fresh ? last.seen : undefined);

    // A failure still applies the table (status must follow the compile) and fails the reconcile at the end, so
    // it is retried with backoff.
    const before =
      this.d.beforeApply === undefined ? { ok: true as const } : await this.d.beforeApply(result.table);

    const applied = await this.applyTable(result, last.seen.size);
    const failuresChanged = this.recordWrites(before, applied, result.table);
    if (!applied.ok) {
      // The statuses this compile changed stay owed: the retry requeues them once the table is written. Meanwhile
      // they say why it is not (ApplyFailed): all of them when that began or changed, else those not told yet.
      const tell: Requeue | undefined = failuresChanged ? { all: true } : this.unreported;
      this.unreported = undefined;
      if (tell !== undefined) this.d.onCompiled(result, tell);
      return { ok: false, error: applied.error };
    }
    const owed = failuresChanged ? { all: true as const } : this.owed;
    this.owed = undefined;
    this.unreported = undefined;
    if (owed !== undefined) this.d.onCompiled(result, owed);
    if (this.gcNeeded) {
      const gc = await this.collectShards(result.revision, applied.listed);
      if (!gc.ok) this.d.logger.warn({ err: gc.error }, 'shard garbage collection failed; will retry');
      else this.gcNeeded = false;
    }
    this.lastTimings = {
      gatherMs: t1 - t0,
      compileMs: t2 - t1,
      encodeMs: applied.encodeMs,
      applyMs: applied.applyMs,
      objects: objects.length,
      bytes: result.json.length,
      shards: applied.shards,
    };
    if (!before.ok) return { ok: false, error: before.error };
    // a removed domain's grace ends without any event: reconcile then, to drop it from the table
    const resync = this.d.resyncMs ?? 60_000;
    const expiry = this.removed.nextExpiry();
    return {
      ok: true,
      requeueAfterMs: expiry === undefined ? resync : Math.min(resync, Math.max(1000, expiry - now() + 1)),
    };
  }

  /**
   * Publishes a compile result to the status controllers (RoutingState) and adds the statuses whose facts it changed
   * to those owed. Synchronous, so a compile is published whole or not at all. `seen`: what a fresh compile was given
   * (undefined: the compile published before, with other removed domains perhaps).
   */
  private publish(result: CompileResult, seen: Map<string, Held> | undefined): void {
    const st = this.d.state;
    // Objects whose compiled generation is new to the status controllers (a new object, or a spec change that
    // changed neither the table nor the issues): their status may now be written.
    const seenChanged = new Set<string>();
    if (seen !== undefined) {
      for (const [k, h] of seen) if (!sameHeld(st.seen.get(k), h)) seenChanged.add(k);
      st.seen = seen;
    }
    const issuesJson = JSON.stringify(result.issues);
    const changed =
      result.revision !== st.revision ||
      issuesJson !== this.lastIssuesJson ||
      !st.compiled ||
      seenChanged.size > 0;
    if (!changed) return;
    let changedKeys: Requeue = { all: true };
    const firstCompile = !st.compiled;
    const previousRevision = st.revision;
    const previousIssues = st.issuesByKey;
    st.history.add(result.revision, result.table.sources, (k) => st.seen.get(k)?.uid ?? '');
    const byKey = new Map<string, CompileIssue[]>();
    for (const i of result.issues) {
      const k = objectKey(i.kind, i.namespace, i.name);
      const list = byKey.get(k);
      if (list === undefined) byKey.set(k, [i]);
      else list.push(i);
    }
    st.issuesByKey = byKey;
    const unrouted = new Set<string>();
    for (const d of Object.values(result.table.domains))
      if (d.policy === undefined)
        unrouted.add(objectKey('MailDomain', d.mailDomain.namespace, d.mailDomain.name));
    const previousUnrouted = st.unroutedMailDomains;
    st.unroutedMailDomains = unrouted;
    st.revision = result.revision;
    st.compiled = true;
    this.lastIssuesJson = issuesJson;
    const generations =
      firstCompile || previousRevision === undefined
        ? undefined
        : st.history.diff(previousRevision, result.revision);
    if (generations !== undefined) {
      const keys = new Set(generations);
      for (const k of new Set([...previousIssues.keys(), ...byKey.keys()])) {
        if (JSON.stringify(previousIssues.get(k)) !== JSON.stringify(byKey.get(k))) keys.add(k);
      }
      for (const k of seenChanged) keys.add(k);
      // A policy that came or went changes its MailDomain's NoPolicy, not the MailDomain's generation.
      for (const k of unrouted) if (!previousUnrouted.has(k)) keys.add(k);
      for (const k of previousUnrouted) if (!unrouted.has(k)) keys.add(k);
      changedKeys = { all: false, keys };
    }
    this.owed = mergeRequeue(this.owed, changedKeys);
    this.unreported = mergeRequeue(this.unreported, changedKeys);
  }

  /**
   * Records in RoutingState whether this reconcile's writes of the credentials Secret and of the table failed, and
   * why. True when that changed (a write began or stopped failing, or fails for another reason): every status may say
   * something else now.
   */
  private recordWrites(
    credentials: { ok: true } | { ok: false; error: string; brief?: string },
    table: { ok: true } | { ok: false; error: string; brief: string },
    routing: RoutingTable,
  ): boolean {
    const st = this.d.state;
    const nowMs = (this.d.now ?? Date.now)();
    const before = { table: st.tableFailure, credentials: st.credentialsFailure };
    st.tableFailure = table.ok
      ? undefined
      : {
          error: table.brief,
          sinceMs: before.table?.sinceMs ?? nowMs,
          concerns: this.owed ?? { all: false, keys: new Set() },
        };
    st.credentialsFailure = credentials.ok
      ? undefined
      : {
          error: credentials.brief ?? credentials.error,
          sinceMs: before.credentials?.sinceMs ?? nowMs,
          keys: authenticatingKeys(routing),
        };
    const changed =
      before.table?.error !== st.tableFailure?.error ||
      before.credentials?.error !== st.credentialsFailure?.error;
    if (changed) {
      const failing = [st.tableFailure, st.credentialsFailure].filter((f) => f !== undefined);
      if (failing.length > 0)
        this.d.logger.warn(
          { table: st.tableFailure?.error, credentials: st.credentialsFailure?.error },
          'routing writes failing: the statuses of the objects they concern say ApplyFailed',
        );
      else
        this.d.logger.info(
          {
            failedForMs:
              nowMs - Math.min(...[before.table, before.credentials].map((f) => f?.sinceMs ?? nowMs)),
          },
          'routing writes succeed again',
        );
    }
    return changed;
  }

  /**
   * Makes the cluster hold `result` as this process wrote it: each shard of its revision is written unless the API
   * server holds it with the resourceVersion this process's last write of it returned (so a shard someone deleted or
   * changed is written again), then the index when the revision is new here or someone changed or deleted the index.
   * Shards first: a relay must never see an index whose shards are missing. One GET of the index's metadata and, when
   * the table is sharded or old shards wait for collection, one LIST of the shards' metadata (returned for the
   * collection) per reconcile; a table is encoded only when something must be written.
   */
  private async applyTable(
    result: CompileResult,
    objects: number,
  ): Promise<
    | { ok: true; listed: ListedShard[] | undefined; encodeMs: number; applyMs: number; shards: number }
    | { ok: false; error: string; brief: string }
  > {
    const now = this.d.now ?? Date.now;
    const st = this.d.state;
    const revision = result.revision;
    let encoded: EncodedRouting | undefined;
    let encodeMs = 0;
    const encode = (): EncodedRouting => {
      if (encoded === undefined) {
        const t = now();
        encoded = encodeRouting(result.json, revision, {
          namespace: this.d.namespace,
          name: this.d.configMapName,
          ownerReferences: this.d.owners?.() ?? [],
          ...(this.d.inlineMaxBytes !== undefined ? { inlineMaxBytes: this.d.inlineMaxBytes } : {}),
          ...(this.d.shardMaxBytes !== undefined ? { shardMaxBytes: this.d.shardMaxBytes } : {}),
        });
        encodeMs = now() - t;
        this.shardNames = { revision, names: encoded.shards.map((s) => s.metadata.name) };
      }
      return encoded;
    };
    const writeIndex = st.appliedRevision !== revision || (await this.indexChanged(revision));
    const names =
      this.shardNames?.revision === revision
        ? this.shardNames.names
        : encode().shards.map((s) => s.metadata.name);
    const listed = names.length > 0 || this.gcNeeded ? await this.listShards() : undefined;
    const versions = new Map(listed?.map((s) => [s.name, s.resourceVersion]));
    // Without a list (the API server could not be asked), what this process wrote is taken as still there.
    const stale = new Set(
      names.filter((n) => {
        const v = this.written.get(n);
        return v === undefined || (listed !== undefined && versions.get(n) !== v);
      }),
    );
    if (!writeIndex && stale.size === 0)
      return { ok: true, listed, encodeMs: 0, applyMs: 0, shards: names.length };
    const enc = encode();
    const t = now();
    if (!writeIndex)
      this.d.logger.warn(
        { revision, shards: [...stale] },
        'shards of the routing table missing or changed (deleted or edited by someone else): writing them again',
      );
    for (const s of enc.shards) {
      if (!stale.has(s.metadata.name)) continue;
      const r = await serverSideApply<ConfigMapLike>(this.d.rest, `${this.cmPath}/${s.metadata.name}`, s);
      if (!r.ok)
        return {
          ok: false,
          error: `apply ConfigMap ${s.metadata.name}: ${describeFailure(r)}`,
          brief: briefFailure(r),
        };
      const v = r.body.metadata?.resourceVersion;
      if (v === undefined) this.written.delete(s.metadata.name);
      else this.written.set(s.metadata.name, v);
    }
    if (writeIndex) {
      const r = await serverSideApply<ConfigMapLike>(
        this.d.rest,
        `${this.cmPath}/${enc.index.metadata.name}`,
        enc.index,
      );
      if (!r.ok)
        return {
          ok: false,
          error: `apply ConfigMap ${enc.index.metadata.name}: ${describeFailure(r)}`,
          brief: briefFailure(r),
        };
      this.indexVersion = r.body.metadata?.resourceVersion;
      const previous = st.appliedRevision;
      st.appliedRevision = revision;
      this.gcNeeded = true;
      this.d.logger.info(
        {
          revision,
          previous,
          format: enc.format,
          bytes: result.json.length,
          shards: enc.shards.length,
          objects,
          issues: result.issues.length,
        },
        'routing table applied',
      );
      this.d.onApplied?.(revision, result.json.length, enc.format);
    }
    return { ok: true, listed, encodeMs, applyMs: now() - t, shards: enc.shards.length };
  }

  /**
   * The compile result with the removed domains the table carries (routing/removed-domains.ts): the domains of the
   * last table that this one lacks are added, those back or past the grace dropped. Revision and JSON follow the
   * table; while neither the compile result nor the removed domains change, the last one is reused.
   */
  private withRemovedDomains(compiled: CompileResult, nowMs: number): CompileResult {
    const left = this.removed.swap(new Set(Object.keys(compiled.table.domains)), nowMs);
    if (left.length > 0)
      this.d.logger.warn(
        { domains: left },
        'domains left the routing table: relays answer 451 for their mail during the grace, then 554',
      );
    const removed = this.removed.state().removed;
    const key = JSON.stringify(removed);
    const last = this.lastWithRemoved;
    if (last?.compiled === compiled && last.removed === key) return last.result;
    let result = compiled;
    if (Object.keys(removed).length > 0) {
      const table = withRemovedDomains(compiled.table, removed);
      const json = canonicalJson(table);
      result = { ...compiled, table, json, revision: sha256Hex(json) };
    }
    this.lastWithRemoved = { compiled, removed: key, result };
    return result;
  }

  /**
   * Reads the table applied before (by an earlier leader, or this process before a restart): its domains and removed
   * domains seed withRemovedDomains. None applied yet, or one that cannot be read whole (shards gone, not JSON): no
   * seed (logged). Fails only when the API server cannot be asked, so that the reconcile is retried.
   */
  private async readApplied(): Promise<{ ok: true } | { ok: false; error: string }> {
    let read: Awaited<ReturnType<typeof readRouting>>;
    try {
      read = await readRouting(async (name) => {
        const r = await this.d.rest.request<ConfigMapLike>('GET', `${this.cmPath}/${name}`);
        if (r.ok) return r.body;
        if (r.status === 404) return undefined;
        throw new Error(`read ConfigMap ${name}: ${describeFailure(r)}`);
      }, this.d.configMapName);
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
    if (read === undefined) return { ok: true }; // nothing applied yet
    // (one that cannot be read whole is not held: a relay cannot load it either)
    if (read.ok) this.d.state.startRevision = read.revision;
    const json = read.ok ? read.json : undefined;
    let table: Partial<RoutingTable> | undefined;
    try {
      table = json === undefined ? undefined : (JSON.parse(json) as Partial<RoutingTable>);
    } catch {
      table = undefined;
    }
    if (table?.domains === undefined || typeof table.domains !== 'object') {
      this.d.logger.warn(
        { configMap: this.d.configMapName },
        'the applied routing table could not be read: domains removed before this start are not carried',
      );
      return { ok: true };
    }
    const recorded = table.removedDomains;
    this.removed.restore(
      {
        served: Object.keys(table.domains),
        removed:
          typeof recorded === 'object' && recorded !== null
            ? Object.fromEntries(Object.entries(recorded).filter(([, v]) => typeof v === 'string'))
            : {},
      },
      (this.d.now ?? Date.now)(),
    );
    return { ok: true };
  }

  /** Someone deleted or changed mailroute-routing (its revision, or anything else when its resourceVersion is known). */
  private async indexChanged(revision: string): Promise<boolean> {
    const r = await this.d.rest.request<{
      metadata?: { annotations?: Record<string, string>; resourceVersion?: string };
    }>('GET', `${this.cmPath}/${this.d.configMapName}`, {
      accept: 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1',
    });
    if (r.ok)
      return (
        r.body.metadata?.annotations?.[REVISION_ANNOTATION] !== revision ||
        (this.indexVersion !== undefined && r.body.metadata?.resourceVersion !== this.indexVersion)
      );
    return r.status === 404; // else transient: keep what we have, the next resync checks again
  }

  /** The shard ConfigMaps of this routing ConfigMap (metadata only, one LIST); undefined when it failed (logged). */
  private async listShards(): Promise<ListedShard[] | undefined> {
    const list = await this.d.rest.request<{
      items?: {
        metadata?: { name?: string; annotations?: Record<string, string>; resourceVersion?: string };
      }[];
    }>('GET', this.cmPath, {
      query: { labelSelector: `${SHARD_LABEL}=true` },
      accept: PARTIAL_METADATA_LIST,
    });
    if (!list.ok) {
      this.d.logger.warn({ err: describeFailure(list) }, 'listing the routing shards failed; will retry');
      return undefined;
    }
    const out: ListedShard[] = [];
    for (const item of list.body.items ?? []) {
      const name = item.metadata?.name;
      // only our own shards (another ConfigMap name in the same namespace has its own)
      if (name === undefined || !name.startsWith(`${this.d.configMapName}-`)) continue;
      out.push({
        name,
        revision: item.metadata?.annotations?.[REVISION_ANNOTATION],
        resourceVersion: item.metadata?.resourceVersion,
      });
    }
    return out;
  }

  /** Deletes shards whose revision is neither current nor served by a fresh relay (`listed`: this reconcile's list). */
  private async collectShards(
    current: string,
    listed: ListedShard[] | undefined,
  ): Promise<{ ok: true } | { ok: false; error: string }> {
    const shards = listed ?? (await this.listShards());
    if (shards === undefined) return { ok: false, error: 'the shards could not be listed' };
    const keep = new Set(this.d.relayRevisions());
    keep.add(current);
    for (const { name, revision } of shards) {
      if (revision !== undefined && keep.has(revision)) continue;
      const del = await this.d.rest.request('DELETE', `${this.cmPath}/${name}`);
      if (!del.ok && del.status !== 404)
        return { ok: false, error: `delete ${name}: ${describeFailure(del)}` };
      this.written.delete(name);
      this.d.logger.info({ shard: name, revision }, 'deleted routing shard of an old revision');
    }
    return { ok: true };
  }
}
