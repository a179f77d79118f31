import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ServerRoute } from '../../routing/model.ts';
import { poolKey, readSource, repliesFromNodemailer, resolveTargets, type MxResolver } from './transport.ts';

describe('readSource', () => {
  const drain = async (r: Readable): Promise<Buffer> => {
    const parts: Buffer[] = [];
    for await (const c of r) parts.push(c as Buffer);
    return Buffer.concat(parts);
  };
  it('passes bytes in memory through, and reads exactly the first size bytes of a file', async () => {
    const b = Buffer.from('in memory');
    expect((await drain(readSource(b))).toString()).toBe('in memory');
    const dir = await mkdtemp(join(tmpdir(), 'mailroute-raw-'));
    try {
      const path = join(dir, 'm.msg');
      await writeFile(path, 'BODY BYTES|{"state":"behind the body"}');
      expect((await drain(readSource({ path, size: 10 }))).toString()).toBe('BODY BYTES');
      expect((await drain(readSource({ path, size: 0 }))).length).toBe(0);
      // each call is a fresh stream (a message nodemailer's pool requeues is read again from the start)
      expect((await drain(readSource({ path, size: 4 }))).toString()).toBe('BODY');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const rcpts = ['a@x.example', 'b@x.example'];

// The mapping of nodemailer's results, for the client still built on nodemailer (nodemailerTransportFactory, the
// benchmark's floor). The delivery path's own client maps its outcomes in smtp-out/replies.ts, whose test checks it
// against this one.
describe('repliesFromNodemailer', () => {
  it.each([
    [
      'all accepted',
      null,
      { accepted: rcpts, rejected: [], response: '250 2.0.0 queued as X' },
      { 'a@x.example': [250, 'smtp'], 'b@x.example': [250, 'smtp'] },
    ],
    [
      'one refused at RCPT, other accepted',
      null,
      {
        accepted: ['a@x.example'],
        rejected: ['b@x.example'],
        rejectedErrors: [{ recipient: 'b@x.example', responseCode: 550, response: '550 5.1.1 unknown' }],
        response: '250 ok',
      },
      { 'a@x.example': [250, 'smtp'], 'b@x.example': [550, 'smtp'] },
    ],
    [
      'all refused at RCPT (EENVELOPE with rejectedErrors), mixed classes',
      {
        code: 'EENVELOPE',
        responseCode: 450,
        response: '450 busy',
        rejectedErrors: [
          { recipient: 'a@x.example', responseCode: 450, response: '450 4.2.0 busy' },
          { recipient: 'B@X.example', responseCode: 550, response: '550 5.1.1 unknown' },
        ],
      },
      undefined,
      { 'a@x.example': [450, 'smtp'], 'b@x.example': [550, 'smtp'] },
    ],
    [
      'DATA refused',
      { code: 'EMESSAGE', responseCode: 554, response: '554 5.6.0 spam' },
      undefined,
      { 'a@x.example': [554, 'smtp'], 'b@x.example': [554, 'smtp'] },
    ],
    [
      'connection refused',
      { code: 'ESOCKET', message: 'connect ECONNREFUSED 127.0.0.1:1' },
      undefined,
      { 'a@x.example': [0, 'network'], 'b@x.example': [0, 'network'] },
    ],
    [
      'auth failure is retried, never bounced',
      { code: 'EAUTH', responseCode: 535, response: '535 5.7.8 bad credentials', message: 'Invalid login' },
      undefined,
      { 'a@x.example': [0, 'local'], 'b@x.example': [0, 'local'] },
    ],
  ] as const)('%s', (_name, err, info, want) => {
    const out = repliesFromNodemailer([...rcpts], err as never, info as never);
    const got = Object.fromEntries(
      [...out.entries()].map(([r, reply]) => [r, [reply.kind === 'smtp' ? reply.code : 0, reply.kind]]),
    );
    expect(got).toEqual(want);
  });
});

describe('resolveTargets', () => {
  const server: ServerRoute = {
    name: 'm',
    host: 'mx.example',
    port: 25,
    mx: true,
    tls: 'None',
    maxConnections: 1,
  };
  const resolver = (r: () => Promise<{ exchange: string; priority: number }[]>): MxResolver => ({
    resolveMx: r,
  });
  const dnsError = (code: string) => () => Promise.reject(Object.assign(new Error(code), { code }));
  it.each([
    [
      'sorted by preference, trailing dot dropped, duplicates removed',
      resolver(() =>
        Promise.resolve([
          { exchange: 'b.example.', priority: 20 },
          { exchange: 'a.example', priority: 10 },
          { exchange: 'b.example', priority: 30 },
        ]),
      ),
      { ok: true, hosts: ['a.example', 'b.example'] },
    ],
    ['no MX record: the host itself', resolver(dnsError('ENODATA')), { ok: true, hosts: ['mx.example'] }],
    ['SERVFAIL is temporary', resolver(dnsError('ESERVFAIL')), { ok: false, reply: { kind: 'network' } }],
    [
      'null MX refuses mail',
      resolver(() => Promise.resolve([{ exchange: '', priority: 0 }])),
      { ok: false, reply: { kind: 'smtp', code: 556 } },
    ],
  ] as const)('%s', async (_name, r, want) => {
    expect(await resolveTargets(server, r)).toMatchObject(want);
  });
  it('does not look up MX when mx is false', async () => {
    const r = resolver(() => Promise.reject(new Error('must not be called')));
    expect(await resolveTargets({ ...server, mx: false }, r)).toEqual({ ok: true, hosts: ['mx.example'] });
  });
});

describe('poolKey', () => {
  it('separates TLS modes and credentials, never contains a password', () => {
    const a = poolKey({ host: 'h', port: 25, tls: 'None' });
    const b = poolKey({ host: 'h', port: 25, tls: 'Required' });
    const c = poolKey({ host: 'h', port: 25, tls: 'None', authKey: 'ns/secret' });
    expect(new Set([a, b, c]).size).toBe(3);
  });
});

describe('poolKey', () => {
  it('the pool key tells allowPlaintextAuth apart', () => {
    const t = { host: 'h', port: 25, tls: 'Opportunistic', authKey: 'ns/s#1' } as const;
    expect(poolKey(t)).not.toBe(poolKey({ ...t, allowPlaintextAuth: true }));
  });
});
