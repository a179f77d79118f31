// Leader election on a coordination.k8s.io/v1 Lease, like client-go's leaderelection with the LeaseLock:
// lease duration 15 s, renew deadline 10 s, retry period 2 s; every write is a compare-and-swap on
// metadata.resourceVersion (PUT with the version we read; a 409 means someone else won). Expiry is judged on our
// own clock from when we last saw the record change (observedTime), so clock skew between replicas does not matter.

import type { KubeRest } from './rest.ts';
import { describeFailure } from './rest.ts';
import type { Logger } from './supervisor.ts';
import type { Timers } from './workqueue.ts';
import { realTimers } from './workqueue.ts';
import { withOwners, type OwnerReference } from '../../contract/owner.ts';

export interface LeaderElectionOptions {
  rest: KubeRest;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  logger: Logger;
  timers?: Timers;
  onStartedLeading: () => void;
  /** Leadership lost (renew failed for renewDeadline, or someone else holds it). The process should stop writing. */
  onStoppedLeading: () => void;
  onStatus?: (leading: boolean) => void;
  /** ownerReferences of the Lease when this elector creates it (operator/owner.ts). */
  owners?: () => readonly OwnerReference[];
}

interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}
interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string; ownerReferences?: OwnerReference[] };
  spec: LeaseSpec;
}

/** metav1.MicroTime */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  private readonly o: Required<Omit<LeaderElectionOptions, 'onStatus' | 'timers' | 'owners'>> &
    Pick<LeaderElectionOptions, 'onStatus' | 'owners'>;
  private readonly timers: Timers;
  private observedRecord: string | undefined;
  private observedTime = 0;
  private lastRenew = 0;
  private leading = false;
  private stopped = false;
  private timer: unknown;
  private wake: () => void = () => undefined;
  private loopDone: Promise<void> | undefined;

  constructor(opts: LeaderElectionOptions) {
    this.o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...opts };
    this.timers = opts.timers ?? realTimers;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases/${this.o.name}`;
  }

  start(): void {
    this.loopDone = this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      await this.tryAcquireOrRenew();
      if (this.stopped) break;
      await new Promise<void>((r) => {
        this.wake = r;
        this.timer = this.timers.setTimeout(r, this.o.retryPeriodMs);
      });
    }
  }

  private setLeading(v: boolean): void {
    if (v === this.leading) return;
    this.leading = v;
    this.o.onStatus?.(v);
    if (v) {
      this.o.logger.info({ lease: this.o.name, identity: this.o.identity }, 'became leader');
      this.o.onStartedLeading();
    } else {
      this.o.logger.warn({ lease: this.o.name, identity: this.o.identity }, 'lost leadership');
      this.o.onStoppedLeading();
    }
  }

  /** One round; exported behaviour for tests: returns whether we lead afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    // The lease's own times are wall-clock timestamps other replicas read; whether a lease expired or a renewal is
    // overdue is judged on the timers' monotonic clock, as client-go does: a step of the wall clock must neither hand
    // the lease to a follower while its holder renews, nor keep a leader that cannot renew leading.
    const now = this.timers.now();
    const wallNow = Date.now();
    const got = await this.o.rest.request<Lease>('GET', this.path);
    const desired = (old: LeaseSpec | undefined): LeaseSpec => {
      const ours = old?.holderIdentity === this.o.identity;
      return {
        holderIdentity: this.o.identity,
        leaseDurationSeconds: Math.round(this.o.leaseDurationMs / 1000),
        acquireTime: ours && old?.acquireTime !== undefined ? old.acquireTime : microTime(wallNow),
        renewTime: microTime(wallNow),
        leaseTransitions: ours ? (old?.leaseTransitions ?? 0) : (old?.leaseTransitions ?? -1) + 1,
      };
    };
    if (!got.ok && got.status === 404) {
      const body: Lease = withOwners(
        {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.o.name, namespace: this.o.namespace },
          spec: desired(undefined),
        },
        this.o.owners?.() ?? [],
      );
      const created = await this.o.rest.request<Lease>(
        'POST',
        `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases`,
        { body },
      );
      return this.afterWrite(created.ok, now, created.ok ? undefined : describeFailure(created));
    }
    if (!got.ok) return this.afterWrite(false, now, describeFailure(got));
    const lease = got.body;
    const record = JSON.stringify(lease.spec);
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedTime = now;
    }
    const holder = lease.spec.holderIdentity ?? '';
    const durationMs = (lease.spec.leaseDurationSeconds ?? 15) * 1000;
    if (holder !== '' && holder !== this.o.identity && this.observedTime + durationMs > now) {
      // held by someone else and not expired (by our clock)
      this.setLeading(false);
      return false;
    }
    const body: Lease = { ...lease, spec: desired(lease.spec) };
    const updated = await this.o.rest.request<Lease>('PUT', this.path, { body });
    if (updated.ok) {
      this.observedRecord = JSON.stringify(updated.body.spec);
      this.observedTime = now;
    }
    return this.afterWrite(updated.ok, now, updated.ok ? undefined : describeFailure(updated));
  }

  private afterWrite(ok: boolean, now: number, error: string | undefined): boolean {
    if (ok) {
      this.lastRenew = now;
      this.setLeading(true);
      return true;
    }
    if (this.leading && now - this.lastRenew > this.o.renewDeadlineMs) {
      this.o.logger.error(
        { lease: this.o.name, err: error },
        'could not renew the lease within the renew deadline',
      );
      this.setLeading(false);
    } else if (!this.leading) {
      this.o.logger.info({ lease: this.o.name, err: error }, 'lease not acquired');
    }
    return this.leading;
  }

  /** Stops the loop; when leading, releases the lease (holder cleared, 1 s duration) so a peer takes over at once. */
  async stop(release = true): Promise<void> {
    this.stopped = true;
    this.timers.clearTimeout(this.timer);
    this.wake();
    await this.loopDone?.catch(() => undefined);
    if (release && this.leading) {
      const got = await this.o.rest.request<Lease>('GET', this.path);
      if (got.ok && got.body.spec.holderIdentity === this.o.identity) {
        const body: Lease = {
          ...got.body,
          spec: {
            ...got.body.spec,
            holderIdentity: null,
            leaseDurationSeconds: 1,
            renewTime: microTime(Date.now()),
          },
        };
        await this.o.rest.request('PUT', this.path, { body });
      }
      this.leading = false;
      this.o.onStatus?.(false);
      this.o.logger.info({ lease: this.o.name, identity: this.o.identity }, 'released leadership');
    }
  }
}
