import dns from 'node:dns';
import { afterEach, describe, expect, it } from 'vitest';
import { applyDnsServers } from './dns.ts';

describe('applyDnsServers', () => {
  const before = dns.getServers();
  afterEach(() => dns.setServers(before));

  it.each([
    [{}, undefined, before],
    [{ MAILROUTE_DNS_SERVERS: '127.0.0.1:1' }, undefined, ['127.0.0.1:1']],
    [{ MAILROUTE_DNS_SERVERS: '127.0.0.1, ::1' }, undefined, ['127.0.0.1', '::1']],
  ])('%j', (env, error, servers) => {
    expect(applyDnsServers(env)).toBe(error);
    expect(dns.getServers()).toEqual(servers);
  });

  it('names the variable on a bad value', () => {
    expect(applyDnsServers({ MAILROUTE_DNS_SERVERS: 'not an ip' })).toMatch(/^MAILROUTE_DNS_SERVERS: /);
  });
});
