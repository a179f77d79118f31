// Every lookup goes where it is told: a relay started with --dns-servers (MAILROUTE_DNS_SERVERS) pointing at a real
// DNS responder on loopback (test/support/dns-server.ts) delivers to destinations named only in that responder's
// zone (made-up *.mailroute.test names the system resolver does not know): a server given by host name (with the
// name as the TLS server name), a server with mx: true, and the DSN route (--dsn-relay by name). The responder's
// query log shows each lookup.
import { afterEach, describe, expect, it } from 'vitest';
import { startDnsServer, type DnsServer } from '../support/dns-server.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { makeSelfSigned } from '../support/tls.ts';
import { waitFor } from '../support/wait.ts';
import { startRelay, submit, type InProcessRelay } from './relay-harness.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const domain = (name: string, server: string, extra = ''): string => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: ${name.replaceAll('.', '-')}}
spec:
  domain: ${name}
  servers:
    - {name: only, ${server}}
${extra}---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: ${name.replaceAll('.', '-')}}
spec:
  domainRef: {name: ${name.replaceAll('.', '-')}}
  mode: Direct
  primary: only
---
`;

async function peer(
  name: string,
  ...rest: Parameters<typeof startSmtpPeer> extends [string, ...infer R] ? R : never
): Promise<SmtpPeer> {
  const p = await startSmtpPeer(name, ...rest);
  cleanups.push(() => p.close());
  return p;
}

describe('DNS: the test guard holds for the relay', () => {
  it('without --dns-servers an in-process relay asks the guard (a closed loopback port), not the system resolver', async () => {
    const target = await peer('by-name');
    const relay = await startRelay({
      'd.yaml': domain('example.com', `host: mx.mailroute.test, port: ${target.port}, tls: None`),
    });
    cleanups.push(() => relay.close());
    expect(
      await submit(relay.relay.smtp.port, { from: 's@elsewhere.test', to: 'alice@example.com', text: 'x' }),
    ).toMatch(/^250 /);
    const reply = await waitFor(
      async () => {
        const [id] = await relay.relay.spool.list();
        const loaded = id === undefined ? undefined : await relay.relay.spool.load(id);
        return loaded?.ok ? loaded.state.legs[0]?.lastReply : undefined;
      },
      { what: 'the first attempt' },
    );
    // c-ares against 127.0.0.1:1: refused (getaddrinfo would have asked the machine's resolver: ENOTFOUND/EAI_AGAIN)
    expect(reply).toBe('address lookup for mx.mailroute.test failed: ECONNREFUSED');
    expect(target.messages).toHaveLength(0);
  });
});

describe('DNS: one resolver for MX, A/AAAA and the DSN route (--dns-servers)', () => {
  let dns: DnsServer;
  let relay: InProcessRelay;

  const start = async (byName: SmtpPeer, byMx: SmtpPeer, dsnBox: SmtpPeer): Promise<void> => {
    dns = await startDnsServer({
      a: {
        'mx.mailroute.test': ['127.0.0.1'],
        'mx2.mailroute.test': ['127.0.0.1'],
        'dsn.mailroute.test': ['127.0.0.1'],
      },
      mx: { 'mailroute.test': [{ priority: 10, exchange: 'mx2.mailroute.test' }] },
    });
    cleanups.push(() => dns.close());
    relay = await startRelay(
      {
        'd.yaml':
          domain('example.com', `host: mx.mailroute.test, port: ${byName.port}, tls: Opportunistic`) +
          domain('other.example', `host: mailroute.test, mx: true, port: ${byMx.port}, tls: None`),
      },
      ['--dns-servers', dns.address, '--dsn-relay', `dsn.mailroute.test:${dsnBox.port}`],
    );
    cleanups.push(() => relay.close());
  };

  it('delivers to a host given by a name only that DNS server knows, with the name as TLS server name', async () => {
    const byName = await peer('by-name', {}, undefined, { tls: makeSelfSigned('mx.mailroute.test') });
    await start(byName, await peer('by-mx'), await peer('dsn'));
    expect(
      await submit(relay.relay.smtp.port, { from: 's@elsewhere.test', to: 'alice@example.com', text: 'x' }),
    ).toMatch(/^250 /);
    const got = await waitFor(() => byName.for('alice@example.com')[0], {
      what: 'delivery to mx.mailroute.test',
    });
    expect(got.secure).toBe(true);
    expect(got.servername).toBe('mx.mailroute.test');
    expect(dns.queries).toContain('A mx.mailroute.test');
  });

  it('mx: true resolves the MX records and the MX host through it', async () => {
    const byMx = await peer('by-mx');
    await start(await peer('by-name'), byMx, await peer('dsn'));
    expect(
      await submit(relay.relay.smtp.port, { from: 's@elsewhere.test', to: 'bob@other.example', text: 'x' }),
    ).toMatch(/^250 /);
    await waitFor(() => byMx.for('bob@other.example').length === 1, { what: 'delivery via the MX' });
    expect(dns.queries).toEqual(expect.arrayContaining(['MX mailroute.test', 'A mx2.mailroute.test']));
  });

  it('the DSN route resolves through it; Remote-MTA names the host without a port', async () => {
    const byName = await peer('by-name', { rcpt: () => ({ code: 550, message: '5.1.1 no such user' }) });
    const dsnBox = await peer('dsn');
    await start(byName, await peer('by-mx'), dsnBox);
    expect(
      await submit(relay.relay.smtp.port, {
        from: 'sender@elsewhere.test',
        to: 'gone@example.com',
        text: 'x',
      }),
    ).toMatch(/^250 /);
    const dsn = await waitFor(() => dsnBox.for('sender@elsewhere.test')[0], {
      what: 'the DSN at the --dsn-relay host',
    });
    expect(dsn.mailFrom).toBe('');
    const text = dsn.raw.toString('latin1');
    expect(text).toContain('Action: failed');
    expect(text).toContain('Remote-MTA: dns; mx.mailroute.test\r\n');
    expect(dns.queries).toContain('A dsn.mailroute.test');
  });
});
