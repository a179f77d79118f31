import { describe, expect, it } from 'vitest';
import {
  checkDestination,
  clusterDefaultDeny,
  destinationPolicy,
  parseCidr,
  parseCidrList,
  parseIpAddress,
  canonicalGrantTexts,
  grantFromTexts,
  grantTextErrors,
  PERMIT_ALL,
  policyFromFlags,
  withGrant,
  type Cidr,
  type DestinationPolicy,
} from './destinations.ts';

const list = (raw: string): Cidr[] => {
  const parsed = parseCidrList(raw);
  if (typeof parsed === 'string') throw new Error(parsed);
  return parsed;
};

describe('parseIpAddress', () => {
  it.each([
    ['127.0.0.1', 4, 0x7f000001n],
    ['0.0.0.0', 4, 0n],
    ['::ffff:127.0.0.1', 4, 0x7f000001n],
    ['::FFFF:7f00:1', 4, 0x7f000001n],
    ['[::ffff:169.254.169.254]', 4, 0xa9fea9fen],
    ['::1', 6, 1n],
    ['[::]', 6, 0n],
    ['::', 6, 0n],
    ['fe80::1%eth0', 6, (0xfe80n << 112n) | 1n],
    ['fd00:ec2::254', 6, (0xfd00n << 112n) | (0xec2n << 96n) | 0x254n],
    ['2001:db8:0:0:0:0:0:1', 6, (0x20010db8n << 96n) | 1n],
    ['64:ff9b::1.2.3.4', 6, (0x64n << 112n) | (0xff9bn << 96n) | 0x01020304n],
  ] as const)('%s -> IPv%i', (text, family, value) => {
    expect(parseIpAddress(text)).toEqual({ family, value });
  });

  it.each([
    '2130706433', // decimal 127.0.0.1: an address only to inet_aton; resolve it, then check the answer
    '0x7f000001',
    '127.1',
    '0177.0.0.1',
    '010.0.0.1',
    '256.0.0.1',
    'localhost',
    'mail.example.com',
    ':::1',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '12345::1',
    '',
  ])('%j is not an IP address', (text) => {
    expect(parseIpAddress(text)).toBeUndefined();
  });
});

describe('parseCidr / parseCidrList', () => {
  it.each([
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['192.0.2.7', '192.0.2.7/32'],
    ['::1', '::1/128'],
    ['fe80::/10', 'fe80::/10'],
    ['fd00:ec2::254/128', 'fd00:ec2::254/128'],
    ['::ffff:127.0.0.0/104', '127.0.0.0/8'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['::/0', '::/0'],
  ])('%s -> %s', (text, canonical) => {
    const c = parseCidr(text);
    expect(typeof c === 'string' ? c : c.text).toBe(canonical);
  });

  it.each([
    ['10.0.0.0/33', 'prefix length must be 0..32'],
    ['::/129', 'prefix length must be 0..128'],
    ['10.0.0.0/x', 'prefix length must be a number'],
    ['2130706433/32', 'is not an IP address or CIDR'],
    ['example.com', 'is not an IP address or CIDR'],
  ])('%s is refused: %s', (text, message) => {
    expect(parseCidr(text)).toContain(message);
  });

  it('a list separated by commas and spaces; the first bad entry is named', () => {
    expect(list('10.0.0.0/8, 172.16.0.0/12 ,fd00::/8').map((c) => c.text)).toEqual([
      '10.0.0.0/8',
      '172.16.0.0/12',
      'fd00::/8',
    ]);
    expect(list('')).toEqual([]);
    expect(parseCidrList('10.0.0.0/8,10.0.0.0/99,nonsense')).toContain('"10.0.0.0/99"');
  });
});

describe('checkDestination', () => {
  const cluster = destinationPolicy({
    deny: [...clusterDefaultDeny(), ...list('10.96.0.0/12, 10.244.0.0/16')],
  });

  it.each([
    ['127.0.0.1', '127.0.0.0/8'],
    ['127.255.0.9', '127.0.0.0/8'],
    ['::ffff:127.0.0.1', '127.0.0.0/8'],
    ['::1', '::1/128'],
    ['[::]', '::/128'],
    ['::', '::/128'],
    ['0.0.0.0', '0.0.0.0/8'],
    ['169.254.169.254', '169.254.0.0/16'],
    ['::ffff:169.254.169.254', '169.254.0.0/16'],
    ['fe80::1', 'fe80::/10'],
    ['fe80::1%eth0', 'fe80::/10'],
    ['fd00:ec2::254', 'fd00:ec2::254/128'],
    ['100.100.100.200', '100.100.100.200/32'],
    ['255.255.255.255', '240.0.0.0/4'],
    ['10.96.0.1', '10.96.0.0/12'],
    ['10.244.3.17', '10.244.0.0/16'],
    // never resolved: numeric forms and names are not addresses, so they are not permitted by a policy
    ['2130706433', 'not an IP address'],
    ['0x7f000001', 'not an IP address'],
    ['127.1', 'not an IP address'],
    ['localhost', 'not an IP address'],
  ])('cluster default denies %s (%s)', (address, rule) => {
    expect(checkDestination(cluster, address)).toEqual({ permitted: false, rule });
  });

  it.each(['192.0.2.10', '2001:db8::25', '10.0.0.5', '172.16.4.4', '::ffff:192.0.2.10', '169.253.0.1'])(
    'cluster default permits %s',
    (address) => {
      expect(checkDestination(cluster, address)).toEqual({ permitted: true });
    },
  );

  it('allow entries are exceptions to the deny list', () => {
    const p = destinationPolicy({
      deny: list('10.0.0.0/8, 127.0.0.0/8'),
      allow: list('10.1.2.3, 127.0.0.1'),
    });
    expect(checkDestination(p, '10.1.2.3').permitted).toBe(true);
    expect(checkDestination(p, '10.1.2.4')).toEqual({ permitted: false, rule: '10.0.0.0/8' });
    expect(checkDestination(p, '::ffff:127.0.0.1').permitted).toBe(true);
    expect(checkDestination(p, '127.0.0.2').permitted).toBe(false);
  });

  it('the empty policy permits everything, even unresolved text (the standalone default)', () => {
    for (const a of ['127.0.0.1', '::1', '2130706433', 'localhost']) {
      expect(checkDestination(PERMIT_ALL, a)).toEqual({ permitted: true });
    }
  });

  it('IPv4 entries never match IPv6 addresses outside ::ffff:0:0/96 and the other way round', () => {
    const p = destinationPolicy({ deny: list('0.0.0.0/0') });
    expect(checkDestination(p, '2001:db8::1').permitted).toBe(true);
    expect(checkDestination(p, '::7f00:1').permitted).toBe(true); // IPv4-compatible, not mapped: an IPv6 address
    expect(checkDestination(destinationPolicy({ deny: list('::/0') }), '192.0.2.1').permitted).toBe(true);
  });
});

describe("withGrant: the global policy combined with a DomainClaim's destinations", () => {
  const flags = (deny: string, allow: string, clusterDefaults: boolean): DestinationPolicy => {
    const p = policyFromFlags({ deny, allow, clusterDefaults });
    if ('flag' in p) throw new Error(p.message);
    return p;
  };
  const cluster = flags('10.244.0.0/16, 10.96.0.0/12', '192.0.2.99', true); // chart: pod + service ranges
  const standalone = flags('127.0.0.0/8', '', false);
  const grant = (allow: string, deny: string) =>
    grantFromTexts({ allow: list(allow).map((c) => c.text), deny: list(deny).map((c) => c.text) });

  it.each([
    // [case, global, grant allow, grant deny, address, permitted?, rule]
    ['no grant: global policy', cluster, undefined, undefined, '10.244.1.7', false, '10.244.0.0/16'],
    ['grant allow carves the pod range for this domain', cluster, '10.244.1.7', '', '10.244.1.7', true, ''],
    ['... only the allowed address', cluster, '10.244.1.7', '', '10.244.1.8', false, '10.244.0.0/16'],
    ['grant allow carves a cluster default (loopback)', cluster, '127.0.0.1', '', '127.0.0.1', true, ''],
    ['grant allow carves a --deny-destinations range', standalone, '127.0.0.1/32', '', '127.0.0.1', true, ''],
    [
      'grant allow never re-permits metadata',
      cluster,
      '169.254.0.0/16',
      '',
      '169.254.169.254',
      false,
      '169.254.0.0/16',
    ],
    ['grant allow never re-permits link-local IPv6', cluster, '::/0', '', 'fe80::1', false, 'fe80::/10'],
    [
      'grant allow 0.0.0.0/0 cannot re-permit Alibaba metadata',
      cluster,
      '0.0.0.0/0',
      '',
      '100.100.100.200',
      false,
      '100.100.100.200/32',
    ],
    [
      'grant allow of an address nothing denies: permitted anyway',
      cluster,
      '198.51.100.1',
      '',
      '198.51.100.2',
      true,
      '',
    ],
    [
      'grant deny adds to the deny list',
      cluster,
      '',
      '198.51.100.0/24',
      '198.51.100.2',
      false,
      '198.51.100.0/24 (DomainClaim)',
    ],
    [
      'grant deny adds even to a permit-all standalone relay',
      PERMIT_ALL,
      '',
      '127.0.0.1',
      '127.0.0.1',
      false,
      '127.0.0.1/32 (DomainClaim)',
    ],
    [
      'grant deny wins over --allow-destinations',
      cluster,
      '',
      '192.0.2.0/24',
      '192.0.2.99',
      false,
      '192.0.2.0/24 (DomainClaim)',
    ],
    [
      'grant deny wins over its own allow',
      cluster,
      '10.244.1.7',
      '10.244.1.0/24',
      '10.244.1.7',
      false,
      '10.244.1.0/24 (DomainClaim)',
    ],
    ['--allow-destinations still applies', cluster, '', '10.0.0.0/8', '192.0.2.99', true, ''],
    [
      'a grant never permits a name that is not an address',
      cluster,
      '0.0.0.0/0',
      '',
      '2130706433',
      false,
      'not an IP address',
    ],
    ['IPv4-mapped address is its IPv4', cluster, '10.244.1.7', '', '::ffff:10.244.1.7', true, ''],
  ] as const)('%s', (_name, global, allow, deny, address, permitted, rule) => {
    const g = allow === undefined ? undefined : grant(allow, deny ?? '');
    expect(checkDestination(withGrant(global, g), address)).toEqual(
      permitted ? { permitted: true } : { permitted: false, rule },
    );
  });

  it('an empty grant is the global policy itself', () => {
    expect(withGrant(cluster, grantFromTexts({ allow: [], deny: [] }))).toBe(cluster);
    expect(withGrant(cluster, undefined)).toBe(cluster);
  });

  it('a table entry that does not parse fails closed: bad deny denies everything, bad allow is dropped', () => {
    const g = grantFromTexts({ allow: ['10.244.1.7', 'nonsense'], deny: ['also nonsense'] })!;
    expect(g.allow.map((c) => c.text)).toEqual(['10.244.1.7/32']);
    expect(g.deny.map((c) => c.text)).toEqual(['0.0.0.0/0', '::/0']);
    expect(checkDestination(withGrant(PERMIT_ALL, g), '198.51.100.1').permitted).toBe(false);
  });

  type Lists = { allow?: string[]; deny?: string[] } | undefined;
  it.each<[string, Lists, string[]]>([
    ['nothing to report', { allow: ['10.244.1.7'], deny: ['10.0.0.0/8', 'fd00::/64'] }, []],
    ['no destinations', undefined, []],
    [
      'a prefix length too long (the API server let it through before the CRD pattern refused it)',
      { deny: ['192.0.2.0/24', '10.0.0.0/33'] },
      ['deny[1] "10.0.0.0/33": prefix length must be 0..32'],
    ],
    [
      'an IPv6 prefix over 128 and an allow entry that is no address',
      { allow: ['corp.test', '10.244.0.0/16'], deny: ['fd00::/129'] },
      [
        'deny[0] "fd00::/129": prefix length must be 0..128',
        'allow[0] "corp.test" is not an IP address or CIDR (IPv4 a.b.c.d/n or IPv6 x:y::z/n)',
      ],
    ],
    [
      'an IPv6 shape the pattern cannot judge',
      { allow: ['1::2::3/64'] },
      ['allow[0] "1::2::3/64" is not an IP address or CIDR (IPv4 a.b.c.d/n or IPv6 x:y::z/n)'],
    ],
  ])('grantTextErrors: %s', (_what, d, want) => {
    const errors = grantTextErrors(d).map((e) => `${e.list}[${e.index}] ${e.message}`);
    expect(errors).toEqual(want);
    // exactly the entries grantFromTexts cannot read: with a bad deny entry it denies every address
    const g = grantFromTexts(d);
    if (errors.some((e) => e.startsWith('deny')))
      expect(g?.deny.map((c) => c.text)).toEqual(['0.0.0.0/0', '::/0']);
    expect(g?.allow.length ?? 0).toBe(
      (d?.allow?.length ?? 0) - errors.filter((e) => e.startsWith('allow')).length,
    );
  });

  it('canonicalGrantTexts: canonical, sorted, deduplicated; nothing when both lists are empty', () => {
    expect(
      canonicalGrantTexts({ allow: ['10.1.2.3/8', '10.0.0.0/8', '::FFFF:10.0.0.0/104'], deny: ['fd00::1'] }),
    ).toEqual({
      allow: ['10.0.0.0/8'],
      deny: ['fd00::1/128'],
    });
    expect(canonicalGrantTexts({ allow: [], deny: [] })).toBeUndefined();
    expect(canonicalGrantTexts(undefined)).toBeUndefined();
  });
});
