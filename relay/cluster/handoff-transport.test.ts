// The drain's hand-off client against real servers on 127.0.0.1: the hand-off parameters on the lines they belong to
// (ORIGIN on MAIL FROM, each recipient's own LEGS on its own RCPT TO, however the client shaped its address), never a
// recipient without its LEGS, one pool per peer (connections reused, QUIT on close), STARTTLS when offered without a
// certificate check, every recipient answered when the peer is down. handoffBatches is checked on its own.
import { afterEach, describe, expect, it } from 'vitest';
import type { LegRole } from '../../routing/model.ts';
import { freePort } from '../../test/support/net.ts';
import { expectLine, scriptedServers, type ScriptedSession } from '../../test/support/scripted-smtp.ts';
import { startSmtpPeer, type SmtpPeer } from '../../test/support/smtp-peer.ts';
import { makeSelfSigned } from '../../test/support/tls.ts';
import type { AttemptReply } from '../delivery/outcome.ts';
import { handoffBatches, handoffTransportFactory, type HandoffTransport } from './handoff-transport.ts';

const BODY = Buffer.from('Subject: handed over\r\n\r\nhello\r\n');
const ORIGIN = { queueId: '0mx0qz1k20001a7f', relay: 'relay-0.example' };
const FAST = { connectionMs: 3000, greetingMs: 3000, socketMs: 3000 };

const cleanups: (() => unknown)[] = [];
const servers = scriptedServers(cleanups);
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  // a script that threw (an unexpected command) fails the test that ran it
  expect(servers.takeErrors()).toEqual([]);
});

function transport(port: number): HandoffTransport {
  const t = handoffTransportFactory({ hostname: 'draining.test', timeouts: FAST })({
    host: '127.0.0.1',
    port,
  });
  cleanups.push(() => t.close());
  return t;
}

const scripted = servers.scripted;

/** One pipelined transaction of n recipients, all accepted; the envelope lines as received. */
async function transaction(
  s: ScriptedSession,
  n: number,
  final = '250 2.0.0 queued as 0mx0qz1k20002b8g',
): Promise<string[]> {
  const lines = [await expectLine(s, /^MAIL FROM:/)];
  for (let i = 0; i < n; i++) lines.push(await expectLine(s, /^RCPT TO:/));
  await expectLine(s, 'DATA');
  await s.reply('250 ok', ...Array.from({ length: n }, () => '250 ok'), '354 go');
  await s.data();
  await s.reply(final);
  return lines;
}

const send = async (
  t: HandoffTransport,
  to: string[],
  roles: [string, LegRole[]][],
): Promise<Record<string, AttemptReply>> =>
  Object.fromEntries(
    await t.send({ from: 'a@x.example', to, raw: BODY, origin: ORIGIN, roles: new Map(roles) }),
  );

const smtp = (code: number, text: string): AttemptReply => ({ kind: 'smtp', code, text });

describe('the hand-off parameters', () => {
  it("ORIGIN on MAIL FROM; each recipient's LEGS on its own RCPT TO, its address shaped or not", async () => {
    let lines: string[] = [];
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING', 'SMTPUTF8']);
      lines = await transaction(s, 4);
    });
    const to = ['plain@x.example', 'Bob@Example.COM', 'b@BÜCHER.example', 'jörg@bücher.example'];
    const got = await send(transport(server.port), to, [
      ['plain@x.example', ['primary']],
      ['Bob@Example.COM', ['copy']],
      ['b@BÜCHER.example', ['copy', 'primary']],
      ['jörg@bücher.example', ['copy']],
    ]);
    expect(lines).toEqual([
      'MAIL FROM:<a@x.example> SMTPUTF8 X-MAILROUTE-ORIGIN=0mx0qz1k20001a7f@relay-0.example',
      'RCPT TO:<plain@x.example> X-MAILROUTE-LEGS=primary',
      'RCPT TO:<Bob@example.com> X-MAILROUTE-LEGS=copy',
      'RCPT TO:<b@xn--bcher-kva.example> X-MAILROUTE-LEGS=primary,copy',
      'RCPT TO:<jörg@bücher.example> X-MAILROUTE-LEGS=copy',
    ]);
    const queued = smtp(250, '250 2.0.0 queued as 0mx0qz1k20002b8g');
    expect(got).toEqual(Object.fromEntries(to.map((r) => [r, queued])));
  });

  it('a recipient without roles is never sent (the peer would plan all its legs): answered locally', async () => {
    let lines: string[] = [];
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      lines = await transaction(s, 1);
    });
    const got = await send(
      transport(server.port),
      ['unlisted@x.example', 'empty@x.example', 'open@x.example'],
      [
        ['empty@x.example', []],
        ['open@x.example', ['copy']],
      ],
    );
    expect(lines.slice(1)).toEqual(['RCPT TO:<open@x.example> X-MAILROUTE-LEGS=copy']);
    const notSent = { kind: 'local', text: expect.stringMatching(/^hand-off: no open leg roles/) as unknown };
    expect(got).toEqual({
      'unlisted@x.example': notSent,
      'empty@x.example': notSent,
      'open@x.example': smtp(250, '250 2.0.0 queued as 0mx0qz1k20002b8g'),
    });
  });

  it('no recipient with roles: nothing sent, no connection', async () => {
    const server = await scripted((s) => s.closed);
    const got = await send(transport(server.port), ['a@x.example'], []);
    expect(got['a@x.example']).toMatchObject({ kind: 'local' });
    expect(server.connections).toBe(0);
  });

  it('two recipients written as one address with different roles: two transactions, each with its own LEGS', async () => {
    const seen: string[][] = [];
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      seen.push(await transaction(s, 2, '250 2.0.0 first'));
      seen.push(await transaction(s, 1, '250 2.0.0 second'));
    });
    const got = await send(
      transport(server.port),
      ['Bob@Example.COM', 'c@x.example', 'Bob@example.com'],
      [
        ['Bob@Example.COM', ['primary']],
        ['c@x.example', ['copy']],
        ['Bob@example.com', ['copy']],
      ],
    );
    expect(seen.map((t) => t.slice(1))).toEqual([
      ['RCPT TO:<Bob@example.com> X-MAILROUTE-LEGS=primary', 'RCPT TO:<c@x.example> X-MAILROUTE-LEGS=copy'],
      ['RCPT TO:<Bob@example.com> X-MAILROUTE-LEGS=copy'],
    ]);
    expect(
      seen.every(
        (t) => t[0] === 'MAIL FROM:<a@x.example> X-MAILROUTE-ORIGIN=0mx0qz1k20001a7f@relay-0.example',
      ),
    ).toBe(true);
    expect(got).toEqual({
      'Bob@Example.COM': smtp(250, '250 2.0.0 first'),
      'c@x.example': smtp(250, '250 2.0.0 first'),
      'Bob@example.com': smtp(250, '250 2.0.0 second'),
    });
    expect(server.connections).toBe(1);
  });

  it('a value that cannot go on the line (an origin relay name with a space) is refused locally, nothing sent', async () => {
    const server = await scripted((s) => s.closed);
    const t = transport(server.port);
    const got = await t.send({
      from: 'a@x.example',
      to: ['b@x.example'],
      raw: BODY,
      origin: { queueId: ORIGIN.queueId, relay: 'bad name' },
      roles: new Map([['b@x.example', ['copy']]]),
    });
    expect(Object.fromEntries(got)).toEqual({
      'b@x.example': {
        kind: 'local',
        text: 'ESMTP parameters refused, nothing sent: MAIL FROM: Invalid ESMTP parameter "X-MAILROUTE-ORIGIN=0mx0qz1k20001a7f@bad name"',
      },
    });
    expect(server.connections).toBe(0);
  });
});

describe('connections to a peer', () => {
  it('one pool per peer: messages reuse the connection, close() says QUIT', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await transaction(s, 1);
      await transaction(s, 1);
      await expectLine(s, 'QUIT');
    });
    const t = transport(server.port);
    for (const r of ['b@x.example', 'c@x.example']) {
      expect((await send(t, [r], [[r, ['copy']]]))[r]).toMatchObject({ kind: 'smtp', code: 250 });
    }
    t.close();
    await server.sessions[0]?.closed;
    expect(server.connections).toBe(1);
    expect(server.sessions[0]?.lines.at(-1)).toBe('QUIT');
  });

  it('STARTTLS when offered, with a certificate that does not verify (smtp-server)', async () => {
    const peer: SmtpPeer = await startSmtpPeer('peer', {}, undefined, { tls: makeSelfSigned() });
    cleanups.push(() => peer.close());
    const got = await send(transport(peer.port), ['b@x.example'], [['b@x.example', ['primary', 'copy']]]);
    expect(got['b@x.example']).toMatchObject({ kind: 'smtp', code: 250 });
    expect(peer.messages.map((m) => [m.secure, m.rcptTo, m.raw.toString()])).toEqual([
      [true, ['b@x.example'], BODY.toString()],
    ]);
  });

  it('a peer that is down: every recipient gets a network reply, the send resolves', async () => {
    const port = await freePort();
    const got = await send(
      transport(port),
      ['b@x.example', 'c@x.example'],
      [
        ['b@x.example', ['copy']],
        ['c@x.example', ['primary']],
      ],
    );
    expect(Object.keys(got)).toEqual(['b@x.example', 'c@x.example']);
    for (const reply of Object.values(got)) expect(reply).toMatchObject({ kind: 'network' });
  });
});

describe('handoffBatches', () => {
  const shaped = (r: string): string[] => [r.toLowerCase()];
  it.each([
    ['no clash: one transaction', ['a', 'b', 'c'], { a: 'copy', b: 'primary', c: 'copy' }, [['a', 'b', 'c']]],
    ['the same address with the same value: together', ['a', 'A'], { a: 'copy', A: 'copy' }, [['a', 'A']]],
    [
      'the same address with another value: apart',
      ['a', 'b', 'A'],
      { a: 'copy', b: 'copy', A: 'primary' },
      [['a', 'b'], ['A']],
    ],
    [
      'three values of one address: three, the others in the first',
      ['a', 'A', 'b', 'a '],
      { a: 'copy', A: 'primary', b: 'copy', 'a ': 'primary,copy' },
      [['a', 'b'], ['A'], ['a ']],
    ],
    ['none', [], {}, []],
  ])('%s', (_what, recipients, values, batches) => {
    const addressesOf = (r: string): string[] => shaped(r.trim());
    expect(handoffBatches(recipients, new Map(Object.entries(values)), addressesOf)).toEqual(batches);
  });
});
