// The memory of hosts whose STARTTLS handshake failed under opportunistic TLS, and the settings of a fallback
// connection. Pure; the fallback itself runs against real servers in pool.test.ts.
import { describe, expect, it } from 'vitest';
import { DEFAULT_TIMEOUTS } from '../../../lib/smtp-client.ts';
import type { ConnectionSettings } from './connection.ts';
import { PlainTextHosts, plainTextSettings } from './tls-fallback.ts';

describe('PlainTextHosts', () => {
  it('remembers a host for ttlMs, then forgets it', () => {
    let now = 0;
    const hosts = new PlainTextHosts(1000, 10, () => now);
    hosts.remember('192.0.2.1:25');
    expect(hosts.has('192.0.2.1:25')).toBe(true);
    expect(hosts.has('192.0.2.2:25')).toBe(false);
    now = 999;
    expect(hosts.has('192.0.2.1:25')).toBe(true);
    now = 1000;
    expect(hosts.has('192.0.2.1:25')).toBe(false);
    expect(hosts.size).toBe(0);
  });

  it('holds at most max hosts: the oldest is forgotten first, a host remembered again is the newest', () => {
    const hosts = new PlainTextHosts(1000, 2, () => 0);
    hosts.remember('a:25');
    hosts.remember('b:25');
    hosts.remember('a:25');
    hosts.remember('c:25');
    expect([hosts.has('a:25'), hosts.has('b:25'), hosts.has('c:25')]).toEqual([true, false, true]);
    expect(hosts.size).toBe(2);
  });

  it('ttl 0: remembers nothing', () => {
    const hosts = new PlainTextHosts(0);
    hosts.remember('a:25');
    expect(hosts.has('a:25')).toBe(false);
  });
});

describe('plainTextSettings', () => {
  it('no STARTTLS and no AUTH; the rest as it was', () => {
    const settings: ConnectionSettings = {
      host: '192.0.2.1',
      port: 25,
      name: 'relay.test',
      timeouts: DEFAULT_TIMEOUTS,
      implicitTls: false,
      ignoreTls: false,
      requireTls: false,
      opportunisticTls: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'u', pass: 'p' },
    };
    const { auth: _, ...rest } = settings;
    expect(plainTextSettings(settings)).toEqual({ ...rest, ignoreTls: true, opportunisticTls: false });
    expect(settings.auth).toEqual({ user: 'u', pass: 'p' });
  });
});
