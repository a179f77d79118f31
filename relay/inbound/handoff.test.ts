import { describe, expect, it } from 'vitest';
import type { Leg } from '../../routing/model.ts';
import {
  canonicalAddress,
  formatLegRoles,
  handoffParamVerdict,
  isPeerAddress,
  narrowLegs,
  parseLegRoles,
  parseOrigin,
} from './handoff.ts';

const server = { name: 's', host: 'h', port: 25, mx: false, tls: 'None' as const, maxConnections: 1 };
const leg = (role: Leg['role']): Leg => ({
  server,
  domain: 'example.com',
  recipient: 'bob@example.com',
  role,
  bounces: 'Notify',
});

describe('hand-off parameters', () => {
  it.each([
    ['0mx0qz1k20001a7f@relay-0.example', { queueId: '0mx0qz1k20001a7f', relay: 'relay-0.example' }],
    ['0mx0qz1k20001a7f', expect.stringContaining('X-MAILROUTE-ORIGIN: expected QUEUEID@RELAY') as string],
    ['short@relay', expect.stringContaining('expected QUEUEID@RELAY') as string],
    ['0mx0qz1k20001a7f@bad host', expect.stringContaining('expected QUEUEID@RELAY') as string],
    [true, 'X-MAILROUTE-ORIGIN needs a value: QUEUEID@RELAY'],
  ])('origin %j', (value, want) => {
    expect(parseOrigin(value)).toEqual(want);
  });

  it.each([
    ['copy', ['copy']],
    ['PRIMARY,copy', ['primary', 'copy']],
    ['none', null],
    ['', null],
    [true, null],
  ])('legs %j', (value, want) => {
    const got = parseLegRoles(value);
    if (want === null) expect(got).toMatch(/^X-MAILROUTE-LEGS: expected primary, copy or primary,copy/);
    else expect([...(got as Set<string>)]).toEqual(want);
  });

  it('formats roles in a fixed order', () => {
    expect(formatLegRoles(['copy', 'primary', 'copy'])).toBe('primary,copy');
  });

  it('narrows a plan to the open roles, and says which role it lacks', () => {
    expect(narrowLegs([leg('primary'), leg('copy')], new Set(['copy']))).toEqual([leg('copy')]);
    expect(narrowLegs([leg('primary')], new Set(['primary', 'copy']))).toBe(
      "no copy leg in this relay's routing",
    );
  });
});

describe('who may send the hand-off parameters', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:10.0.0.7', '10.0.0.7'],
    ['::FFFF:10.0.0.7', '10.0.0.7'],
    ['::ffff:a00:7', '10.0.0.7'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8::1', '2001:db8::1'],
    ['fe80::1%ETH0', 'fe80::1%eth0'],
  ])('address %s is compared as %s', (ip, want) => {
    expect(canonicalAddress(ip)).toBe(want);
  });

  it.each([
    ['a peer address', '10.0.0.7', ['10.0.0.6', '10.0.0.7'], true],
    ['the same address from a dual-stack listener', '::ffff:10.0.0.7', ['10.0.0.7'], true],
    ['IPv6 in another spelling', '2001:db8:0:0::7', ['2001:db8::7'], true],
    ['another address', '10.0.0.8', ['10.0.0.6', '10.0.0.7'], false],
    ['a prefix of a peer address', '10.0.0.1', ['10.0.0.17'], false],
    ['no peers (no --peers, or it resolved to nothing)', '127.0.0.1', [], false],
  ])('%s', (_, client, peers, want) => {
    expect(isPeerAddress(client, peers)).toBe(want);
  });

  it.each([
    ['X-MAILROUTE-LEGS', true, undefined],
    [
      'X-MAILROUTE-LEGS',
      false,
      {
        verdict: 'reject',
        reason: 'UnsupportedParameter',
        reply: { code: 555, enhanced: '5.5.4', text: 'Unsupported parameter X-MAILROUTE-LEGS' },
      },
    ],
    [
      'X-MAILROUTE-ORIGIN',
      false,
      {
        verdict: 'reject',
        reason: 'UnsupportedParameter',
        reply: { code: 555, enhanced: '5.5.4', text: 'Unsupported parameter X-MAILROUTE-ORIGIN' },
      },
    ],
  ])('%s from a peer: %s', (param, fromPeer, want) => {
    expect(handoffParamVerdict(param, fromPeer)).toEqual(want);
  });
});
