import { describe, expect, it } from 'vitest';
import { createPeerTrust } from './peer-trust.ts';

/** A resolver over a zone the test changes, counting lookups; a missing name rejects as DNS would. */
function zone(initial: Record<string, string[]>) {
  const records = new Map(Object.entries(initial));
  const lookups: string[] = [];
  return {
    records,
    lookups,
    resolve(host: string): Promise<string[]> {
      lookups.push(host);
      const a = records.get(host);
      return a === undefined
        ? Promise.reject(Object.assign(new Error(`queryA ENOTFOUND ${host}`), { code: 'ENOTFOUND' }))
        : Promise.resolve([...a]);
    },
  };
}

describe('peer trust', () => {
  it('no --peers: nobody is a peer and nothing is resolved', async () => {
    const z = zone({});
    const t = createPeerTrust({ hosts: [], resolve: (h) => z.resolve(h) });
    expect(await t.isPeer('127.0.0.1')).toBe(false);
    expect(z.lookups).toEqual([]);
  });

  it('the addresses of every --peers host, cached; a miss re-resolves at most every missRefreshMs', async () => {
    let now = 0;
    const z = zone({ 'relay-peers.mail.svc': ['10.0.0.6', '10.0.0.7'], 'other.example': ['10.0.1.1'] });
    const t = createPeerTrust({
      hosts: ['relay-peers.mail.svc', 'other.example', 'relay-peers.mail.svc'],
      resolve: (h) => z.resolve(h),
      refreshMs: 30_000,
      missRefreshMs: 2_000,
      now: () => now,
    });
    expect(await t.isPeer('10.0.0.7')).toBe(true);
    expect(await t.isPeer('::ffff:10.0.1.1')).toBe(true);
    expect(z.lookups).toEqual(['relay-peers.mail.svc', 'other.example']);
    // a stranger within missRefreshMs: no lookup
    expect(await t.isPeer('10.9.9.9')).toBe(false);
    expect(z.lookups).toHaveLength(2);
    // a new pod appears; its first hand-off after missRefreshMs finds it
    z.records.set('relay-peers.mail.svc', ['10.0.0.6', '10.0.0.7', '10.0.0.8']);
    now = 2_000;
    expect(await t.isPeer('10.0.0.8')).toBe(true);
    expect(z.lookups).toHaveLength(4);
    // a hit does not re-resolve until refreshMs
    now = 20_000;
    expect(await t.isPeer('10.0.0.8')).toBe(true);
    expect(z.lookups).toHaveLength(4);
    // a pod gone (its address reused by something else) stops being trusted at the next refresh
    z.records.set('relay-peers.mail.svc', ['10.0.0.6']);
    now = 32_000;
    expect(await t.isPeer('10.0.0.7')).toBe(false);
  });

  it('a host that does not resolve counts as no address (fail closed); the others still count', async () => {
    let now = 0;
    const z = zone({ 'b.example': ['10.0.0.2'] });
    const t = createPeerTrust({
      hosts: ['a.example', 'b.example'],
      resolve: (h) => z.resolve(h),
      now: () => now,
    });
    expect(await t.isPeer('10.0.0.2')).toBe(true);
    expect(await t.isPeer('10.0.0.1')).toBe(false);
    z.records.delete('b.example');
    now = 60_000;
    expect(await t.isPeer('10.0.0.2')).toBe(false);
  });

  it('concurrent clients share one resolution', async () => {
    const z = zone({ 'peers.example': ['10.0.0.1'] });
    const t = createPeerTrust({ hosts: ['peers.example'], resolve: (h) => z.resolve(h) });
    expect(await Promise.all([t.isPeer('10.0.0.1'), t.isPeer('10.0.0.1'), t.isPeer('10.0.0.1')])).toEqual([
      true,
      true,
      true,
    ]);
    expect(z.lookups).toEqual(['peers.example']);
  });

  it("cluster mode: the addresses of the other relays' Leases count too, asked with every resolution", async () => {
    let now = 0;
    let leases = ['10.0.2.1'];
    let asked = 0;
    const z = zone({});
    const t = createPeerTrust({
      hosts: [],
      resolve: (h) => z.resolve(h),
      more: () => {
        asked++;
        return Promise.resolve([...leases]);
      },
      now: () => now,
    });
    expect(await t.isPeer('10.0.2.1')).toBe(true);
    expect(await t.isPeer('10.0.2.2')).toBe(false);
    expect(asked).toBe(1);
    leases = ['10.0.2.1', '10.0.2.2'];
    now = 2_000;
    expect(await t.isPeer('10.0.2.2')).toBe(true);
    expect(asked).toBe(2);
    expect(z.lookups).toEqual([]);
  });

  it('a Lease list or a --peers name that never answers counts as none after lookupTimeoutMs; the others still count', async () => {
    const z = zone({ 'b.example': ['10.0.0.2'] });
    const t = createPeerTrust({
      hosts: ['a.example', 'b.example'],
      // a.example's server and the API server drop the packets: neither lookup ever settles
      resolve: (h) => (h === 'a.example' ? new Promise<string[]>(() => undefined) : z.resolve(h)),
      more: () => new Promise<string[]>(() => undefined),
      lookupTimeoutMs: 50,
    });
    // both decisions come (a hung lookup used to hold every hand-off's MAIL FROM until the peer gave up)
    expect(await t.isPeer('10.0.0.2')).toBe(true);
    expect(await t.isPeer('10.0.9.9')).toBe(false);
  });
});
