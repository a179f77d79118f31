// The preflight's acceptance step (AUTH, MAIL FROM + RCPT TO the probe address, the probe message) through
// createSmtpProbe, against real smtp-server peers: one requiring STARTTLS and AUTH, one refusing the probe RCPT with
// 550, one with a certificate that does not verify, one without STARTTLS.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../../test/support/smtp-peer.ts';
import { makeSelfSigned, type SelfSigned } from '../../test/support/tls.ts';
import { classifyReply, PROBE_HEADER, probeMessage } from './acceptance.ts';
import { createSmtpProbe, type ProbeTarget } from './probe.ts';
import {
  credentialsFromLookup,
  decideCondition,
  serverPasses,
  serverStatus,
  withAcceptance,
  type DomainView,
} from './status.ts';

describe('acceptance: pure parts', () => {
  it.each([
    [250, 'accepted'],
    [251, 'accepted'],
    [421, 'deferred'],
    [450, 'deferred'],
    [550, 'refused'],
    [554, 'refused'],
    [0, 'failed'],
    [354, 'failed'],
  ] as const)('RCPT reply %i -> %s', (code, result) => expect(classifyReply(code)).toBe(result));

  it('the probe message carries the marker header and CRLF line ends', () => {
    const m = probeMessage({
      id: 'mailroute-x1',
      from: '',
      to: 'alice@example.com',
      server: 'mx.zoho.example',
      date: new Date('2026-06-01T02:00:00Z'),
    });
    expect(m).toContain(`\r\n${PROBE_HEADER}: mailroute-x1\r\n`);
    expect(m).toContain('From: <mailroute-preflight@example.com>\r\n');
    expect(m).toContain('Date: Mon, 01 Jun 2026 02:00:00 +0000\r\n');
    expect(m.endsWith('\r\n')).toBe(true);
    expect(m.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
    expect(m.split('\r\n').some((l) => l.startsWith('.'))).toBe(false);
  });

  it('withAcceptance: only servers with probe.address get the step, with the credentials of their Secret', () => {
    const view: DomainView = {
      namespace: 'mail',
      name: 'example-com',
      generation: 1,
      previousServers: [],
      servers: [
        { name: 'a', host: 'a.example', port: 25, mx: false, tls: 'Required', authSecretRef: 'a-smtp' },
        {
          name: 'b',
          host: 'b.example',
          port: 25,
          mx: false,
          tls: 'Required',
          authSecretRef: 'b-smtp',
          probeAddress: 'x@example.com',
        },
        { name: 'c', host: 'c.example', port: 25, mx: false, tls: 'Required', probeAddress: 'y@example.com' },
      ],
    };
    const out = withAcceptance(view, (ns, name) =>
      name === 'b-smtp' ? { user: `${ns}-u`, pass: 'p' } : { error: 'nope' },
    );
    expect(out.servers.map((s) => [s.name, s.acceptance, s.credentials])).toEqual([
      ['a', undefined, undefined],
      ['b', { address: 'x@example.com', sender: '' }, { user: 'mail-u', pass: 'p' }],
      ['c', { address: 'y@example.com', sender: '' }, undefined],
    ]);
    expect(withAcceptance(view, undefined).servers[1]!.credentials).toEqual({
      error: 'Secret mail/b-smtp is not available to the preflight',
    });
  });
});

describe('acceptance: credentials and the condition', () => {
  it.each([
    [
      { state: 'ok', credentials: { username: 'u', password: 'p' } },
      { user: 'u', pass: 'p' },
    ],
    [
      { state: 'missing' },
      { error: 'Secret mail/s not found, or not labelled mailroute.io/smtp-auth: "true"' },
    ],
    [{ state: 'invalid', reason: 'no key password' }, { error: 'Secret mail/s: no key password' }],
    [
      { state: 'unknown' },
      { error: 'Secret mail/s is outside the namespaces the operator reads (--secret-namespaces)' },
    ],
  ] as const)('%j', (found, expected) => expect(credentialsFromLookup('mail', 's', found)).toEqual(expected));

  it.each([
    ['accepted', true, '1/1 servers reachable'],
    ['deferred', false, 'zoho: probe RCPT TO:<a@example.com> deferred (from 10.0.0.7): 451 later'],
    ['refused', false, 'zoho: probe RCPT TO:<a@example.com> refused (from 10.0.0.7): 451 later'],
    ['failed', false, 'zoho: probe RCPT TO:<a@example.com> failed (from 10.0.0.7): 451 later'],
  ] as const)('acceptance %s: passes %s', (result, passes, message) => {
    const s = serverStatus(
      'zoho',
      {
        reachable: true,
        tls: 'ok',
        message: 'EHLO ok',
        localAddress: '10.0.0.7',
        acceptance: { address: 'a@example.com', result, reply: '451 later' },
      },
      new Date(0),
    );
    expect(serverPasses(s)).toBe(passes);
    expect(decideCondition([s], 1, undefined, new Date(0)).message).toBe(message);
  });
});

describe('acceptance step against real SMTP servers', () => {
  let cert: SelfSigned;
  let secure: SmtpPeer; // STARTTLS + AUTH required (AUTH only over TLS)
  let refusing: SmtpPeer; // refuses the probe address with 550
  let badCert: SmtpPeer; // a certificate for another name, signed by nobody we trust
  let plain: SmtpPeer; // no STARTTLS
  const AUTH = { user: 'relay', pass: 's3cret' };

  beforeAll(async () => {
    cert = makeSelfSigned();
    secure = await startSmtpPeer('secure', {}, undefined, { tls: cert, auth: AUTH, authRequiresTls: true });
    refusing = await startSmtpPeer(
      'refusing',
      {
        rcpt: (a) =>
          a === 'probe@example.com'
            ? { code: 550, message: '5.7.1 relay 127.0.0.1 not allowlisted' }
            : undefined,
      },
      undefined,
      { tls: cert },
    );
    badCert = await startSmtpPeer('bad-cert', {}, undefined, { tls: makeSelfSigned('mx.elsewhere.example') });
    plain = await startSmtpPeer('plain', {}, undefined, { auth: AUTH });
  });
  afterAll(async () => {
    await Promise.all([secure, refusing, badCert, plain].map((p) => p?.close()));
  });

  const probe = (ca?: string) =>
    createSmtpProbe({ timeoutMs: 5000, heloName: 'relay.test', ...(ca ? { ca } : {}) });
  const target = (port: number, extra: Partial<ProbeTarget>): ProbeTarget => ({
    host: '127.0.0.1',
    port,
    mx: false,
    tls: 'Required',
    ...extra,
  });
  const accept = { address: 'probe@example.com', sender: '' };

  it('STARTTLS, AUTH and the probe RCPT accepted: the server saw it over TLS, as the relay user, and got no message', async () => {
    const rcpts = secure.rcpts.length;
    const r = await probe(cert.cert)(
      target(secure.port, { tls: 'RequiredVerify', credentials: AUTH, acceptance: accept }),
    );
    expect(r).toMatchObject({ reachable: true, tls: 'ok', localAddress: '127.0.0.1' });
    expect(r.auth).toEqual({ ok: true, message: 'AUTH as relay ok' });
    expect(r.acceptance).toMatchObject({ address: 'probe@example.com', result: 'accepted' });
    expect(r.acceptance?.reply).toMatch(/^250 /);
    expect(secure.rcpts.slice(rcpts)).toEqual([
      { address: 'probe@example.com', code: 250, secure: true, user: 'relay' },
    ]);
    expect(secure.messages).toHaveLength(0);
    expect(serverPasses(serverStatus('secure', r, new Date()))).toBe(true);
  });

  it('--send: a probe message with the marker header, from the null sender', async () => {
    const r = await probe(cert.cert)(
      target(secure.port, {
        credentials: AUTH,
        acceptance: { ...accept, send: { id: 'mailroute-test-1', date: new Date() } },
      }),
    );
    expect(r.acceptance).toMatchObject({ result: 'accepted' });
    expect(r.acceptance?.sent).toMatch(/^X-Mailroute-Probe: mailroute-test-1: 250 /);
    const got = secure.for('probe@example.com').at(-1)!;
    expect(got).toMatchObject({ mailFrom: '', secure: true, user: 'relay' });
    expect(got.raw.toString()).toContain('X-Mailroute-Probe: mailroute-test-1\r\n');
  });

  it('a wrong password: AUTH failed, and the probe address was never asked', async () => {
    const rcpts = secure.rcpts.length;
    const r = await probe()(
      target(secure.port, { credentials: { user: 'relay', pass: 'wrong' }, acceptance: accept }),
    );
    expect(r).toMatchObject({ reachable: true, tls: 'ok' });
    expect(r.auth?.ok).toBe(false);
    expect(r.auth?.message).toMatch(/^AUTH: .*535/);
    expect(r.acceptance).toMatchObject({ result: 'failed' });
    expect(r.acceptance?.reply).toMatch(/^AUTH: .*535/);
    expect(secure.rcpts.length).toBe(rcpts);
    expect(serverPasses(serverStatus('secure', r, new Date()))).toBe(false);
  });

  it('a server that refuses the probe RCPT with 550: refused, with its reply and the address to allowlist', async () => {
    const r = await probe()(target(refusing.port, { acceptance: accept }));
    expect(r).toMatchObject({ reachable: true, tls: 'ok', localAddress: '127.0.0.1' });
    expect(r.acceptance).toEqual({
      address: 'probe@example.com',
      result: 'refused',
      reply: '550 5.7.1 relay 127.0.0.1 not allowlisted',
    });
    const status = serverStatus('zoho', r, new Date());
    expect(serverPasses(status)).toBe(false);
    expect(status.acceptance).toEqual(r.acceptance);
  });

  it('a certificate that does not verify (RequiredVerify): TLS failed, and no acceptance step is tried', async () => {
    const r = await probe(cert.cert)(target(badCert.port, { tls: 'RequiredVerify', acceptance: accept }));
    expect(r).toMatchObject({ reachable: true, tls: 'failed' });
    expect(r.message).toMatch(/STARTTLS handshake: /);
    expect(r.acceptance).toEqual({
      address: 'probe@example.com',
      result: 'failed',
      reply: 'not tried: the server did not pass the connection and TLS checks',
    });
    expect(badCert.rcpts).toHaveLength(0);
  });

  it('credentials and tls Opportunistic without STARTTLS: no AUTH in plain text, as in delivery', async () => {
    const r = await probe()(
      target(plain.port, { tls: 'Opportunistic', credentials: AUTH, acceptance: accept }),
    );
    expect(r).toMatchObject({ reachable: true, tls: 'none' });
    expect(r.auth?.ok).toBe(false);
    expect(r.acceptance?.result).toBe('failed');
    expect(plain.auths).toEqual([]);
  });

  it('credentials that could not be resolved fail the step without connecting for it', async () => {
    const before = plain.stats.connections;
    const r = await probe()(
      target(plain.port, {
        tls: 'None',
        credentials: { error: 'Secret mail/x not found' },
        acceptance: accept,
      }),
    );
    expect(r.reachable).toBe(true);
    expect(r.auth).toEqual({ ok: false, message: 'credentials: Secret mail/x not found' });
    expect(r.acceptance).toMatchObject({ result: 'failed', reply: 'credentials: Secret mail/x not found' });
    expect(plain.rcpts).toEqual([]);
    // the reachability probe's connection only
    expect(plain.stats.connections).toBe(before + 1);
  });
});
