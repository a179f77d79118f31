import { describe, expect, it } from 'vitest';
import { guardAdminRequest, hostAllowed, hostName } from './guard.ts';

const TOKEN = 'x'.repeat(43);

describe('admin API guard', () => {
  it.each([
    ['127.0.0.1:9091', '127.0.0.1'],
    ['[::1]:9091', '::1'],
    ['LocalHost', 'localhost'],
    ['attacker.example:9091', 'attacker.example'],
  ])('hostName(%s) = %s', (h, want) => expect(hostName(h)).toBe(want));

  it.each([
    ['127.0.0.1:9091', '127.0.0.1', true],
    ['localhost:9091', '127.0.0.1', true],
    ['localhost.', '127.0.0.1', true],
    ['[::1]:9091', '127.0.0.1', true],
    ['10.1.2.3:9091', '0.0.0.0', true],
    ['relay-0.admin:9091', 'relay-0.admin', true],
    ['attacker.example:9091', '127.0.0.1', false],
    ['127.0.0.1.attacker.example', '127.0.0.1', false],
    ['localhost.attacker.example', '127.0.0.1', false],
    ['', '127.0.0.1', false],
    [undefined, '127.0.0.1', false],
  ])('Host %j on %s -> %s', (host, listen, want) => expect(hostAllowed(host, listen)).toBe(want));

  const ok = { host: '127.0.0.1:9091' };
  const auth = { authorization: `Bearer ${TOKEN}` };
  it.each([
    ['GET', ok, 'ok'],
    ['GET', { ...ok, 'sec-fetch-site': 'none' }, 'ok'],
    ['GET', { ...ok, 'sec-fetch-site': 'cross-site' }, 403],
    ['GET', { ...ok, origin: 'http://attacker.example' }, 403],
    ['GET', { host: 'attacker.example' }, 421],
    ['POST', { ...ok, ...auth }, 'ok'],
    ['POST', { ...ok, 'content-type': 'text/plain', origin: 'http://attacker.example' }, 403],
    ['POST', { ...ok, ...auth, origin: 'null' }, 403],
    ['POST', ok, 401],
    ['DELETE', ok, 401],
    ['DELETE', { ...ok, authorization: 'Bearer wrong' }, 403],
    ['DELETE', { ...ok, authorization: `Basic ${TOKEN}` }, 403],
    ['DELETE', { ...ok, ...auth }, 'ok'],
    ['DELETE', { host: 'attacker.example', ...auth }, 421],
  ] as const)('%s %j -> %s', (method, headers, want) => {
    const v = guardAdminRequest({ method, headers }, { listenHost: '127.0.0.1', token: TOKEN });
    expect(v.ok ? 'ok' : v.status).toBe(want);
  });

  it.each([
    ['host', { host: `a${'h'.repeat(16_000)}.example` }],
    ['origin', { host: '127.0.0.1:9091', origin: `http://${'o'.repeat(16_000)}.example` }],
    ['sec-fetch-site', { host: '127.0.0.1:9091', 'sec-fetch-site': 's'.repeat(16_000) }],
  ])('a refusal quotes at most 100 characters of a 16 KiB %s header', (_name, headers) => {
    const v = guardAdminRequest({ method: 'GET', headers }, { listenHost: '127.0.0.1', token: TOKEN });
    expect(v.ok).toBe(false);
    if (!v.ok) {
      expect(v.error.length).toBeLessThan(250);
      expect(v.error).toMatch(/\.\.\. \(\d+ more\)/);
    }
  });
});
