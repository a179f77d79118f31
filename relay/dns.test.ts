// The DNS seam against a real DNS responder on loopback (test/support/dns-server.ts): made-up names the system
// resolver does not know, answered only by the servers the seam is told to use.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type DnsServer } from '../test/support/dns-server.ts';
import { createDnsResolver, parseDnsServers } from './dns.ts';

let server: DnsServer;
beforeAll(async () => {
  server = await startDnsServer({
    a: { 'mx.mailroute.test': ['127.0.0.1'], 'dual.mailroute.test': ['127.0.0.2'] },
    aaaa: { 'dual.mailroute.test': ['::1'], 'v6.mailroute.test': ['fd00::25'] },
    mx: {
      'mailroute.test': [
        { priority: 20, exchange: 'backup.mailroute.test' },
        { priority: 10, exchange: 'mx.mailroute.test' },
      ],
    },
  });
});
afterAll(() => server.close());

describe('createDnsResolver with servers (MAILROUTE_DNS_SERVERS)', () => {
  it('asks those servers for A, AAAA and MX, IPv4 first', async () => {
    const dns = createDnsResolver({ servers: [server.address], timeoutMs: 1000, tries: 1 });
    expect(await dns.addresses('mx.mailroute.test')).toEqual(['127.0.0.1']);
    expect(await dns.addresses('dual.mailroute.test')).toEqual(['127.0.0.2', '::1']);
    expect(await dns.addresses('v6.mailroute.test')).toEqual(['fd00::25']);
    expect(await dns.resolveMx('mailroute.test')).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ priority: 10, exchange: 'mx.mailroute.test' }),
        expect.objectContaining({ priority: 20, exchange: 'backup.mailroute.test' }),
      ]),
    );
    expect(server.queries).toEqual(
      expect.arrayContaining(['A mx.mailroute.test', 'AAAA mx.mailroute.test', 'MX mailroute.test']),
    );
  });

  it('a name the servers do not know is ENOTFOUND; IP literals and localhost ask nobody', async () => {
    const dns = createDnsResolver({ servers: [server.address], timeoutMs: 1000, tries: 1 });
    await expect(dns.addresses('nowhere.mailroute.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    const before = server.queries.length;
    expect(await dns.addresses('192.0.2.1')).toEqual(['192.0.2.1']);
    expect(await dns.addresses('::1')).toEqual(['::1']);
    expect(await dns.addresses('localhost')).toEqual(['127.0.0.1', '::1']);
    expect(server.queries.length).toBe(before);
  });
});

describe('parseDnsServers', () => {
  it.each([
    ['127.0.0.1', ['127.0.0.1']],
    ['127.0.0.1:5353, [::1]:53', ['127.0.0.1:5353', '[::1]:53']],
  ])('%j', (raw, list) => expect(parseDnsServers(raw)).toEqual(list));
  it.each(['', ' , ', 'not an ip', 'dns.example.com'])('refuses %j with a reason', (raw) => {
    expect(typeof parseDnsServers(raw)).toBe('string');
  });
});
