// STARTTLS next hops, through the real engine, a real spool and the relay's own SMTP client against smtp-server peers
// on 127.0.0.1 and ::1 that offer STARTTLS (a self-signed certificate), as odd-replies.test.ts does in plain text:
//   - a host that refuses the session after the first EHLO went well: a 421 to the second EHLO (the one over TLS), or a
//     421 instead of STARTTLS's "220 ready to start TLS". The same refusal as a 421 at the first EHLO, one or two
//     commands later: a failure of that host, so the second MX host takes the message at once and the first is
//     suspended (the next message goes straight to the second). A 421 to STARTTLS used to be the destination's answer
//     (an smtp 421 under Opportunistic, a local ETLS under Required): the leg waited for its next retry, on the same
//     host, while the second MX host was free.
//   - under Required, RequiredVerify and Opportunistic with credentials, a host that cannot give TLS (STARTTLS not
//     offered or refused with other than 421, EHLO refused, a failed handshake, a certificate that does not verify):
//     a failure of that host too, so the second MX host takes the message and the first is suspended; with no second
//     host the leg is deferred with the reason in its reply (never bounced). Opportunistic goes on in plain text.
//   - RFC 3207 §4.2: after STARTTLS the client forgets the first EHLO reply and uses the second's extensions. A server
//     that offers SMTPUTF8, 8BITMIME or a SIZE limit in plain text only (or over TLS only) is treated as its EHLO over
//     TLS says, on a fresh connection and on one reused from the pool.
// The peers are smtp-server instances whose EHLO (and STARTTLS) handler is wrapped per connection (hop() below), so
// that what they offer can differ between the plain-text and the TLS side of one session.
import { Readable } from 'node:stream';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Leg, ServerRoute, TlsMode } from '../../routing/model.ts';
import type { DeliveryOptions } from '../../relay/delivery/engine.ts';
import { envelope, localServer, twoMx } from '../support/delivery.ts';
import { startAttemptHarness, type AttemptHarness } from '../support/peer-engine.ts';
import { makeSelfSigned, type SelfSigned } from '../support/tls.ts';
import { waitFor } from '../support/wait.ts';

const MESSAGE =
  'From: Alice <alice@sender.example>\r\nTo: a@example.com\r\nSubject: starttls next hop\r\n' +
  'Message-ID: <starttls@sender.example>\r\n\r\nHello.\r\n';
/** A body with 8-bit bytes (received with BODY=8BITMIME). */
const MESSAGE_8BIT = Buffer.from(MESSAGE.replace('Hello.', 'Grüße.'), 'utf8');
const PEM = makeSelfSigned();
/** What the peers really take (smtp-server checks SIZE= against it); an EHLO may announce another limit. */
const REAL_SIZE = 10 * 1024 * 1024;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** What one EHLO reply offers (what is not given: as smtp-server offers it, SIZE 10 MiB, no AUTH). */
interface Offer {
  smtputf8?: boolean;
  eightBitMime?: boolean;
  /** The SIZE limit announced; 0: no SIZE. */
  size?: number;
}

interface HopOptions {
  /** The EHLO reply before STARTTLS, and the one over TLS. */
  plain?: Offer;
  tls?: Offer;
  /** 'ehlo-over-tls': the EHLO after the handshake gets REFUSAL; 'starttls': STARTTLS gets REFUSAL instead of 220. */
  refuse?: 'ehlo-over-tls' | 'starttls';
  /**
   * How it fails to give TLS: 'not-offered': no STARTTLS in its EHLO, and STARTTLS answered as an unknown command;
   * 'refused': STARTTLS answered NO_TLS; 'old-tls': STARTTLS's 220, then a handshake the client refuses (the server
   * speaks only TLS 1.0); 'closed': STARTTLS's 220, then the connection closed before the handshake; 'no-ehlo': the
   * first EHLO answered NO_EHLO (an old server: HELO only, so no STARTTLS).
   */
  starttls?: 'not-offered' | 'refused' | 'old-tls' | 'closed' | 'no-ehlo';
  /** Its key and certificate; default PEM (for localhost and 127.0.0.1, trusted by nobody). */
  pem?: SelfSigned;
}

const REFUSAL = '4.7.0 mx1.example.com Try again later, closing connection';
/** A STARTTLS refusal other than 421 (Postfix's when its TLS set-up is broken). */
const NO_TLS = '4.7.0 TLS not available due to local problem';
const NO_EHLO = '5.5.1 EHLO not implemented';

interface HopMessage {
  mailFrom: string;
  rcptTo: string[];
  secure: boolean;
  /** MAIL FROM carried SMTPUTF8. */
  smtputf8: boolean;
  /** MAIL FROM's BODY= as smtp-server read it ('8bitmime' or '7bit'). */
  bodyType: string;
  /** MAIL FROM's SIZE=, when it had one. */
  size?: string;
}

interface Hop {
  readonly port: number;
  readonly connections: number;
  /** Every EHLO received: 'plain' or 'tls', in order. */
  readonly ehlos: string[];
  readonly messages: HopMessage[];
}

/** smtp-server's connection object, as far as hop() reaches into it (smtp-server 3.x). */
interface Connection {
  session: SMTPServerSession;
  _socket: { end(): void };
  secure: boolean;
  send(code: number, text: string, context?: false): void;
  handler_EHLO(command: Buffer, done: () => void): void;
  handler_STARTTLS(command: Buffer, done: () => void): void;
}
type EhloOptions = Pick<SMTPServerOptions, 'hideSMTPUTF8' | 'hide8BITMIME' | 'size'>;

/**
 * An smtp-server peer on host:port (0: a free one) offering STARTTLS, whose EHLO replies offer what o.plain and o.tls
 * say (smtp-server computes them from its options, set around each EHLO of the connection), or that refuses the
 * session as o.refuse says. The messages it took, with how.
 */
async function hop(host: string, port: number, o: HopOptions = {}): Promise<Hop> {
  let connections = 0;
  const ehlos: string[] = [];
  const messages: HopMessage[] = [];
  const server: SMTPServer = new SMTPServer({
    key: (o.pem ?? PEM).key,
    cert: (o.pem ?? PEM).cert,
    disabledCommands: o.starttls === 'not-offered' ? ['AUTH', 'STARTTLS'] : ['AUTH'],
    // an old server: TLS 1.0 only (its ciphers at OpenSSL's level 0), which the client refuses
    ...(o.starttls === 'old-tls'
      ? { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }
      : {}),
    authOptional: true,
    logger: false,
    decodePunycode: false,
    size: REAL_SIZE,
    onConnect(session, cb) {
      connections++;
      const all = (server as unknown as { connections: Set<Connection> }).connections;
      const conn = [...all].find((c) => c.session === session);
      if (conn === undefined) return cb(new Error('hop: no connection for the session'));
      const proto = Object.getPrototypeOf(conn) as Connection;
      conn.handler_EHLO = (command, done) => {
        ehlos.push(conn.secure ? 'tls' : 'plain');
        if (conn.secure && o.refuse === 'ehlo-over-tls') {
          conn.send(421, REFUSAL, false); // smtp-server closes the connection after a 421
          done();
          return;
        }
        if (!conn.secure && o.starttls === 'no-ehlo') {
          conn.send(502, NO_EHLO, false);
          done();
          return;
        }
        const offer = (conn.secure ? o.tls : o.plain) ?? {};
        const options = server.options as EhloOptions;
        const saved: EhloOptions = { ...options };
        options.hideSMTPUTF8 = offer.smtputf8 === false;
        options.hide8BITMIME = offer.eightBitMime === false;
        options.size = offer.size ?? REAL_SIZE;
        try {
          proto.handler_EHLO.call(conn, command, done);
        } finally {
          Object.assign(options, saved);
        }
      };
      conn.handler_STARTTLS = (command, done) => {
        if (o.refuse === 'starttls') {
          conn.send(421, REFUSAL, false);
        } else if (o.starttls === 'refused') {
          conn.send(454, NO_TLS);
        } else if (o.starttls === 'closed') {
          conn.send(220, 'Ready to start TLS');
          conn._socket.end();
        } else {
          proto.handler_STARTTLS.call(conn, command, done);
          return;
        }
        done();
      };
      cb();
    },
    onData(stream, session, cb) {
      stream.resume();
      const from = session.envelope.mailFrom;
      const args = (from === false ? {} : from.args) as Record<string, unknown>;
      stream.on('end', () => {
        messages.push({
          mailFrom: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          secure: session.secure,
          smtputf8: (session.envelope as { smtpUtf8?: boolean }).smtpUtf8 === true,
          bodyType: (session.envelope as { bodyType?: string }).bodyType ?? '7bit',
          ...(typeof args.SIZE === 'string' ? { size: args.SIZE } : {}),
        });
        cb(null);
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  cleanups.push(async () => {
    const conns = (server as unknown as { connections: Set<{ _socket?: { destroy(): void } }> }).connections;
    conns.forEach((c) => c._socket?.destroy());
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const bound = (server.server.address() as { port: number }).port;
  return {
    port: bound,
    get connections() {
      return connections;
    },
    ehlos,
    messages,
  };
}

async function harness(overrides: Partial<DeliveryOptions> = {}): Promise<AttemptHarness> {
  return startAttemptHarness({
    name: 'starttls-next-hop',
    message: Buffer.from(MESSAGE),
    keep: (r) => r.endsWith('@example.com'),
    cleanups,
    overrides,
  });
}

const record = (recipient: string, server: Leg['server']): Leg => ({
  server,
  recipient,
  role: 'primary',
  bounces: 'Notify',
});

const drained = async (h: AttemptHarness): Promise<void> => {
  await waitFor(async () => (await h.spool.list()).length === 0 && h.engine.stats().messages === 0, {
    what: 'the spool to drain',
  });
};

/** The first `n` attempt lines, once there are that many. */
async function firstAttempts(h: AttemptHarness, n: number): Promise<AttemptHarness['attempts']> {
  await waitFor(() => h.attempts.length >= n, { what: `${n} delivery attempt(s)` });
  return h.attempts.slice(0, n);
}

/**
 * After a@example.com went through the second MX host: the first is suspended, so b@example.com goes to the second
 * without calling the first again, and no DSN is sent.
 */
async function nextGoesToTheSecond(
  h: AttemptHarness,
  mx: ServerRoute,
  delivered: Record<string, unknown>,
  first: Hop,
  second: Hop,
): Promise<void> {
  await h.accept([record('b@example.com', mx)]);
  expect(await firstAttempts(h, 2)).toEqual([delivered, { ...delivered, recipient: 'b@example.com' }]);
  await drained(h);
  expect(first.connections).toBe(1);
  expect(second.messages.map((m) => m.rcptTo)).toEqual([['a@example.com'], ['b@example.com']]);
  expect(h.senderBox.messages).toEqual([]);
}

describe('a host that refuses the session after STARTTLS is a failure of that host', () => {
  it.each([
    ['the EHLO over TLS answered 421', 'Opportunistic', 'ehlo-over-tls'],
    ['the EHLO over TLS answered 421', 'Required', 'ehlo-over-tls'],
    ['STARTTLS answered 421', 'Opportunistic', 'starttls'],
    ['STARTTLS answered 421', 'Required', 'starttls'],
  ] as const)(
    'with mx: true, the first MX host: %s (tls %s): delivered through the second at once, the first suspended',
    async (_, tls: TlsMode, refuse) => {
      // two MX hosts on one port, as MX hosts are: the first (preference 10) on ::1, the second on 127.0.0.1
      const second = await hop('127.0.0.1', 0);
      const first = await hop('::1', second.port, { refuse });
      const h = await harness({
        resolver: twoMx('::1'),
        // the suspension outlasts the test (it is the first retry step, 100 ms here, by default)
        destinationBackoffMs: 60_000,
      });
      const mx: ServerRoute = {
        ...localServer('mxdomain', second.port, 2),
        host: 'example.com',
        mx: true,
        tls,
      };
      await h.accept([record('a@example.com', mx)]);

      const delivered = {
        recipient: 'a@example.com',
        result: 'delivered',
        reply: expect.stringMatching(/^250 /) as unknown,
        host: `mx2.example.com:${second.port}`,
      };
      // one attempt: no deferral on the first host's 421
      expect(await firstAttempts(h, 1)).toEqual([delivered]);
      await drained(h);
      // the first host got as far as the refusal, once
      expect(first.connections).toBe(1);
      expect(first.ehlos).toEqual(refuse === 'starttls' ? ['plain'] : ['plain', 'tls']);
      expect(first.messages).toEqual([]);
      expect(second.messages.map((m) => [m.rcptTo, m.secure])).toEqual([[['a@example.com'], true]]);

      await nextGoesToTheSecond(h, mx, delivered, first, second);
    },
  );
});

describe('RFC 3207: the extensions are those of the EHLO over TLS, on a fresh and on a reused connection', () => {
  const UTF8 = 'josé@example.com';

  /**
   * Two messages, one after the other, to one STARTTLS hop (tls Required, one connection): both go on the same
   * connection, the second reusing it. Returns the hop and the harness, drained.
   */
  async function twoMessages(
    o: HopOptions,
    legs: (n: number, server: ServerRoute) => Leg[],
    body?: Buffer,
    body8bit = false,
  ): Promise<{ dest: Hop; h: AttemptHarness }> {
    const dest = await hop('127.0.0.1', 0, o);
    const h = await harness();
    const server: ServerRoute = { ...localServer('dest', dest.port, 1), tls: 'Required' };
    for (const n of [1, 2]) {
      const l = legs(n, server);
      const meta = envelope(
        l.map((leg) => ({ recipient: leg.recipient, legs: [leg] })),
        { body8bit },
      );
      const r = await h.spool.accept(meta, Readable.from([body ?? Buffer.from(MESSAGE)]));
      if (!r.ok) throw r.error;
      h.engine.notify(r.id);
      await waitFor(() => h.attempts.length >= l.length * n, { what: `the attempt of message ${n}` });
    }
    await drained(h);
    // one connection, set up once: EHLO in plain text, STARTTLS, EHLO over TLS
    expect(dest.connections).toBe(1);
    expect(dest.ehlos).toEqual(['plain', 'tls']);
    return { dest, h };
  }

  it('SMTPUTF8 offered in plain text only: a UTF-8 recipient is refused 553 5.6.7 and never sent, the other delivered', async () => {
    const { dest, h } = await twoMessages(
      { plain: { smtputf8: true }, tls: { smtputf8: false } },
      (n, server) => [record(`ascii${n}@example.com`, server), record(UTF8, server)],
    );
    const refused = {
      recipient: UTF8,
      result: 'failed',
      reply: `553 5.6.7 SMTPUTF8 is required for <${UTF8}>, but was not offered by host 127.0.0.1`,
      host: `127.0.0.1:${dest.port}`,
    };
    const ok = (r: string) => ({
      recipient: r,
      result: 'delivered',
      reply: expect.stringMatching(/^250 /) as unknown,
      host: `127.0.0.1:${dest.port}`,
    });
    expect(h.attempts).toEqual([ok('ascii1@example.com'), refused, ok('ascii2@example.com'), refused]);
    expect(dest.messages.map((m) => [m.rcptTo, m.smtputf8, m.secure])).toEqual([
      [['ascii1@example.com'], false, true],
      [['ascii2@example.com'], false, true],
    ]);
  });

  it('SMTPUTF8 offered over TLS only: a UTF-8 recipient is delivered, MAIL FROM with SMTPUTF8', async () => {
    const { dest, h } = await twoMessages(
      { plain: { smtputf8: false }, tls: { smtputf8: true } },
      (n, server) => [record(n === 1 ? UTF8 : 'zoë@example.com', server)],
    );
    expect(h.attempts.map((a) => `${a.recipient} ${a.result}`)).toEqual([
      `${UTF8} delivered`,
      'zoë@example.com delivered',
    ]);
    expect(dest.messages.map((m) => [m.rcptTo, m.smtputf8, m.secure])).toEqual([
      [[UTF8], true, true],
      [['zoë@example.com'], true, true],
    ]);
  });

  it('SIZE 100 in plain text only: the message (over 100 bytes) is delivered with SIZE=', async () => {
    const { dest, h } = await twoMessages({ plain: { size: 100 }, tls: {} }, (n, server) => [
      record(`a${n}@example.com`, server),
    ]);
    expect(h.attempts.map((a) => `${a.recipient} ${a.result}`)).toEqual([
      'a1@example.com delivered',
      'a2@example.com delivered',
    ]);
    expect(dest.messages.map((m) => [m.rcptTo, m.size])).toEqual([
      [['a1@example.com'], String(Buffer.byteLength(MESSAGE))],
      [['a2@example.com'], String(Buffer.byteLength(MESSAGE))],
    ]);
  });

  it('SIZE 100 over TLS only: the message is refused 552 5.3.4 for good and never sent', async () => {
    const { dest, h } = await twoMessages({ plain: {}, tls: { size: 100 } }, (n, server) => [
      record(`a${n}@example.com`, server),
    ]);
    const size = Buffer.byteLength(MESSAGE);
    expect(h.attempts.map((a) => `${a.recipient} ${a.result} ${a.reply}`)).toEqual(
      [1, 2].map(
        (n) =>
          `a${n}@example.com failed 552 5.3.4 message size ${size} exceeds size limit 100 of server 127.0.0.1`,
      ),
    );
    expect(dest.messages).toEqual([]);
  });

  it.each([
    ['in plain text only', { eightBitMime: true }, { eightBitMime: false }, '7bit'],
    ['over TLS only', { eightBitMime: false }, { eightBitMime: true }, '8bitmime'],
  ] as const)(
    '8BITMIME offered %s: BODY=8BITMIME as the EHLO over TLS says',
    async (_, plain, tls, bodyType) => {
      const { dest } = await twoMessages(
        { plain, tls },
        (n, server) => [record(`a${n}@example.com`, server)],
        MESSAGE_8BIT,
        true,
      );
      expect(dest.messages.map((m) => [m.rcptTo, m.bodyType])).toEqual([
        [['a1@example.com'], bodyType],
        [['a2@example.com'], bodyType],
      ]);
    },
  );
});

describe('a host that cannot give the TLS the mode requires is a failure of that host', () => {
  // Under Required and RequiredVerify (and Opportunistic with credentials and without allowPlaintextAuth, which requires
  // STARTTLS for AUTH): a host that does not offer STARTTLS, refuses it with something other than 421, fails the
  // handshake or (RequiredVerify) presents a certificate that does not verify for its name. As Postfix's smtp client
  // (smtp_proto.c: smtp_site_fail "TLS is required, but was not offered by host %s", "... host %s refused to start
  // TLS: %s", a failed handshake), the next MX host is tried at once; the host is suspended as a refusing greeting is
  // (the suspension is the destination's, and the destination's key holds the TLS mode: destination.ts). With no
  // other host, the leg is deferred with the reason in its reply, never bounced. A STARTTLS not offered or refused
  // was a local ETLS: deferred on the same host, the backup MX host never called, until the queue lifetime bounced the
  // mail; an EHLO refused with a 5xx (HELO only) bounced it at once. A failed handshake or certificate was already a
  // network failure (ESOCKET, failed over); its reply now says what failed, as the others do.
  /** Trusted (the process's default CA list) for localhost and 127.0.0.1: the second MX host is called localhost. */
  const TRUSTED = makeSelfSigned();
  let defaultCAs: string[] = [];
  beforeAll(() => {
    defaultCAs = getCACertificates('default');
    setDefaultCACertificates([...defaultCAs, TRUSTED.cert]);
  });
  afterAll(() => setDefaultCACertificates(defaultCAs));

  /** A TLS mode, or Opportunistic with credentials (no allowPlaintextAuth): STARTTLS required for AUTH. */
  type Mode = TlsMode | 'Opportunistic+credentials';
  const CREDENTIALS = { namespace: 'mail', name: 'relay' } as const;
  const route = (mode: Mode, port: number): ServerRoute => ({
    ...localServer('mxdomain', port, 2),
    host: 'example.com',
    mx: true,
    ...(mode === 'Opportunistic+credentials'
      ? { tls: 'Opportunistic', authSecretRef: CREDENTIALS }
      : { tls: mode }),
  });
  /** MX hosts by preference: mx1.example.com on ::1, then (when there is a second) localhost on 127.0.0.1. */
  const mxHosts = (two: boolean): Partial<DeliveryOptions> => ({
    resolver: twoMx('::1', two ? 'localhost' : null),
    credentials: () => Promise.resolve({ user: 'relay', pass: 's3cret' }),
  });
  const H1 = 'mx1\\.example\\.com\\[::1\\]';
  const NOT_OFFERED = new RegExp(`ETLS: TLS is required, but was not offered by host ${H1}: 500 `);
  const REFUSED = new RegExp(
    `ETLS: TLS is required, but host ${H1} refused to start TLS: 454 ${NO_TLS.replace(/\./g, '\\.')}$`,
  );
  const NO_EHLO_REPLY = new RegExp(
    `ETLS: TLS is required, but was not offered by host ${H1} \\(EHLO refused\\): 502 5\\.5\\.1 EHLO not implemented$`,
  );
  const HANDSHAKE = new RegExp(`ETLS: TLS is required, but the TLS handshake with host ${H1} failed: `);
  const UNVERIFIED = (why: string) =>
    new RegExp(`ETLS: TLS is required, but the certificate of host ${H1} did not verify: .*${why}`);

  const CASES: [string, Mode, HopOptions, RegExp][] = [
    ['does not offer STARTTLS', 'Required', { starttls: 'not-offered' }, NOT_OFFERED],
    ['refuses STARTTLS with 454', 'Required', { starttls: 'refused' }, REFUSED],
    ['refuses EHLO with 502 (HELO only)', 'Required', { starttls: 'no-ehlo' }, NO_EHLO_REPLY],
    ['fails the handshake (TLS 1.0 only)', 'Required', { starttls: 'old-tls' }, HANDSHAKE],
    ['closes the connection after the 220 to STARTTLS', 'Required', { starttls: 'closed' }, HANDSHAKE],
    ['does not offer STARTTLS', 'RequiredVerify', { starttls: 'not-offered' }, NOT_OFFERED],
    ['refuses STARTTLS with 454', 'RequiredVerify', { starttls: 'refused' }, REFUSED],
    ['has a certificate nobody trusts', 'RequiredVerify', {}, UNVERIFIED('self-signed certificate')],
    [
      'has a trusted certificate for another name',
      'RequiredVerify',
      { pem: TRUSTED },
      UNVERIFIED("Host: mx1\\.example\\.com\\. is not in the cert's altnames"),
    ],
    ['does not offer STARTTLS', 'Opportunistic+credentials', { starttls: 'not-offered' }, NOT_OFFERED],
    ['refuses STARTTLS with 454', 'Opportunistic+credentials', { starttls: 'refused' }, REFUSED],
    ['fails the handshake (TLS 1.0 only)', 'Opportunistic+credentials', { starttls: 'old-tls' }, HANDSHAKE],
  ];

  it.each(CASES)(
    'the first MX host %s (tls %s): delivered through the second at once, the first suspended',
    async (_, mode, o) => {
      const second = await hop('127.0.0.1', 0, { pem: TRUSTED });
      const first = await hop('::1', second.port, o);
      // the suspension outlasts the test (it is the first retry step, 100 ms here, by default)
      const h = await harness({ ...mxHosts(true), destinationBackoffMs: 60_000 });
      const mx = route(mode, second.port);
      await h.accept([record('a@example.com', mx)]);

      const delivered = {
        recipient: 'a@example.com',
        result: 'delivered',
        reply: expect.stringMatching(/^250 /) as unknown,
        host: `localhost:${second.port}`,
      };
      // one attempt: no deferral on the first host's failure, the second host called in it
      expect([await firstAttempts(h, 1), second.connections]).toEqual([[delivered], 1]);
      await drained(h);
      // one session with the first host (never plain text), nothing sent to it
      expect(first.connections).toBe(1);
      expect(first.ehlos).toEqual(['plain']);
      expect(first.messages).toEqual([]);
      expect(second.messages.map((m) => [m.rcptTo, m.secure])).toEqual([[['a@example.com'], true]]);

      await nextGoesToTheSecond(h, mx, delivered, first, second);
    },
  );

  it.each(CASES)(
    'the only MX host %s (tls %s): deferred with the reason in the reply, never bounced',
    async (_, mode, o, reason) => {
      const only = await hop('::1', 0, o);
      const h = await harness(mxHosts(false));
      await h.accept([record('a@example.com', route(mode, only.port))]);

      const [first] = await firstAttempts(h, 1);
      expect(first).toEqual({
        recipient: 'a@example.com',
        result: 'deferred',
        reply: expect.stringMatching(reason) as unknown,
        host: `mx1.example.com:${only.port}`,
      });
      // its retry (100 ms later; within the suspension, it says so, with the reason)
      const [, retry] = await firstAttempts(h, 2);
      expect(retry).toMatchObject({ result: 'deferred', reply: expect.stringMatching(reason) as unknown });
      expect(only.messages).toEqual([]);
      // in the spool: deferred (a failed leg would have made a DSN)
      const [id] = await h.spool.list();
      const loaded = id === undefined ? undefined : await h.spool.load(id);
      expect(loaded?.ok === true && loaded.state.legs.map((l) => [l.state, l.lastReply])).toEqual([
        ['deferred', expect.stringMatching(reason)],
      ]);
      expect(h.senderBox.messages).toEqual([]);
    },
  );

  it('the suspension is the destination’s: a route with another TLS mode to the same MX hosts still uses the first', async () => {
    const second = await hop('127.0.0.1', 0, { pem: TRUSTED });
    const first = await hop('::1', second.port, { starttls: 'not-offered' });
    const h = await harness({ ...mxHosts(true), destinationBackoffMs: 60_000 });
    await h.accept([record('a@example.com', route('Required', second.port))]);
    await waitFor(() => second.messages.length === 1, { what: 'the Required message at the second host' });
    // the same MX hosts under Opportunistic (another destination: its key holds the TLS mode): the first host is not
    // suspended for it, and takes the message in plain text
    await h.accept([record('b@example.com', route('Opportunistic', second.port))]);
    await drained(h);
    expect(h.attempts.map((a) => `${a.recipient} ${a.result} ${a.host}`)).toEqual([
      `a@example.com delivered localhost:${second.port}`,
      `b@example.com delivered mx1.example.com:${second.port}`,
    ]);
    expect(first.connections).toBe(2);
    expect(first.messages.map((m) => [m.rcptTo, m.secure])).toEqual([[['b@example.com'], false]]);
    expect(second.messages.map((m) => [m.rcptTo, m.secure])).toEqual([[['a@example.com'], true]]);
  });

  it.each([
    ['does not offer STARTTLS', { starttls: 'not-offered' }, 1],
    ['refuses STARTTLS with 454', { starttls: 'refused' }, 1],
    ['refuses EHLO with 502 (HELO only)', { starttls: 'no-ehlo' }, 1],
    ['fails the handshake (TLS 1.0 only)', { starttls: 'old-tls' }, 2],
  ] as const)(
    'Opportunistic is unchanged: the first MX host %s: delivered through it in plain text',
    async (_, o, connections) => {
      const second = await hop('127.0.0.1', 0, { pem: TRUSTED });
      const first = await hop('::1', second.port, o);
      const h = await harness(mxHosts(true));
      await h.accept([record('a@example.com', route('Opportunistic', second.port))]);
      expect(await firstAttempts(h, 1)).toEqual([
        {
          recipient: 'a@example.com',
          result: 'delivered',
          reply: expect.stringMatching(/^250 /) as unknown,
          host: `mx1.example.com:${second.port}`,
        },
      ]);
      await drained(h);
      expect(first.connections).toBe(connections);
      expect(first.messages.map((m) => [m.rcptTo, m.secure])).toEqual([[['a@example.com'], false]]);
      expect(second.messages).toEqual([]);
    },
  );
});
