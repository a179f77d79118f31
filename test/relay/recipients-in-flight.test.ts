// --max-recipients-in-flight over real sockets against the real inbound server and spool. Before it, --max-recipients
// bounded one transaction and --max-connections the sessions, but nothing the recipients held across them: 40
// sessions each pipelining 1000 RCPT TO, all answered 250, grew the relay's RSS from 171 to 285 MiB before DATA.
// The count must come down on every way a transaction ends, or the relay would refuse every RCPT for good.
import { afterEach, describe, expect, it } from 'vitest';
import { scriptedServers } from '../support/scripted-smtp.ts';
import { waitFor } from '../support/wait.ts';
import { directDomain, startInbound, type InboundHarness } from './inbound-harness.ts';
import { domainManifests, httpGet, metricValue, startRelay } from './relay-harness.ts';
import { RawSmtp, code } from './raw-client.ts';

const MANIFESTS = directDomain('example.com', '127.0.0.1', 1);
const IN_FLIGHT_452 = '452 4.5.3 Too many recipients in flight, try again later';

/** mailroute_messages_rejected_total{reason="TooManyRecipientsInFlight"} */
async function refusedInFlight(h: InboundHarness): Promise<number> {
  const m = await h.metrics.messagesRejected.get();
  return m.values.find((v) => v.labels.reason === 'TooManyRecipientsInFlight')?.value ?? 0;
}

describe('recipients in flight across sessions', () => {
  let h: InboundHarness | undefined;
  const open: RawSmtp[] = [];
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of open.splice(0)) c.close();
    await h?.close();
    h = undefined;
    for (const f of cleanups.splice(0)) await f();
  });

  /** A greeted session, closed after the test, with a transaction open (MAIL FROM answered 250). */
  const inTransaction = async (port: number): Promise<RawSmtp> => {
    const c = await RawSmtp.connect(port);
    open.push(c);
    expect(code(await c.reply())).toBe(220);
    expect(code(await c.cmd('EHLO client.test'))).toBe(250);
    expect(code(await c.cmd('MAIL FROM:<sender@origin.test>'))).toBe(250);
    return c;
  };
  /** `n` RCPT TO, pipelined in one write (as a bulk sender does), and their replies. */
  const rcpts = async (c: RawSmtp, tag: string, n: number): Promise<string[]> => {
    const lines = Array.from({ length: n }, (_, i) => `RCPT TO:<${tag}-${i}@example.com>\r\n`);
    c.write(lines.join(''));
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(await c.reply());
    return out;
  };
  const all250 = (replies: string[]): void => expect(replies.map(code)).toEqual(replies.map(() => 250));

  it('the recipients of all sessions together are bounded: the one over it gets 452 4.5.3, counted; DATA of the others goes on', async () => {
    h = await startInbound(MANIFESTS, { maxRecipients: 10, maxRecipientsInFlight: 6 });
    const a = await inTransaction(h.port);
    all250(await rcpts(a, 'a', 4));
    const b = await inTransaction(h.port);
    // before the fix: 250 (only --max-recipients, 10 per transaction, applied)
    expect(await rcpts(b, 'b', 3)).toEqual(['250 2.1.5 Accepted', '250 2.1.5 Accepted', IN_FLIGHT_452]);
    expect(await refusedInFlight(h)).toBe(1);
    expect(h.inbound.recipientsInFlight).toBe(6);
    // the held transactions are not harmed: a's message is accepted, and its 4 recipients are free again
    expect(code(await a.cmd('DATA'))).toBe(354);
    a.write('Subject: held\r\n\r\nhi\r\n.\r\n');
    expect(await a.reply()).toMatch(/^250 2\.0\.0 queued as /);
    expect(h.inbound.recipientsInFlight).toBe(2);
    all250(await rcpts(b, 'b-again', 4));
    expect(await rcpts(b, 'b-over', 1)).toEqual([IN_FLIGHT_452]);
    expect(await refusedInFlight(h)).toBe(2);
    // RSET gives b's 6 back
    expect(code(await b.cmd('RSET'))).toBe(250);
    expect(h.inbound.recipientsInFlight).toBe(0);
  });

  it('every way a transaction ends gives its recipients back, once: RSET, EHLO, DATA accepted and refused, QUIT, the client gone (also in DATA), a command timeout, an eviction', async () => {
    const ways = [
      'evicted',
      'RSET',
      'EHLO',
      'DATA accepted',
      'DATA refused',
      'QUIT',
      'client gone',
      'gone in DATA',
      'command timeout',
    ] as const;
    const each = 3;
    const bound = ways.length * each;
    h = await startInbound(MANIFESTS, {
      maxRecipients: 100,
      maxRecipientsInFlight: bound,
      // the table holds exactly the sessions below: the probe's connection evicts the oldest idle one
      maxConnections: ways.length,
      maxConnectionsPerIp: 100,
      commandTimeoutMs: 1000,
      sweepIntervalMs: 100,
      stressTimeoutMs: 60_000,
    });
    const port = h.port;
    const sessions = new Map<(typeof ways)[number], RawSmtp>();
    for (const w of ways) {
      const c = await inTransaction(port);
      all250(await rcpts(c, w.replaceAll(' ', '-').toLowerCase(), each));
      sessions.set(w, c);
    }
    const s = (w: (typeof ways)[number]): RawSmtp => sessions.get(w)!;
    expect(h.inbound.recipientsInFlight).toBe(bound);
    // full: the next recipient of any session is refused
    expect(await rcpts(s('RSET'), 'over', 1)).toEqual([IN_FLIGHT_452]);
    // a MAIL FROM inside the transaction is refused by smtp-server (nested): the transaction, and its count, go on
    expect(await s('RSET').cmd('MAIL FROM:<other@origin.test>')).toMatch(/^503 /);
    expect(h.inbound.recipientsInFlight).toBe(bound);

    // the oldest session (sent no mail, idle) is evicted once it is 1 s old, for the probe's connection
    const filledAt = Date.now();
    await waitFor(() => Date.now() - filledAt > 1100, { what: 'the sessions 1 s old', intervalMs: 100 });
    const probe = await RawSmtp.connect(port);
    open.push(probe);
    expect(code(await probe.reply())).toBe(220);
    expect(await s('evicted').reply()).toMatch(/^421 4\.7\.0 /);
    // a new envelope, each at once: the count is down before the reply
    expect(code(await s('RSET').cmd('RSET'))).toBe(250);
    expect(code(await s('EHLO').cmd('EHLO again.test'))).toBe(250);
    expect(code(await s('DATA accepted').cmd('DATA'))).toBe(354);
    s('DATA accepted').write('Subject: ok\r\n\r\nhi\r\n.\r\n');
    expect(await s('DATA accepted').reply()).toMatch(/^250 /);
    expect(code(await s('DATA refused').cmd('DATA'))).toBe(354);
    s('DATA refused').write('Subject: bare\r\n\r\nbare\nline feed\r\n.\r\n');
    expect(await s('DATA refused').reply()).toMatch(/^554 5\.6\.11 /);
    // the session's end
    expect(code(await s('QUIT').cmd('QUIT'))).toBe(221);
    s('client gone').close();
    // gone with the message half sent: the cut DATA ends the transaction, then the close finds a new envelope
    expect(code(await s('gone in DATA').cmd('DATA'))).toBe(354);
    s('gone in DATA').write('Subject: half\r\n\r\nthe first half');
    s('gone in DATA').socket.resetAndDestroy();
    s('command timeout').write('NOOP'); // never completed
    expect(await s('command timeout').reply(5000)).toBe(
      '421 4.4.2 Command line not completed in time, closing connection',
    );
    await waitFor(() => h!.inbound.recipientsInFlight === 0, {
      what: 'every recipient given back',
      timeoutMs: 5000,
    });

    // a fresh session takes the whole bound again, and not one more
    expect(code(await probe.cmd('EHLO probe.test'))).toBe(250);
    expect(code(await probe.cmd('MAIL FROM:<sender@origin.test>'))).toBe(250);
    all250(await rcpts(probe, 'probe', bound));
    expect(await rcpts(probe, 'probe-over', 1)).toEqual([IN_FLIGHT_452]);
    // the sessions whose transaction ended by a new envelope take recipients again too, once there is room
    expect(code(await probe.cmd('RSET'))).toBe(250);
    expect(code(await s('RSET').cmd('MAIL FROM:<sender@origin.test>'))).toBe(250);
    all250(await rcpts(s('RSET'), 'rset-again', bound));
    expect(h.inbound.recipientsInFlight).toBe(bound);
  });

  it('a RCPT still being verified when its session closes is not counted once it is answered', async () => {
    // a Split domain whose recipients are verified with a callout to a server that answers RCPT only when told
    let answer: () => void = () => undefined;
    const answered = new Promise<void>((r) => (answer = r));
    let rcptSeen = false;
    let afterRcpt: string | undefined;
    const { scripted } = scriptedServers(cleanups);
    const verifier = await scripted(async (v) => {
      await v.hello();
      expect(await v.line()).toBe('MAIL FROM:<>');
      await v.reply('250 2.1.0 Ok');
      expect(await v.line()).toMatch(/^RCPT TO:<slow@split\.test>/);
      rcptSeen = true;
      await answered;
      await v.reply('250 2.1.5 Ok');
      afterRcpt = (await v.line()) ?? 'closed';
      if (afterRcpt === 'RSET') await v.reply('250 2.0.0 Ok');
      await v.closed;
    });
    const split = domainManifests({
      domain: 'split.test',
      servers: [
        `name: old, host: 127.0.0.1, port: ${verifier.port}, tls: None`,
        `name: new, host: 127.0.0.1, port: 1, tls: None`,
      ],
      extraDomain: '  recipientVerification: {server: old, cacheTTL: 1h}\n',
      policy: '  mode: Split\n  primary: old\n  secondary: new\n',
    });
    h = await startInbound(`${MANIFESTS}\n---\n${split}`, { maxRecipients: 10, maxRecipientsInFlight: 2 });
    const c = await inTransaction(h.port);
    c.write('RCPT TO:<slow@split.test>\r\n');
    await waitFor(() => rcptSeen, { what: 'the callout asking about the recipient' });
    c.socket.resetAndDestroy(); // the client is gone at once (a FIN alone leaves the relay's side open to answer)
    await waitFor(() => h!.inbound.connections === 0, { what: 'the session closed' });
    answer();
    // the callout's answer is in (it sends RSET or QUIT after it), so the RCPT handler has run
    await waitFor(() => afterRcpt, { what: 'the callout done' });
    const fresh = await inTransaction(h.port);
    all250(await rcpts(fresh, 'fresh', 2));
    expect(await rcpts(fresh, 'fresh-over', 1)).toEqual([IN_FLIGHT_452]);
    expect(h.inbound.recipientsInFlight).toBe(2);
  });

  it('the relay takes --max-recipients-in-flight from its flags and shows the count in mailroute_smtp_recipients_in_flight', async () => {
    const r = await startRelay({ 'd.yaml': MANIFESTS }, [
      '--max-recipients',
      '2',
      '--max-recipients-in-flight',
      '3',
    ]);
    cleanups.push(() => r.close());
    const gauge = async (): Promise<number | undefined> =>
      metricValue((await httpGet(r.relay.http.port, '/metrics')).body, 'mailroute_smtp_recipients_in_flight');
    const a = await inTransaction(r.relay.smtp.port);
    all250(await rcpts(a, 'a', 2));
    const b = await inTransaction(r.relay.smtp.port);
    expect(await rcpts(b, 'b', 2)).toEqual(['250 2.1.5 Accepted', IN_FLIGHT_452]);
    expect(await gauge()).toBe(3);
    expect(code(await a.cmd('RSET'))).toBe(250);
    expect(await gauge()).toBe(1);
  });
});
