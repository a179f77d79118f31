// TLS modes and SMTP AUTH on outbound legs, against smtp-server peers that offer STARTTLS (self-signed certificate
// made with openssl) or require AUTH.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDelivery, type DeliveryEngine } from '../../relay/delivery/engine.ts';
import { openSpool } from '../../relay/spool/spool.ts';
import type { Spool } from '../../relay/spool/types.ts';
import type { ServerRoute, TlsMode } from '../../routing/model.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { deliveryOptions, envelope } from '../support/delivery.ts';
import { makeSelfSigned } from '../support/tls.ts';
import { waitFor } from '../support/wait.ts';

const logger = pino({ level: 'silent' });
let dir: string;
let tlsPeer: SmtpPeer;
let plainPeer: SmtpPeer;
let authPeer: SmtpPeer;
let implicitPeer: SmtpPeer;
let tlsAuthPeer: SmtpPeer;
let spool: Spool;
let engine: DeliveryEngine;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailroute-tls-'));
  tlsPeer = await startSmtpPeer('tls', {}, undefined, { tls: makeSelfSigned() });
  plainPeer = await startSmtpPeer('plain');
  authPeer = await startSmtpPeer('auth', {}, undefined, { auth: { user: 'relay', pass: 's3cret' } });
  implicitPeer = await startSmtpPeer('implicit', {}, undefined, { tls: makeSelfSigned(), implicitTls: true });
  tlsAuthPeer = await startSmtpPeer('tls-auth', {}, undefined, {
    tls: makeSelfSigned(),
    auth: { user: 'relay', pass: 's3cret' },
  });
  spool = await openSpool({ dir: join(dir, 'spool'), logger });
  engine = startDelivery(
    deliveryOptions(spool, {
      logger,
      retryScheduleMs: [60_000],
      credentials: (ref) =>
        Promise.resolve(
          ref.name === 'good'
            ? { user: 'relay', pass: 's3cret' }
            : ref.name === 'wrong'
              ? { user: 'relay', pass: 'nope' }
              : undefined,
        ),
      timeouts: { connectionMs: 3000, greetingMs: 3000, socketMs: 5000 },
    }),
  );
});

afterAll(async () => {
  await engine.stop();
  await Promise.all([
    tlsPeer.close(),
    plainPeer.close(),
    authPeer.close(),
    implicitPeer.close(),
    tlsAuthPeer.close(),
  ]);
  await rm(dir, { recursive: true, force: true });
});

async function send(rcpt: string, server: Partial<ServerRoute> & { port: number }): Promise<string> {
  const s: ServerRoute = {
    name: 'dest',
    host: '127.0.0.1',
    mx: false,
    tls: 'None',
    maxConnections: 1,
    ...server,
  };
  const r = await spool.accept(
    envelope([
      { recipient: rcpt, legs: [{ server: s, recipient: rcpt, role: 'primary', bounces: 'Notify' }] },
    ]),
    Readable.from(['Subject: tls\r\n\r\nbody\r\n']),
  );
  if (!r.ok) throw r.error;
  engine.notify(r.id);
  return r.id;
}

async function legAfterFirstAttempt(id: string): Promise<{ state: string; lastReply?: string }> {
  return waitFor(
    async () => {
      const s = await spool.load(id);
      if (!s.ok) return { state: 'removed' };
      const leg = s.state.legs[0];
      return leg && leg.attempts > 0
        ? { state: leg.state, ...(leg.lastReply ? { lastReply: leg.lastReply } : {}) }
        : undefined;
    },
    { what: `first attempt of ${id}` },
  );
}

/** Sends to `rcpt` through `server`: after the first attempt the leg is deferred and `peer` has nothing for it. */
async function expectDeferred(
  rcpt: string,
  peer: SmtpPeer,
  server: Partial<ServerRoute> & { port: number },
): Promise<{ state: string; lastReply?: string }> {
  const leg = await legAfterFirstAttempt(await send(rcpt, server));
  expect(leg.state).toBe('deferred');
  expect(peer.for(rcpt)).toEqual([]);
  return leg;
}

describe('outbound TLS modes', () => {
  it.each([
    ['Opportunistic', 'over TLS when offered (self-signed accepted)', true],
    ['Required', 'over TLS (self-signed accepted)', true],
    ['None', 'in plain text although STARTTLS is offered', false],
  ] as const)('%s to a STARTTLS server delivers %s', async (tls: TlsMode, _what, secure) => {
    const rcpt = `${tls.toLowerCase()}@example.com`;
    await send(rcpt, { port: tlsPeer.port, tls });
    const m = await waitFor(() => tlsPeer.for(rcpt)[0], { what: `delivery with ${tls}` });
    expect(m.secure).toBe(secure);
  });

  it('Opportunistic to a server without STARTTLS delivers in plain text', async () => {
    await send('opp-plain@example.com', { port: plainPeer.port, tls: 'Opportunistic' });
    const m = await waitFor(() => plainPeer.for('opp-plain@example.com')[0]);
    expect(m.secure).toBe(false);
  });

  it('Required to a server without STARTTLS never sends in plain text: the leg is deferred', async () => {
    await expectDeferred('req-plain@example.com', plainPeer, { port: plainPeer.port, tls: 'Required' });
  });

  it('RequiredVerify refuses a certificate it cannot verify: the leg is deferred', async () => {
    const leg = await expectDeferred('verify@example.com', tlsPeer, {
      port: tlsPeer.port,
      tls: 'RequiredVerify',
      host: 'localhost',
    });
    expect(leg.lastReply).toMatch(/certificate/i);
  });
});

describe('outbound implicit TLS (tls: Implicit, port 465 style)', () => {
  it('delivers over TLS from the first byte to an implicit-TLS server', async () => {
    await send('implicit@example.com', { port: implicitPeer.port, tls: 'Implicit' });
    const m = await waitFor(() => implicitPeer.for('implicit@example.com')[0], {
      what: 'implicit TLS delivery',
    });
    expect(m.secure).toBe(true);
  });

  it('never falls back to plain text: Implicit to a STARTTLS-port server is deferred', async () => {
    await expectDeferred('implicit-plain@example.com', plainPeer, { port: plainPeer.port, tls: 'Implicit' });
  });
});

describe('outbound AUTH', () => {
  it('authenticates with the credentials of authSecretRef (in plain text only with allowPlaintextAuth)', async () => {
    await send('auth-good@example.com', {
      port: authPeer.port,
      allowPlaintextAuth: true,
      authSecretRef: { namespace: 'mail', name: 'good' },
    });
    const m = await waitFor(() => authPeer.for('auth-good@example.com')[0]);
    expect(m.user).toBe('relay');
  });

  it.each([
    ['missing credentials', 'absent', /credentials mail\/absent for server dest not available/],
    ['wrong credentials (535)', 'wrong', /EAUTH/],
  ])('%s defer the leg, never bounce it', async (_name, secret, reply) => {
    const rcpt = `auth-${secret}@example.com`;
    const id = await send(rcpt, {
      port: authPeer.port,
      allowPlaintextAuth: true,
      authSecretRef: { namespace: 'mail', name: secret },
    });
    const leg = await legAfterFirstAttempt(id);
    expect(leg.state).toBe('deferred');
    expect(leg.lastReply).toMatch(reply);
    expect(authPeer.for(rcpt)).toEqual([]);
  });
});

describe('AUTH only over TLS unless allowPlaintextAuth', () => {
  const good = { namespace: 'mail', name: 'good' } as const;
  const sentPassword = (peer: SmtpPeer): boolean => peer.auths.some((a) => a.password === 's3cret');

  it('tls None + authSecretRef: deferred before connecting, the password is never sent', async () => {
    const before = authPeer.stats.connections;
    const auths = authPeer.auths.length;
    const id = await send('plain-none@example.com', {
      port: authPeer.port,
      tls: 'None',
      authSecretRef: good,
    });
    const leg = await legAfterFirstAttempt(id);
    expect(leg.state).toBe('deferred');
    expect(leg.lastReply).toMatch(/AUTH without TLS refused \(tls None\).*allowPlaintextAuth: true/);
    expect(authPeer.stats.connections).toBe(before);
    expect(authPeer.auths.length).toBe(auths);
  });

  it('tls Opportunistic + authSecretRef to a server without STARTTLS: no AUTH, deferred (retried)', async () => {
    const auths = authPeer.auths.length;
    const leg = await expectDeferred('plain-opp@example.com', authPeer, {
      port: authPeer.port,
      tls: 'Opportunistic',
      authSecretRef: good,
    });
    expect(leg.lastReply).toMatch(/ETLS/);
    expect(authPeer.auths.length).toBe(auths);
  });

  it('tls Opportunistic + authSecretRef to a server with STARTTLS: AUTH over TLS', async () => {
    await send('tls-opp@example.com', { port: tlsAuthPeer.port, tls: 'Opportunistic', authSecretRef: good });
    const m = await waitFor(() => tlsAuthPeer.for('tls-opp@example.com')[0], { what: 'delivery over TLS' });
    expect(m).toMatchObject({ secure: true, user: 'relay' });
    expect(tlsAuthPeer.auths.every((a) => a.secure)).toBe(true);
  });

  it('tls Opportunistic + allowPlaintextAuth: AUTH in plain text to a server without STARTTLS', async () => {
    await send('plain-allowed@example.com', {
      port: authPeer.port,
      tls: 'Opportunistic',
      allowPlaintextAuth: true,
      authSecretRef: good,
    });
    const m = await waitFor(() => authPeer.for('plain-allowed@example.com')[0], { what: 'delivery' });
    expect(m).toMatchObject({ secure: false, user: 'relay' });
    expect(sentPassword(authPeer)).toBe(true);
  });
});
