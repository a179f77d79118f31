// Forwarding loops against real peers: the relay's primary is an "old server" (test/support/forwarding-peer.ts) that
// forwards everything it receives back to the relay, the install.md mistake. The message must be delivered once and
// the loop stopped at its first return with 554 5.4.6, by the relay that stamped it or by any other relay of its
// cluster (same --cluster-id, other host name). The fixed recipe (the old server keeps what carries the relay's trace)
// delivers once without a refusal; a shutdown drain between relays of one cluster is not mistaken for a loop.
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../support/net.ts';
import { startForwardingPeer, type ForwardingPeer } from '../support/forwarding-peer.ts';
import { startSmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { domainManifests, metricValue, startRelay, submit, type InProcessRelay } from './relay-harness.ts';

/** `domain` delivered Direct to server old at 127.0.0.1:`port`. */
const direct = (domain: string, port: number): string =>
  domainManifests({
    domain,
    servers: [`name: old, host: 127.0.0.1, port: ${port}, tls: None`],
    policy: '  mode: Direct\n  primary: old\n',
  });

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function relay(oldPort: number, flags: string[]): Promise<InProcessRelay> {
  const r = await startRelay({ 'd.yaml': direct('example.com', oldPort) }, flags);
  cleanups.push(() => r.close());
  return r;
}

/** The old server, listening before the relays start (they need its port); forwardTo() names its smarthost. */
async function forwarder(exempt?: (raw: string) => boolean): Promise<ForwardingPeer> {
  const f = await startForwardingPeer({
    name: 'old.example.test',
    ...(exempt ? { exempt: (m) => exempt(m.raw.toString('latin1')) } : {}),
  });
  cleanups.push(() => f.close());
  return f;
}

const loops = async (r: InProcessRelay): Promise<number> =>
  metricValue(
    await r.relay.metrics.registry.metrics(),
    'mailroute_messages_rejected_total',
    '{reason="Loop"}',
  ) ?? 0;

const mail = { from: 'sender@elsewhere.test', to: 'alice@example.com', subject: 'loop', text: 'hello' };

describe('forwarding loops', () => {
  it('the old server forwards everything back: delivered once, stopped at its first return with 554 5.4.6', async () => {
    const old = await forwarder();
    const r = await relay(old.port, ['--hostname', 'relay-0']);
    old.forwardTo(r.relay.smtp.port);
    expect(await submit(r.relay.smtp.port, mail)).toMatch(/^250 /);
    await waitFor(() => old.forwards.length >= 1, { what: 'the old server to forward the message back' });
    expect(old.forwards[0]).toMatch(/^554 5\.4\.6 Mail loops back to myself/);
    expect(old.received).toHaveLength(1);
    expect(old.received[0]?.raw.toString('latin1')).toContain('by relay-0 (mailroute relay-0) with ESMTP');
    await waitFor(async () => (await r.relay.spool.list()).length === 0, {
      what: 'the relay queue to empty',
    });
    expect(await loops(r)).toBe(1);
    // nothing is on its way any more: one copy in, one refusal, no further round
    expect(old.received).toHaveLength(1);
    expect(old.forwards).toHaveLength(1);
  });

  it('another relay of the same cluster (same --cluster-id, other pod name) stops it too', async () => {
    const old = await forwarder();
    const a = await relay(old.port, ['--hostname', 'relay-0', '--cluster-id', 'mailroute.mail']);
    const b = await relay(old.port, ['--hostname', 'relay-1', '--cluster-id', 'mailroute.mail']);
    old.forwardTo(b.relay.smtp.port);
    expect(await submit(a.relay.smtp.port, mail)).toMatch(/^250 /);
    await waitFor(() => old.forwards.length >= 1, { what: 'the forward to the other relay' });
    expect(old.forwards[0]).toMatch(/^554 5\.4\.6 /);
    expect(old.received).toHaveLength(1);
    expect(await loops(b)).toBe(1);
  });

  it('a relay of another installation (other cluster id) is not a loop', async () => {
    const old = await forwarder();
    const sink = await forwarder(() => true); // stores everything
    const a = await relay(old.port, ['--hostname', 'relay-0', '--cluster-id', 'mailroute.mail']);
    const other = await relay(sink.port, ['--hostname', 'relay-0', '--cluster-id', 'mailroute.other']);
    old.forwardTo(other.relay.smtp.port);
    expect(await submit(a.relay.smtp.port, mail)).toMatch(/^250 /);
    await waitFor(() => sink.stored.length === 1, { what: 'the other installation to deliver it' });
    expect(old.forwards[0]).toMatch(/^250 /);
    expect(await loops(other)).toBe(0);
  });

  it("the fixed recipe: the old server keeps what carries the relay's trace; mail from outside goes round once", async () => {
    const old = await forwarder((raw) => /\(mailroute mailroute\.mail\)/i.test(raw));
    const r = await relay(old.port, ['--hostname', 'relay-0', '--cluster-id', 'mailroute.mail']);
    old.forwardTo(r.relay.smtp.port);
    // mail arrives at the old server (the MX) from outside
    expect(await submit(old.port, mail)).toMatch(/^250 /);
    await waitFor(() => old.stored.length === 1, { what: 'the relay to deliver to the mailbox' });
    expect(old.forwards).toEqual([expect.stringMatching(/^250 /)]);
    expect(old.received).toHaveLength(2);
    expect(await loops(r)).toBe(0);
  });

  it("a DSN carries the relay's trace too: a forwarding server sending it back is stopped at its first return", async () => {
    const old = await forwarder();
    const mailbox = await startSmtpPeer('mailbox', {
      rcpt: () => ({ code: 550, message: '5.1.1 no such user' }),
    });
    cleanups.push(() => mailbox.close());
    // example.com's mailboxes refuse the recipient; the sender's domain is behind the forwarding old server
    const r = await startRelay(
      {
        'd.yaml': direct('example.com', mailbox.port),
        's.yaml': direct('sender.example', old.port),
      },
      ['--hostname', 'relay-0', '--cluster-id', 'mailroute.mail'],
    );
    cleanups.push(() => r.close());
    old.forwardTo(r.relay.smtp.port);
    expect(
      await submit(r.relay.smtp.port, { ...mail, from: 'alice@sender.example', to: 'gone@example.com' }),
    ).toMatch(/^250 /);
    await waitFor(() => old.forwards.length >= 1, { what: 'the DSN to come back' });
    expect(old.received[0]?.mailFrom).toBe('');
    expect(old.received[0]?.raw.toString('latin1')).toMatch(
      /^Received: by relay-0 \(mailroute mailroute\.mail\) id \S+\.dsn;/,
    );
    expect(old.forwards[0]).toMatch(/^554 5\.4\.6 /);
    expect(old.received).toHaveLength(1);
  });

  it('a shutdown drain to a relay of the same cluster is a hand-off, not a loop', async () => {
    const deadPort = await freePort(); // the primary is down: the message stays queued
    // B takes hand-offs from the addresses its --peers resolve to (relay/inbound/peer-trust.ts): A's, 127.0.0.1.
    const b = await relay(deadPort, [
      '--hostname',
      'relay-1',
      '--cluster-id',
      'mailroute.mail',
      '--peers',
      '127.0.0.1:2525',
      '--drain-on-shutdown',
      'false',
    ]);
    const a = await startRelay({ 'd.yaml': direct('example.com', deadPort) }, [
      '--hostname',
      'relay-0',
      '--cluster-id',
      'mailroute.mail',
      '--peers',
      `127.0.0.1:${b.relay.smtp.port}`,
      '--drain-on-shutdown',
      'true',
    ]);
    cleanups.push(() => a.close());
    expect(await submit(a.relay.smtp.port, mail)).toMatch(/^250 /);
    await a.relay.shutdown('test');
    const ids = await waitFor(
      async () => {
        const l = await b.relay.spool.list();
        return l.length === 1 ? l : undefined;
      },
      { what: 'the hand-off to reach the peer' },
    );
    expect(await a.relay.spool.list()).toEqual([]);
    const body = (await b.relay.spool.readBody(ids[0] ?? '')).toString('latin1');
    // the peer's stamp only: the hand-off is not a hop
    expect(body.match(/\(mailroute mailroute\.mail\)/g)).toHaveLength(1);
    expect(body).toContain('by relay-1 (mailroute mailroute.mail)');
    expect(await loops(b)).toBe(0);
  });
});
