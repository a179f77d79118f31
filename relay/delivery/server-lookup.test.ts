import { describe, expect, it } from 'vitest';
import type { Leg, RoutingTable, ServerRoute } from '../../routing/model.ts';
import { localServer } from '../../test/support/delivery.ts';
import { lookupServer } from './server-lookup.ts';

const table = (servers: Record<string, ServerRoute>): RoutingTable => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'RoutingTable',
  sources: [],
  domains: {
    'example.com': {
      domain: 'example.com',
      mailDomain: { kind: 'MailDomain', namespace: 'default', name: 'example-com', generation: 1 },
      servers,
      accounts: {},
      rejectUnknownRecipients: false,
      testRecipients: {},
    },
  },
});

const leg = (l: Pick<Leg, 'server'> & Partial<Pick<Leg, 'domain'>>, recipient = 'bob@example.com') => ({
  recipient,
  leg: { recipient, role: 'primary' as const, bounces: 'Notify' as const, ...l },
});

describe('lookupServer: how a queued leg reaches its server', () => {
  const stored = localServer('legacy', 2525);
  const current = localServer('legacy', 25);
  it.each([
    {
      name: 'domain and server in the table: the current definition',
      t: table({ legacy: current }),
      l: leg({ server: stored, domain: 'example.com' }),
      want: { ok: true, server: current, from: 'table' },
    },
    {
      name: 'no table loaded: the stored copy',
      t: undefined,
      l: leg({ server: stored, domain: 'example.com' }),
      want: { ok: true, server: stored, from: 'stored' },
    },
    {
      name: 'server removed: unroutable, stored copy kept for display',
      t: table({ zoho: localServer('zoho', 25) }),
      l: leg({ server: stored, domain: 'example.com' }),
      want: {
        ok: false,
        server: stored,
        reason: expect.stringContaining(
          'server legacy is no longer declared by the MailDomain of example.com',
        ) as string,
      },
    },
    {
      name: 'domain removed: unroutable',
      t: table({ legacy: current }),
      l: leg({ server: stored, domain: 'gone.example' }),
      want: {
        ok: false,
        server: stored,
        reason: expect.stringContaining('domain gone.example is no longer') as string,
      },
    },
    {
      name: 'older spool file (no domain), server still there: the current definition',
      t: table({ legacy: current }),
      l: leg({ server: stored }),
      want: { ok: true, server: current, from: 'table' },
    },
    {
      name: 'older spool file, server gone: the stored copy (cannot tell it from an outside server)',
      t: table({}),
      l: leg({ server: stored }),
      want: { ok: true, server: stored, from: 'stored' },
    },
    {
      name: 'DSN to an outside sender (no domain, not a managed domain): the stored copy',
      t: table({ legacy: current }),
      l: leg({ server: localServer('mx', 25) }, 'sender@outside.example'),
      want: { ok: true, server: localServer('mx', 25), from: 'stored' },
    },
  ])('$name', ({ t, l, want }) => {
    expect(lookupServer(t, l)).toEqual(want);
  });
});
