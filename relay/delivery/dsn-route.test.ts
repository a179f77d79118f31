import { describe, expect, it } from 'vitest';
import type { DeliveryPlan } from '../../routing/model.ts';
import { dsnRoute, isDeliverableDomain } from './dsn-route.ts';

const managedPlan = (recipient: string): DeliveryPlan => ({
  verdict: 'accept',
  recipient,
  domain: 'managed.test',
  legs: [
    {
      server: { name: 'm', host: '127.0.0.1', port: 2500, mx: false, tls: 'None', maxConnections: 1 },
      recipient,
      role: 'primary',
      bounces: 'Notify',
    },
  ],
});
const deps = { route: managedPlan, isManaged: (d: string) => d === 'managed.test' };

describe('dsnRoute', () => {
  it('a managed sender domain goes through its policy', async () => {
    expect(await dsnRoute('a@Managed.TEST', deps)).toEqual(managedPlan('a@Managed.TEST'));
  });
  it('a managed sender domain written with U-labels (an SMTPUTF8 sender) is found by its A-label', async () => {
    const idn = { route: managedPlan, isManaged: (d: string) => d === 'xn--bcher-kva.example' };
    for (const sender of ['b@bücher.example', 'b@BÜCHER.example', 'b@bu\u0308cher.example'])
      expect(await dsnRoute(sender, idn)).toEqual(managedPlan(sender));
    // not managed: by MX, to the A-label (DNS has no other)
    const other = await dsnRoute('b@bücher.example', deps);
    expect(other.verdict === 'accept' && other.legs[0].server.host).toBe('xn--bcher-kva.example');
  });
  it('a managed sender domain whose route is asynchronous (a verification first): its answer', async () => {
    const later = { ...deps, route: (r: string) => Promise.resolve(managedPlan(r)) };
    expect(await dsnRoute('a@managed.test', later)).toEqual(managedPlan('a@managed.test'));
  });
  it('another domain: one leg of record via MX (its failure is not bounced: a DSN is sent from <>)', async () => {
    expect(await dsnRoute('a@example.org', deps)).toEqual({
      verdict: 'accept',
      recipient: 'a@example.org',
      domain: 'example.org',
      legs: [
        {
          server: {
            name: 'mx',
            host: 'example.org',
            port: 25,
            mx: true,
            tls: 'Opportunistic',
            maxConnections: 4,
          },
          recipient: 'a@example.org',
          role: 'primary',
          bounces: 'Notify',
        },
      ],
    });
  });
  it('another domain with --dsn-relay: the smarthost', async () => {
    const p = await dsnRoute('a@example.org', { ...deps, dsnRelay: { host: '127.0.0.1', port: 2600 } });
    expect(p.legs[0]?.server).toEqual({
      name: 'dsn-relay',
      host: '127.0.0.1',
      port: 2600,
      mx: false,
      tls: 'Opportunistic',
      maxConnections: 4,
    });
  });
  it.each([
    'a@localhost',
    'a@[127.0.0.1]',
    'a@-bad.test',
    'a@x..test',
    'nodomain',
    '@x.test',
    'a@1.2.3.4',
    'a@mün\u200dchen.example',
  ])('%s is undeliverable: reject', async (sender) => {
    expect((await dsnRoute(sender, deps)).verdict).toBe('reject');
  });
  it.each([
    ['bücher.example', true],
    ['xn--bcher-kva.example', true],
    ['a.b.c.example', true],
    ['example', false],
    ['ex_ample.org', false],
  ])('isDeliverableDomain(%s) = %s', (d, ok) => {
    expect(isDeliverableDomain(d)).toBe(ok);
  });
});
