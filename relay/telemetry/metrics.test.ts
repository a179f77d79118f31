import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createRelayMetrics } from './metrics.ts';

describe('createRelayMetrics', () => {
  it('every metric is named mailroute_*, the process defaults once (no mailroute_process_process_*)', async () => {
    const m = createRelayMetrics(new Registry());
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name);
    expect(names.every((n) => n.startsWith('mailroute_'))).toBe(true);
    expect(names).toContain('mailroute_process_cpu_seconds_total');
    expect(names).toContain('mailroute_nodejs_eventloop_lag_seconds');
    expect(names.filter((n) => /process_process|nodejs_nodejs|mailroute_mailroute/.test(n))).toEqual([]);
  });

  it('mailroute_dsn_total help names the kinds it counts', async () => {
    const m = createRelayMetrics(new Registry(), false);
    const dsn = (await m.registry.getMetricsAsJSON()).find((x) => x.name === 'mailroute_dsn_total');
    expect(dsn?.help).toBe(
      'Delivery status notifications, by kind: failed|delayed sent, unroutable not sent, deferred by the per-recipient-domain rate limit (--dsn-rate)',
    );
  });
});

describe('mailroute_callout_catch_all', () => {
  it('is filled at each read from its source, per server and domain, and its help names the fix', async () => {
    const m = createRelayMetrics(new Registry(), false);
    let reads = 0;
    m.setCalloutCatchAllSource((gauge) => {
      reads++;
      gauge.reset();
      gauge.set({ server: 'old', domain: 'example.com' }, 1);
      gauge.set({ server: 'zoho', domain: 'example.com.zoho-test.example' }, 0);
    });
    const text = await m.registry.metrics();
    expect(reads).toBe(1);
    expect(text).toContain('mailroute_callout_catch_all{server="old",domain="example.com"} 1');
    expect(text).toContain(
      'mailroute_callout_catch_all{server="zoho",domain="example.com.zoho-test.example"} 0',
    );
    const json = (await m.registry.getMetricsAsJSON()).find((x) => x.name === 'mailroute_callout_catch_all');
    expect(json).toMatchObject({ type: 'gauge', aggregator: 'max' });
    expect(json?.help).toContain('a catch-all');
    expect(json?.help).toContain('spec.accounts');
  });
});
