import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TlsMode } from '../../routing/model.ts';
import { startSmtpPeer, type SmtpPeer } from '../../test/support/smtp-peer.ts';
import { makeSelfSigned, type SelfSigned } from '../../test/support/tls.ts';
import { createSmtpProbe, tlsPlan, type ProbeTarget, type TlsReport } from './probe.ts';
import {
  clusterDefaultDeny,
  destinationPolicy,
  grantFromTexts,
  parseCidr,
  type Cidr,
} from '../../routing/destinations.ts';
import { ehloKeywords, parseReply } from './smtp-reply.ts';

describe('parseReply', () => {
  it.each([
    ['220 ready\r\n', 'complete', 220, ['ready'], ''],
    ['250-a\r\n250-STARTTLS\r\n250 SIZE 10\r\nrest', 'complete', 250, ['a', 'STARTTLS', 'SIZE 10'], 'rest'],
    ['250-a\r\n250-b', 'partial', 0, [], ''],
    ['220\r\n', 'complete', 220, [''], ''],
    ['hello\r\n', 'invalid', 0, [], ''],
    ['250-a\r\n251 b\r\n', 'invalid', 0, [], ''],
  ] as const)('%j -> %s', (input, kind, code, lines, rest) => {
    const r = parseReply(input);
    expect(r.kind).toBe(kind);
    if (r.kind === 'complete') {
      expect(r.reply.code).toBe(code);
      expect(r.reply.lines).toEqual(lines);
      expect(r.rest).toBe(rest);
    }
  });

  it('reads EHLO keywords case-insensitively, skipping the greeting line', () => {
    const r = parseReply('250-mx.example hello\r\n250-starttls\r\n250 8BITMIME\r\n');
    expect(r.kind).toBe('complete');
    if (r.kind === 'complete') expect([...ehloKeywords(r.reply)].sort()).toEqual(['8BITMIME', 'STARTTLS']);
  });
});

describe('tlsPlan', () => {
  it.each([
    ['None', true, 'report-none'],
    ['None', false, 'report-none'],
    ['Opportunistic', true, 'report-offered'],
    ['Opportunistic', false, 'report-none'],
    ['Required', true, 'handshake'],
    ['Required', false, 'fail-not-offered'],
    ['RequiredVerify', true, 'handshake'],
    ['RequiredVerify', false, 'fail-not-offered'],
    ['Implicit', true, 'report-implicit'],
    ['Implicit', false, 'report-implicit'],
  ] as const)('%s offered=%s -> %s', (mode, offered, plan) => {
    expect(tlsPlan(mode, offered)).toBe(plan);
  });
});

describe('createSmtpProbe against real SMTP servers', () => {
  let plain: SmtpPeer;
  let cert: SelfSigned;
  let tlsPeer: SmtpPeer;
  let implicitPeer: SmtpPeer;
  let raw: Server;
  const rawSockets = new Set<Socket>();
  let rawPort = 0;
  let rawGreeting = '554 5.7.1 no service here\r\n';

  beforeAll(async () => {
    plain = await startSmtpPeer('plain');
    cert = makeSelfSigned();
    tlsPeer = await startSmtpPeer('tls', {}, undefined, { tls: cert });
    implicitPeer = await startSmtpPeer('implicit', {}, undefined, { tls: cert, implicitTls: true });
    raw = createServer((s) => {
      rawSockets.add(s);
      s.on('close', () => rawSockets.delete(s));
      s.on('error', () => undefined);
      if (rawGreeting !== '') s.end(rawGreeting);
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    const a = raw.address();
    rawPort = typeof a === 'object' && a !== null ? a.port : 0;
  });
  afterAll(async () => {
    await plain.close();
    await tlsPeer.close();
    await implicitPeer.close();
    rawSockets.forEach((s) => s.destroy());
    await new Promise<void>((r) => raw.close(() => r()));
  });

  const target = (port: number, tls: TlsMode): ProbeTarget => ({ host: '127.0.0.1', port, mx: false, tls });

  it('reports a plain server up, and down after it stops', async () => {
    const probe = createSmtpProbe({ timeoutMs: 3000 });
    const up = await probe(target(plain.port, 'Opportunistic'));
    expect(up).toMatchObject({ reachable: true, tls: 'none' });
    expect(up.message).toMatch(/^220 .*EHLO ok; STARTTLS not offered/);
    await plain.down();
    try {
      const down = await probe(target(plain.port, 'Opportunistic'));
      expect(down).toMatchObject({ reachable: false, tls: 'none' });
      expect(down.message).toMatch(new RegExp(`^connect 127\\.0\\.0\\.1:${plain.port}: ECONNREFUSED`));
    } finally {
      await plain.up();
    }
  });

  it.each<[TlsMode, boolean, TlsReport, RegExp]>([
    ['None', true, 'none', /STARTTLS offered, not used/],
    ['Opportunistic', true, 'offered', /STARTTLS offered$/],
    ['Required', true, 'ok', /STARTTLS ok \(TLSv1\.[23], certificate not verified\)/],
    ['RequiredVerify', true, 'failed', /STARTTLS handshake: .*self[- ]signed certificate/],
    ['Required', false, 'failed', /STARTTLS: not offered, but tls is Required/],
  ])('self-signed STARTTLS peer, mode %s (starttls on: %s) -> tls %s', async (mode, onPeer, report, msg) => {
    const probe = createSmtpProbe({ timeoutMs: 3000 });
    const port = onPeer ? tlsPeer.port : plain.port;
    const r = await probe(target(port, mode));
    expect(r.tls).toBe(report);
    expect(r.reachable).toBe(true);
    expect(r.message).toMatch(msg);
  });

  it('tls: Implicit does the TLS handshake before the greeting (port 465 style); a STARTTLS port fails it', async () => {
    const probe = createSmtpProbe({ timeoutMs: 3000 });
    const ok = await probe(target(implicitPeer.port, 'Implicit'));
    expect(ok).toMatchObject({ reachable: true, tls: 'ok' });
    expect(ok.message).toMatch(/^220 .*EHLO ok; implicit TLS ok \(TLSv1\.[23], certificate not verified\)/);
    // a plain-text server does not answer a ClientHello with a handshake
    const plainPort = await probe(target(plain.port, 'Implicit'));
    expect(plainPort).toMatchObject({ reachable: true, tls: 'failed' });
    expect(plainPort.message).toMatch(/^TLS handshake with 127\.0\.0\.1:\d+ \(tls: Implicit\): /);
    // and the implicit-TLS port is not an SMTP server for a plain-text client
    const asPlain = await createSmtpProbe({ timeoutMs: 300 })(target(implicitPeer.port, 'Opportunistic'));
    expect(asPlain.tls).not.toBe('ok');
  });

  it('verifies the certificate for RequiredVerify when its CA is trusted', async () => {
    const probe = createSmtpProbe({ timeoutMs: 3000, ca: cert.cert });
    const r = await probe(target(tlsPeer.port, 'RequiredVerify'));
    expect(r).toMatchObject({ reachable: true, tls: 'ok' });
    expect(r.message).toMatch(/certificate verified/);
  });

  it('names the greeting when the server refuses service', async () => {
    rawGreeting = '554 5.7.1 no service here\r\n';
    const r = await createSmtpProbe({ timeoutMs: 3000 })(target(rawPort, 'None'));
    expect(r).toEqual({
      reachable: false,
      tls: 'none',
      message: `greeting from 127.0.0.1:${rawPort}: 554 5.7.1 no service here`,
      // connected: the address it left from is known (what the server would have to allowlist)
      localAddress: '127.0.0.1',
    });
  });

  it('does not echo what a non-SMTP service sends', async () => {
    rawGreeting = 'SSH-2.0-OpenSSH_9.2p1 Debian\r\n';
    const r = await createSmtpProbe({ timeoutMs: 3000 })(target(rawPort, 'None'));
    expect(r.reachable).toBe(false);
    expect(r.message).toMatch(/not an SMTP reply/);
    expect(r.message).not.toContain('OpenSSH');
    rawGreeting = '554 5.7.1 no service here\r\n';
  });

  it('times out on a server that never greets', async () => {
    rawGreeting = '';
    const r = await createSmtpProbe({ timeoutMs: 300 })(target(rawPort, 'None'));
    expect(r).toMatchObject({ reachable: false, message: 'timed out after 300 ms during greeting' });
    rawGreeting = '554 5.7.1 no service here\r\n';
  });

  it('probes the best MX when mx is true, and reports a failing lookup', async () => {
    const probe = createSmtpProbe({
      timeoutMs: 3000,
      resolveMx: (host) =>
        host === 'example.test'
          ? Promise.resolve([
              { exchange: '127.0.0.2', priority: 20 },
              { exchange: '127.0.0.1', priority: 10 },
            ])
          : Promise.reject(Object.assign(new Error('queryMx ESERVFAIL'), { code: 'ESERVFAIL' })),
    });
    const ok = await probe({ host: 'example.test', port: plain.port, mx: true, tls: 'Opportunistic' });
    expect(ok.reachable).toBe(true);
    const bad = await probe({ host: 'broken.test', port: plain.port, mx: true, tls: 'Opportunistic' });
    expect(bad).toMatchObject({
      reachable: false,
      message: 'MX lookup of broken.test: queryMx ESERVFAIL',
    });
  });

  it('a destination policy is checked on the resolved address: a denied one is "not permitted", never connected to', async () => {
    const policy = destinationPolicy({ deny: clusterDefaultDeny() });
    const lookups: string[] = [];
    const probe = createSmtpProbe({
      timeoutMs: 3000,
      destinations: policy,
      lookup: (host) => {
        lookups.push(host);
        if (host === 'metadata.test') return Promise.resolve(['169.254.169.254']);
        if (host === 'both.test') return Promise.resolve(['::1', '::ffff:127.0.0.1']);
        return Promise.reject(
          Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }),
        );
      },
      resolveMx: () => Promise.resolve([{ exchange: 'metadata.test', priority: 10 }]),
    });
    const before = plain.stats.connections;
    const open = await probe({ host: '127.0.0.1', port: plain.port, mx: false, tls: 'None' });
    const closed = await probe({ host: '127.0.0.1', port: 1, mx: false, tls: 'None' });
    expect(open).toEqual({
      reachable: false,
      tls: 'none',
      message: 'connect 127.0.0.1: not permitted by the destination policy',
    });
    expect(closed).toEqual(open);
    expect(await probe({ host: 'both.test', port: plain.port, mx: false, tls: 'None' })).toMatchObject({
      message: 'connect both.test: not permitted by the destination policy',
    });
    expect(await probe({ host: 'mail.test', port: plain.port, mx: true, tls: 'None' })).toMatchObject({
      message: 'connect metadata.test (MX metadata.test): not permitted by the destination policy',
    });
    expect(await probe({ host: 'gone.test', port: plain.port, mx: false, tls: 'None' })).toMatchObject({
      reachable: false,
      message: 'address lookup of gone.test: ENOTFOUND',
    });
    expect(lookups).toEqual(['both.test', 'metadata.test', 'gone.test']);
    expect(plain.stats.connections).toBe(before);
    // an exception for loopback: the probe connects to the permitted address
    const allowed = createSmtpProbe({
      timeoutMs: 3000,
      destinations: destinationPolicy({
        deny: clusterDefaultDeny(),
        allow: [parseCidr('127.0.0.0/8') as Cidr],
      }),
    });
    expect((await allowed({ host: '127.0.0.1', port: plain.port, mx: false, tls: 'None' })).reachable).toBe(
      true,
    );
  });

  it("a server's DomainClaim destinations: its allow re-permits loopback for that target, its deny refuses", async () => {
    const probe = createSmtpProbe({
      timeoutMs: 3000,
      destinations: destinationPolicy({ deny: clusterDefaultDeny() }),
    });
    const target = { host: '127.0.0.1', port: plain.port, mx: false, tls: 'None' } as const;
    const before = plain.stats.connections;
    expect(await probe(target)).toMatchObject({
      reachable: false,
      message: 'connect 127.0.0.1: not permitted by the destination policy',
    });
    expect(plain.stats.connections).toBe(before);
    const granted = await probe({ ...target, destinations: grantFromTexts({ allow: ['127.0.0.1/32'] })! });
    expect(granted.reachable).toBe(true);
    const open = createSmtpProbe({ timeoutMs: 3000 }); // no global policy: a grant deny still applies
    expect((await open(target)).reachable).toBe(true);
    expect(await open({ ...target, destinations: grantFromTexts({ deny: ['127.0.0.0/8'] })! })).toMatchObject(
      {
        reachable: false,
        message: 'connect 127.0.0.1: not permitted by the destination policy',
      },
    );
  });
});
