import { describe, expect, it } from 'vitest';
import type { KubernetesObject } from '@kubernetes/client-node';
import { InformerSupervisor, jitteredBackoff, type InformerLike } from './supervisor.ts';
import { waitFor } from '../../test/support/wait.ts';

type Cb = (x?: unknown) => void;

/** A stand-in for client-node's ListWatch: start() lists (or fails, calling the error callbacks as the real one does). */
class FakeInformer {
  handlers = new Map<string, Cb[]>();
  stopped = false;
  private readonly objects: KubernetesObject[];
  private readonly failStart: boolean;
  constructor(objects: KubernetesObject[], failStart: boolean) {
    this.objects = objects;
    this.failStart = failStart;
  }
  on(verb: string, cb: Cb): void {
    this.handlers.set(verb, [...(this.handlers.get(verb) ?? []), cb]);
  }
  off(): void {}
  emit(verb: string, x?: unknown): void {
    for (const cb of this.handlers.get(verb) ?? []) cb(x);
  }
  start(): Promise<void> {
    if (this.failStart) {
      this.emit('error', new Error('connect ECONNREFUSED'));
      return Promise.resolve();
    }
    this.emit('connect');
    for (const o of this.objects) this.emit('add', o);
    return Promise.resolve();
  }
  stop(): Promise<void> {
    this.stopped = true;
    return Promise.resolve();
  }
  list(): KubernetesObject[] {
    return this.objects;
  }
  get(name: string): KubernetesObject | undefined {
    return this.objects.find((o) => o.metadata?.name === name);
  }
}

const logger = { info: () => undefined, warn: () => undefined, error: () => undefined };
const obj = (name: string): KubernetesObject => ({ metadata: { name, namespace: 'ns' } });

describe('InformerSupervisor', () => {
  it('retries a failing start with backoff, then lists and resyncs', async () => {
    const made: FakeInformer[] = [];
    let resyncs = 0;
    const sup = new InformerSupervisor({
      name: 'test',
      logger,
      backoffBaseMs: 1,
      backoffMaxMs: 4,
      make: () => {
        const f = new FakeInformer([obj('a')], made.length < 3);
        made.push(f);
        return f as unknown as InformerLike<KubernetesObject>;
      },
      onEvent: () => undefined,
      onResync: () => resyncs++,
    });
    await sup.start();
    expect(made).toHaveLength(4);
    expect(resyncs).toBe(1);
    expect(sup.list().map((o) => o.metadata?.name)).toEqual(['a']);
    expect(sup.health()).toMatchObject({ synced: true, healthy: true, restarts: 3 });
    await sup.stop();
  });

  it('replaces the informer after a runtime error (the client would stop for good) and ignores the old one', async () => {
    const made: FakeInformer[] = [];
    const events: string[] = [];
    let resyncs = 0;
    const sup = new InformerSupervisor({
      name: 'test',
      logger,
      backoffBaseMs: 1,
      make: () => {
        const f = new FakeInformer([obj(`gen${made.length}`)], false);
        made.push(f);
        return f as unknown as InformerLike<KubernetesObject>;
      },
      onEvent: (type, o) => events.push(`${type}:${o.metadata?.name ?? ''}`),
      onResync: () => resyncs++,
    });
    await sup.start();
    made[0]?.emit('update', obj('x'));
    expect(events).toEqual(['update:x']);
    made[0]?.emit('error', new Error('watch closed: 500'));
    expect(sup.health().healthy).toBe(false);
    await waitFor(() => resyncs === 2, { what: 'restart after error' });
    expect(made[0]?.stopped).toBe(true);
    made[0]?.emit('update', obj('stale'));
    made[1]?.emit('delete', obj('gen1'));
    expect(events).toEqual(['update:x', 'delete:gen1']);
    expect(sup.list().map((o) => o.metadata?.name)).toEqual(['gen1']);
    expect(sup.health()).toMatchObject({ healthy: true, restarts: 1, lastError: 'watch closed: 500' });
    await sup.stop();
  });

  it('re-lists periodically and when the watchdog sees no activity', async () => {
    let made = 0;
    let resyncs = 0;
    const reasons: string[] = [];
    const sup = new InformerSupervisor({
      name: 'test',
      logger,
      relistIntervalMs: 30,
      watchdogMs: 1_000_000,
      make: () => {
        made++;
        return new FakeInformer([], false) as unknown as InformerLike<KubernetesObject>;
      },
      onEvent: () => undefined,
      onResync: () => resyncs++,
      onRestart: (r) => reasons.push(r),
    });
    await sup.start();
    await waitFor(() => resyncs >= 3, { what: 'two periodic re-lists' });
    expect(reasons.slice(0, 2)).toEqual(['periodic re-list', 'periodic re-list']);
    await sup.stop();

    const reasons2: string[] = [];
    const sup2 = new InformerSupervisor({
      name: 'test2',
      logger,
      watchdogMs: 200,
      relistIntervalMs: 1_000_000,
      make: () => new FakeInformer([], false) as unknown as InformerLike<KubernetesObject>,
      onEvent: () => undefined,
      onResync: () => undefined,
      onRestart: (r) => reasons2.push(r),
    });
    await sup2.start();
    await waitFor(() => reasons2.includes('watchdog'), { what: 'watchdog restart', timeoutMs: 3000 });
    await sup2.stop();
    expect(made).toBeGreaterThanOrEqual(3);
  });

  it('treats a start that never returns as a failure and starts a new informer', async () => {
    let made = 0;
    const sup = new InformerSupervisor({
      name: 'hang',
      logger,
      startTimeoutMs: 50,
      backoffBaseMs: 1,
      make: () => {
        made++;
        const f = new FakeInformer([obj('a')], false);
        if (made === 1) f.start = () => new Promise<void>(() => undefined);
        return f as unknown as InformerLike<KubernetesObject>;
      },
      onEvent: () => undefined,
      onResync: () => undefined,
    });
    await sup.start();
    expect(made).toBe(2);
    expect(sup.health()).toMatchObject({
      synced: true,
      restarts: 1,
      lastError: 'informer start timed out after 50 ms',
    });
    await sup.stop();
  });

  it.each([
    [0, 0, 50],
    [0, 1, 100],
    [3, 0.5, 600],
    [10, 1, 30_000],
  ])('jitteredBackoff(attempt %i, random %f) = %i', (attempt, r, want) => {
    expect(jitteredBackoff(attempt, 100, 30_000, () => r)).toBe(want);
  });
});
