import { describe, expect, it } from 'vitest';
import type { KubeRest } from './rest.ts';
import { createEventRecorder } from './ssa.ts';

describe('createEventRecorder', () => {
  it('writes core/v1 Events and drops those over the rate limit', async () => {
    const posted: {
      path: string;
      body: { reason: string; involvedObject: { name: string }; type: string };
    }[] = [];
    const rest: KubeRest = {
      request: <T>(_m: string, path: string, opts?: { body?: unknown }) => {
        posted.push({ path, body: opts?.body as (typeof posted)[number]['body'] });
        return Promise.resolve({ ok: true as const, status: 201, body: {} as T });
      },
    };
    let clock = 0;
    let dropped = 0;
    const rec = createEventRecorder(
      rest,
      'mailroute-operator',
      () => new Date(clock),
      () => undefined,
      { qps: 2, burst: 3 },
      () => dropped++,
    );
    const obj = { apiVersion: 'mailroute.io/v1alpha1', kind: 'DeliveryPolicy', namespace: 'ns', name: 'p' };
    for (let i = 0; i < 5; i++) await rec.event(obj, 'Warning', 'Conflict', 'x');
    expect([posted.length, dropped]).toEqual([3, 2]);
    clock += 1000; // two tokens back
    for (let i = 0; i < 3; i++) await rec.event(obj, 'Normal', 'Ready', 'y');
    expect([posted.length, dropped]).toEqual([5, 3]);
    expect(posted[0]).toMatchObject({
      path: '/api/v1/namespaces/ns/events',
      body: { reason: 'Conflict', type: 'Warning', involvedObject: { name: 'p' } },
    });
  });
});
