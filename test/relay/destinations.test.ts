// The destination policy holds on the address actually connected to (issue: "the relay delivered to a loopback
// service reached through a decimal IP"). A relay with --deny-destinations 127.0.0.0/8 and the system resolver
// (getaddrinfo turns 2130706433 and 127.1 into 127.0.0.1 without asking any DNS server) never connects to a loopback
// peer named by a numeric form: not for delivery, not for a recipient-verification callout, not for a DSN. The leg
// is deferred (so a corrected policy reaches the queued mail), `queue show` says "not permitted", and
// mailroute_destinations_denied_total counts it. --allow-destinations makes an exception.
import { afterEach, describe, expect, it } from 'vitest';
import { run as queueCli } from '../../cli/commands/queue.ts';
import { createDnsResolver } from '../../relay/dns.ts';
import type { MessageView } from '../../relay/admin/view.ts';
import { startSmtpPeer, type PeerBehaviour, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { RawSmtp } from './raw-client.ts';
import {
  domainManifests,
  httpGet,
  metricValue,
  queuedId,
  queuedView,
  startRelay,
  submit,
  type InProcessRelay,
} from './relay-harness.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function peer(name: string, behaviour: PeerBehaviour = {}, host?: string): Promise<SmtpPeer> {
  const p = await startSmtpPeer(name, behaviour, undefined, host ? { host } : {});
  cleanups.push(() => p.close());
  return p;
}

async function relay(files: Record<string, string>, flags: string[]): Promise<InProcessRelay> {
  // The system resolver: numeric host forms resolve locally (inet_aton), no DNS query leaves the machine.
  const r = await startRelay(files, flags, { resolver: createDnsResolver() });
  cleanups.push(() => r.close());
  return r;
}

const domain = (name: string, server: string, policy = '  mode: Direct\n', extra = ''): string =>
  domainManifests({
    domain: name,
    servers: [`name: old, ${server}`],
    extraDomain: extra,
    policy: `${policy}  primary: old\n`,
  }) + '---\n';

async function send(r: InProcessRelay, from: string, to: string): Promise<string> {
  const reply = await submit(r.relay.smtp.port, {
    envelope: { from, to: [to] },
    raw: `From: ${from}\r\nTo: ${to}\r\nSubject: policy\r\n\r\nbody\r\n`,
  });
  return queuedId(reply);
}

async function queueShow(r: InProcessRelay, id: string): Promise<string> {
  let out = '';
  const code = await queueCli(
    ['show', id, '--admin', `127.0.0.1:${r.relay.admin.port}`, '--spool', r.spoolDir],
    {
      stdout: (s) => (out += s),
      stderr: (s) => (out += s),
      env: {},
      fetch: (...a) => fetch(...a),
      now: () => new Date(),
    },
  );
  expect(code, out).toBe(0);
  return out;
}

const lastReply = (v: MessageView | undefined): string | undefined => v?.recipients[0]?.legs[0]?.lastReply;

describe('destination policy: the relay checks the address it would connect to', () => {
  it('--deny-destinations 127.0.0.0/8: servers at 2130706433, 127.1 and ::ffff:127.0.0.1 get nothing; deferred, "not permitted"', async () => {
    const target = await peer('loopback');
    const r = await relay(
      {
        'decimal.yaml': domain('decimal.test', `host: "2130706433", port: ${target.port}, tls: None`),
        'short.yaml': domain('short.test', `host: "127.1", port: ${target.port}, tls: None`),
        'mapped.yaml': domain('mapped.test', `host: "::ffff:127.0.0.1", port: ${target.port}, tls: None`),
      },
      ['--deny-destinations', '127.0.0.0/8'],
    );
    const ids = [
      await send(r, 'sender@outside.test', 'alice@decimal.test'),
      await send(r, 'sender@outside.test', 'bob@short.test'),
      await send(r, 'sender@outside.test', 'carol@mapped.test'),
    ];
    for (const id of ids) {
      const reply = await waitFor(async () => lastReply(await queuedView(r, id)), {
        what: `the first attempt of ${id}`,
      });
      expect(reply).toMatch(/: not permitted by the destination policy \(127\.0\.0\.0\/8\)$/);
      const leg = (await queuedView(r, id))?.recipients[0]?.legs[0];
      expect(leg?.state).toBe('deferred');
      expect(await queueShow(r, id)).toContain('not permitted by the destination policy');
    }
    expect(lastReply(await queuedView(r, ids[0]!))).toBe(
      '2130706433 (127.0.0.1): not permitted by the destination policy (127.0.0.0/8)',
    );
    expect(target.stats.connections).toBe(0);
    expect(target.messages).toHaveLength(0);
    const metrics = (await httpGet(r.relay.http.port, '/metrics')).body;
    expect(
      metricValue(metrics, 'mailroute_destinations_denied_total', '{use="delivery"}'),
    ).toBeGreaterThanOrEqual(3);
    expect(
      metricValue(metrics, 'mailroute_deliveries_total', '{server="old",leg="primary",result="deferred"}'),
    ).toBe(3);
  });

  it('--allow-destinations is an exception to the denied range: 2130706433 is 127.0.0.1 and gets delivered', async () => {
    const target = await peer('allowed');
    const r = await relay(
      { 'decimal.yaml': domain('decimal.test', `host: "2130706433", port: ${target.port}, tls: None`) },
      ['--deny-destinations', '127.0.0.0/8', '--allow-destinations', '127.0.0.1'],
    );
    await send(r, 'sender@outside.test', 'alice@decimal.test');
    await waitFor(() => target.messages.length === 1 || undefined, { what: 'the message at 127.0.0.1' });
  });

  it('recipient-verification callouts: no connection to a denied server, the recipient is tempfailed', async () => {
    const target = await peer('verifier');
    const r = await relay(
      {
        'split.yaml': domain(
          'split.test',
          `host: "127.1", port: ${target.port}, tls: None`,
          '  mode: Split\n  secondary: new\n',
          `    - {name: new, host: "127.1", port: ${target.port}, tls: None}\n  recipientVerification: {server: old, cacheTTL: 1h}\n`,
        ),
      },
      ['--deny-destinations', '127.0.0.0/8'],
    );
    const c = await RawSmtp.connect(r.relay.smtp.port);
    try {
      await c.begin('sender@origin.test', []);
      expect(await c.cmd('RCPT TO:<alice@split.test>')).toMatch(/^451 4\.4\.3 /);
    } finally {
      c.close();
    }
    expect(target.stats.connections).toBe(0);
    const metrics = (await httpGet(r.relay.http.port, '/metrics')).body;
    expect(
      metricValue(metrics, 'mailroute_destinations_denied_total', '{use="callout"}'),
    ).toBeGreaterThanOrEqual(1);
  });

  it('DSNs: a bounce routed to a denied --dsn-relay (2130706434 = 127.0.0.2) is never sent there', async () => {
    const refusing = await peer('refusing', { rcpt: () => ({ code: 550, message: '5.1.1 no such user' }) });
    const dsnBox = await peer('dsn-box', {}, '127.0.0.2');
    const r = await relay(
      { 'bounce.yaml': domain('bounce.test', `host: 127.0.0.1, port: ${refusing.port}, tls: None`) },
      [
        '--deny-destinations',
        '127.0.0.0/8',
        '--allow-destinations',
        '127.0.0.1',
        '--dsn-relay',
        `2130706434:${dsnBox.port}`,
      ],
    );
    const id = await send(r, 'sender@outside.test', 'alice@bounce.test');
    // the message fails (550) and its DSN is queued under its own id, addressed to the sender
    const dsnReply = await waitFor(
      async () => {
        for (const other of await r.relay.spool.list()) {
          if (other === id) continue;
          const reply = lastReply(await queuedView(r, other));
          if (reply !== undefined) return reply;
        }
        return undefined;
      },
      { what: 'the first attempt of the DSN' },
    );
    expect(dsnReply).toBe('2130706434 (127.0.0.2): not permitted by the destination policy (127.0.0.0/8)');
    expect(refusing.rcpts.length).toBeGreaterThan(0);
    expect(dsnBox.stats.connections).toBe(0);
  });
});

const claim = (
  name: string,
  domains: string[],
  destinations = '',
): string => `apiVersion: mailroute.io/v1alpha1
kind: DomainClaim
metadata: {name: ${name}}
spec:
  domains: [${domains.join(', ')}]
  namespaces: {names: [default]}
${destinations}---
`;

describe('destination policy per DomainClaim (destinations.allow / destinations.deny)', () => {
  it('--deny-destinations 127.0.0.0/8: the grant allowing 127.0.0.1/32 is delivered; a domain granted without it is not', async () => {
    const onprem = await peer('onprem');
    const other = await peer('other');
    const r = await relay(
      {
        'claims.yaml':
          claim('onprem', ['onprem.test'], '  destinations: {allow: [127.0.0.1/32]}\n') +
          claim('plain', ['plain.test']),
        'onprem.yaml': domain('onprem.test', `host: "2130706433", port: ${onprem.port}, tls: None`),
        'plain.yaml': domain('plain.test', `host: 127.0.0.1, port: ${other.port}, tls: None`),
      },
      ['--deny-destinations', '127.0.0.0/8'],
    );
    const plainId = await send(r, 'sender@outside.test', 'bob@plain.test');
    await send(r, 'sender@outside.test', 'alice@onprem.test');
    await waitFor(() => onprem.messages.length === 1 || undefined, {
      what: 'the message at the granted 127.0.0.1',
    });
    expect(onprem.messages[0]?.rcptTo).toEqual(['alice@onprem.test']);
    const reply = await waitFor(async () => lastReply(await queuedView(r, plainId)), {
      what: 'the first attempt for plain.test',
    });
    expect(reply).toBe('127.0.0.1: not permitted by the destination policy (127.0.0.0/8)');
    expect(other.stats.connections).toBe(0);
  });

  it('recipient-verification callouts follow the grant too: allowed for the granted domain, 451 4.4.3 for the other', async () => {
    const verifier = await peer('verifier');
    const split = (name: string) =>
      domain(
        name,
        `host: "127.1", port: ${verifier.port}, tls: None`,
        '  mode: Split\n  secondary: new\n',
        `    - {name: new, host: "127.1", port: ${verifier.port}, tls: None}\n  recipientVerification: {server: old, cacheTTL: 1h}\n`,
      );
    const r = await relay(
      {
        'claims.yaml':
          claim('onprem', ['onprem.test'], '  destinations: {allow: [127.0.0.1/32]}\n') +
          claim('plain', ['plain.test']),
        'onprem.yaml': split('onprem.test'),
        'plain.yaml': split('plain.test'),
      },
      ['--deny-destinations', '127.0.0.0/8'],
    );
    const c = await RawSmtp.connect(r.relay.smtp.port);
    try {
      await c.begin('sender@origin.test', []);
      expect(await c.cmd('RCPT TO:<bob@plain.test>')).toMatch(/^451 4\.4\.3 /);
      expect(verifier.stats.connections).toBe(0);
      expect(await c.cmd('RCPT TO:<alice@onprem.test>')).toMatch(/^250 /);
    } finally {
      c.close();
    }
    expect(verifier.stats.connections).toBeGreaterThan(0);
    expect(verifier.rcpts.map((x) => x.address)).toContain('alice@onprem.test');
  });

  it('a grant deny applies even on a relay without --deny-destinations; only that domain is refused', async () => {
    const target = await peer('target');
    const r = await relay(
      {
        'claims.yaml':
          claim('closed', ['closed.test'], '  destinations: {deny: [127.0.0.0/8]}\n') +
          claim('open', ['open.test']),
        'closed.yaml': domain('closed.test', `host: 127.0.0.1, port: ${target.port}, tls: None`),
        'open.yaml': domain('open.test', `host: 127.0.0.1, port: ${target.port}, tls: None`),
      },
      [],
    );
    const closedId = await send(r, 'sender@outside.test', 'alice@closed.test');
    await send(r, 'sender@outside.test', 'bob@open.test');
    const reply = await waitFor(async () => lastReply(await queuedView(r, closedId)), {
      what: 'the first attempt for closed.test',
    });
    expect(reply).toBe('127.0.0.1: not permitted by the destination policy (127.0.0.0/8 (DomainClaim))');
    await waitFor(() => target.messages.length === 1 || undefined, { what: 'the message for open.test' });
    expect(target.messages.flatMap((m) => m.rcptTo)).toEqual(['bob@open.test']);
  });
});
