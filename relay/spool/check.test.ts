import { describe, expect, it } from 'vitest';
import { checkState } from './check.ts';
import { spoolEnvelope } from '../../test/support/delivery.ts';
import type { EnvelopeMeta, SpoolState } from './types.ts';

const ID = '0000000000000abc';
const withoutRecipients = ({ recipients: _recipients, ...meta }: EnvelopeMeta): SpoolState['meta'] => meta;
const good = (): SpoolState => ({
  version: 1,
  id: ID,
  meta: withoutRecipients(spoolEnvelope()),
  size: 10,
  legs: [
    {
      recipient: 'bob@example.com',
      leg: {
        server: { name: 'legacy', host: '127.0.0.1', port: 25, mx: false, tls: 'None', maxConnections: 2 },
        recipient: 'bob@example.com',
        role: 'primary',
        bounces: 'Notify',
      },
      state: 'deferred',
      attempts: 1,
      nextAttemptAt: '2026-11-28T10:01:00.000Z',
      lastReply: '451 4.3.0 try later',
      dsnId: 'none',
    },
  ],
});

/** A copy of good() with the value at path replaced. */
function withValue(path: (string | number)[], value: unknown): unknown {
  const root = structuredClone(good()) as unknown;
  let o = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  o[path[path.length - 1]!] = value;
  return root;
}

describe('checkState: what is read from the spool is checked like SMTP input', () => {
  it('accepts a state the relay writes, and a DSN to a sender parseAddress would not route', () => {
    expect(typeof checkState(good(), ID)).toBe('object');
    const dsn = good();
    dsn.meta.mailFrom = '';
    dsn.legs[0]!.recipient = 'odd,local@sender.example';
    dsn.legs[0]!.leg.recipient = 'odd,local@sender.example';
    expect(typeof checkState(dsn, ID)).toBe('object');
  });

  const L = ['legs', 0];
  const S = ['legs', 0, 'leg', 'server'];
  const cases: [string, (string | number)[], unknown, RegExp][] = [
    ['CRLF in the sender', ['meta', 'mailFrom'], 'a@b.example\r\nRCPT TO:<x@evil.example>', /meta\.mailFrom/],
    [
      'CRLF in a leg recipient',
      [...L, 'leg', 'recipient'],
      'b@x.example>\r\nDATA',
      /legs\[0\]\.leg\.recipient/,
    ],
    ['CRLF in a recipient', [...L, 'recipient'], 'b@x.example\r\n', /legs\[0\]\.recipient/],
    ['a recipient without a domain', [...L, 'leg', 'recipient'], 'postmaster', /leg\.recipient: no @/],
    ['an unknown TLS mode', [...S, 'tls'], 'Sometimes', /leg\.server\.tls: "Sometimes"/],
    ['an unknown role', [...L, 'leg', 'role'], 'bcc', /leg\.role/],
    ['an unknown bounce mode', [...L, 'leg', 'bounces'], 'Loud', /leg\.bounces/],
    ['an unknown leg state', [...L, 'state'], 'lost', /legs\[0\]\.state/],
    ['a port out of range', [...S, 'port'], 70000, /leg\.server\.port/],
    ['a host with a space', [...S, 'host'], 'a b', /leg\.server\.host/],
    ['zero connections', [...S, 'maxConnections'], 0, /maxConnections/],
    [
      'zero recipients per transaction',
      [...S, 'maxRecipientsPerTransaction'],
      0,
      /maxRecipientsPerTransaction/,
    ],
    [
      'recipients per transaction not a number',
      [...S, 'maxRecipientsPerTransaction'],
      '50',
      /maxRecipientsPerTransaction/,
    ],
    ['mx not a boolean', [...S, 'mx'], 'yes', /leg\.server\.mx/],
    ['negative attempts', [...L, 'attempts'], -1, /attempts/],
    ['a reply that is not a string', [...L, 'lastReply'], 451, /lastReply/],
    ['a server label with a NUL', [...L, 'lastServer'], 'mx.example:25\u0000', /lastServer/],
    ['a bad time', [...L, 'nextAttemptAt'], 'soon', /nextAttemptAt/],
    ['delayPending not a boolean', [...L, 'delayPending'], 'yes', /delayPending/],
    ['a delay DSN id with a line break', [...L, 'delayDsnId'], 'x\r\ny', /delayDsnId/],
    ['a HELO with a line break', ['meta', 'helo'], 'x\nReceived: forged', /meta\.helo/],
    ['a fractional size', ['size'], 1.5, /size/],
    ['another id', ['id'], '0000000000000abd', /id: expected/],
    ['version 2', ['version'], 2, /version/],
    ['legs not a list', ['legs'], {}, /legs: missing/],
    ['a body CRC-32 as a hex string', ['bodyCrc32'], '0badc0de', /bodyCrc32: "0badc0de"/],
    ['a negative body CRC-32', ['bodyCrc32'], -1, /bodyCrc32: -1/],
    ['a body CRC-32 beyond 32 bits', ['bodyCrc32'], 2 ** 32, /bodyCrc32: 4294967296/],
    ['a fractional body CRC-32', ['bodyCrc32'], 1.5, /bodyCrc32: 1.5/],
    ['a null body CRC-32', ['bodyCrc32'], null, /bodyCrc32: null/],
  ];
  it.each(cases)('refuses %s, naming the field', (_what, path, value, field) => {
    const r = checkState(withValue(path, value), ID);
    expect(typeof r).toBe('string');
    expect(r).toMatch(field);
  });

  it.each([
    ['a line break', '250 ok\r\nX', '250 ok X'],
    [
      'a NUL (a remote server sent it; a version that kept it wrote it)',
      '451 4.7.1 greylisted\u0000 try later',
      '451 4.7.1 greylisted? try later',
    ],
    ['other control characters', '451\u0001 4.3.0\u007f', '451? 4.3.0?'],
  ])('repairs a lastReply with %s instead of quarantining the message', (_what, reply, want) => {
    const r = checkState(withValue([...L, 'lastReply'], reply), ID);
    if (typeof r === 'string') throw new Error(r);
    expect(r.legs[0]?.lastReply).toBe(want);
    expect(r.legs[0]?.state).toBe('deferred');
  });

  it('takes a body CRC-32 from 0 to 2^32 - 1, not 2^32, and a state without one (an earlier version wrote it)', () => {
    for (const crc of [0, 0x0badc0de, 0xffffffff]) {
      const s = { ...good(), bodyCrc32: crc };
      expect(checkState(s, ID)).toBe(s);
    }
    expect(checkState({ ...good(), bodyCrc32: 0xffffffff + 1 }, ID)).toBe('bodyCrc32: 4294967296');
    const old = good();
    expect('bodyCrc32' in old).toBe(false);
    expect(checkState(old, ID)).toBe(old);
  });

  it('returns a clean state as it is', () => {
    const s = good();
    expect(checkState(s, ID)).toBe(s);
  });

  it('reads a state with fields this version does not know (a later version wrote them) and keeps them', () => {
    let s = withValue(['futureTop'], { a: 1 });
    for (const path of [
      ['meta', 'futureMeta'],
      ['legs', 0, 'futureLegState'],
      ['legs', 0, 'leg', 'futureLeg'],
      ['legs', 0, 'leg', 'server', 'futureServer'],
    ]) {
      const root = s as Record<string | number, unknown>;
      let o = root;
      for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
      o[path[path.length - 1]!] = 'later';
      s = root;
    }
    // with a lastReply to repair, the copy it returns keeps them too
    const repaired = structuredClone(s) as { legs: { lastReply?: string }[] };
    repaired.legs[0]!.lastReply = '451 greylisted\0 later';
    for (const x of [s, repaired]) {
      const got = checkState(x, ID) as unknown as Record<string, unknown> & SpoolState;
      expect(typeof got).toBe('object');
      expect(got['futureTop']).toEqual({ a: 1 });
      expect(JSON.stringify(got)).toContain('"futureMeta":"later"');
      expect(JSON.stringify(got)).toContain('"futureLegState":"later"');
      expect(JSON.stringify(got)).toContain('"futureLeg":"later"');
      expect(JSON.stringify(got)).toContain('"futureServer":"later"');
    }
  });
});
