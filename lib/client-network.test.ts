import { describe, expect, it } from 'vitest';
import { clientNetwork, DEFAULT_IPV6_PREFIX } from './client-network.ts';

describe('clientNetwork: the key per-client limits count an address under', () => {
  it.each<[string, number, string]>([
    ['192.0.2.1', 64, '192.0.2.1'],
    ['127.0.0.1', 64, '127.0.0.1'],
    // what a dual-stack listener reports for an IPv4 client
    ['::ffff:192.0.2.1', 64, '192.0.2.1'],
    ['::FFFF:c000:0201', 64, '192.0.2.1'],
    // one /64: every address of a host's (or LAN's) network is one client
    ['2001:db8:1:2::1', 64, '2001:db8:1:2:0:0:0:0/64'],
    ['2001:db8:1:2:ffff:ffff:ffff:fffe', 64, '2001:db8:1:2:0:0:0:0/64'],
    ['2001:DB8:1:2:a:b:c:d', 64, '2001:db8:1:2:0:0:0:0/64'],
    ['2001:0db8:0001:0002:0000:0000:0000:0009', 64, '2001:db8:1:2:0:0:0:0/64'],
    ['2001:db8:1:3::1', 64, '2001:db8:1:3:0:0:0:0/64'],
    ['fe80::1%eth0', 64, 'fe80:0:0:0:0:0:0:0/64'],
    ['[2001:db8::5]', 64, '2001:db8:0:0:0:0:0:0/64'],
    ['::1', 64, '0:0:0:0:0:0:0:0/64'],
    ['::1', 128, '0:0:0:0:0:0:0:1/128'],
    ['2001:db8:1:2:3:4:5:6', 128, '2001:db8:1:2:3:4:5:6/128'],
    // a prefix inside a group
    ['2001:db8:1:2:abcd:ef01::1', 84, '2001:db8:1:2:abcd:e000:0:0/84'],
    ['2001:db8:ffff::1', 36, '2001:db8:f000:0:0:0:0:0/36'],
    ['2001:db8::1', 0, '0:0:0:0:0:0:0:0/0'],
    // an IPv4 tail in a non-mapped address
    ['64:ff9b::192.0.2.33', 96, '64:ff9b:0:0:0:0:0:0/96'],
    ['64:ff9b::192.0.2.33', 128, '64:ff9b:0:0:0:0:c000:221/128'],
    // not an address: its own key
    ['', 64, ''],
    ['not-an-ip', 64, 'not-an-ip'],
    ['1:2:3:4:5:6:7:8:9', 64, '1:2:3:4:5:6:7:8:9'],
  ])('%s /%i -> %s', (address, prefix, want) => {
    expect(clientNetwork(address, prefix)).toBe(want);
  });

  it('defaults to /64', () => {
    expect(DEFAULT_IPV6_PREFIX).toBe(64);
    expect(clientNetwork('2001:db8:1:2::1')).toBe('2001:db8:1:2:0:0:0:0/64');
  });

  it('any address of a network gives the same key; the next network another', () => {
    const keys = new Set<string>();
    for (let i = 0; i < 200; i++)
      keys.add(clientNetwork(`2001:db8:aa:bb:${i.toString(16)}::${(i * 7).toString(16)}`));
    expect([...keys]).toEqual(['2001:db8:aa:bb:0:0:0:0/64']);
    expect(clientNetwork('2001:db8:aa:bc::1')).not.toBe(clientNetwork('2001:db8:aa:bb::1'));
  });
});
