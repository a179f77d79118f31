// A drain hands over only the legs still pending (issue: every rollout duplicated mail). Two in-process relays with
// the same manifests, relay A draining to relay B (--peers) on shutdown, B taking hand-offs from its --peers
// addresses, real smtp-server destinations: 5 messages whose primary was delivered by A and whose copy is deferred
// (the secondary is down). After A's drain, B holds the 5 messages with only their copy legs and A's queue ids as
// their origin; when the secondary is back B delivers the 5 copies, and the primary still has exactly 5 deliveries.
// Before, B re-planned every recipient in full and the primary got 10.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { MessageView, QueueListView } from '../../relay/admin/view.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { dualDomain, httpGet, startDrainPair, submit, type InProcessRelay } from './relay-harness.ts';

const N = 5;
const run = promisify(execFile);

describe('drain hands over pending legs only', () => {
  const closers: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  it('the peer delivers only the copies; the primary count stays at the number of messages', async () => {
    const primary: SmtpPeer = await startSmtpPeer('primary');
    const copy: SmtpPeer = await startSmtpPeer('copy');
    closers.push(
      () => primary.close(),
      () => copy.close(),
    );
    await copy.down(); // the secondary has not allowlisted the relay yet
    const files = { 'd.yaml': dualDomain('roll.test', primary.port, copy.port) };
    const { a, b } = await startDrainPair(files, closers);

    const ids: string[] = [];
    // Message 0 is 8-bit, sent with BODY=8BITMIME (python smtplib): the hand-off and B's delivery keep the parameter.
    const py = `
import smtplib
s = smtplib.SMTP('127.0.0.1', ${a.relay.smtp.port})
s.ehlo('py.test')
s.mail('sender@outside.test', ['BODY=8BITMIME'])
s.rcpt('user0@roll.test')
code, reply = s.data('From: sender@outside.test\\r\\nTo: user0@roll.test\\r\\nSubject: rollout 0\\r\\n\\r\\nbody 0 caf\\u00e9\\r\\n'.encode('utf-8'))
assert code == 250, reply
s.quit()
print(reply.decode())
`;
    const { stdout } = await run('python3', ['-c', py]);
    ids.push(/queued as ([0-9a-z]{16})/.exec(stdout)?.[1] ?? '');
    for (let i = 1; i < N; i++) {
      const reply = await submit(a.relay.smtp.port, {
        envelope: { from: 'sender@outside.test', to: [`user${i}@roll.test`] },
        raw: `From: sender@outside.test\r\nTo: user${i}@roll.test\r\nSubject: rollout ${i}\r\n\r\nbody ${i}\r\n`,
      });
      ids.push(/queued as ([0-9a-z]{16})/.exec(reply)?.[1] ?? '');
    }
    const listOf = async (r: InProcessRelay): Promise<QueueListView> =>
      JSON.parse((await httpGet(r.relay.admin.port, '/queue')).body) as QueueListView;
    await waitFor(
      async () => {
        const q = await listOf(a);
        return (
          q.messages.length === N &&
          q.messages.every((m) => m.recipients[0]?.summary === 'primary delivered, copy deferred')
        );
      },
      { what: 'every primary delivered by A, every copy deferred' },
    );
    expect(primary.messages).toHaveLength(N);

    // A rollout: A shuts down and hands its queue to B.
    await a.relay.shutdown('test');
    expect(await a.relay.spool.list()).toEqual([]);

    // B holds each message with the copy leg only, and A's queue id as its origin.
    const onB = await waitFor(
      async () => {
        const q = await listOf(b);
        return q.messages.length === N ? q.messages : undefined;
      },
      { what: `${N} messages on B` },
    );
    expect(onB.map((m: MessageView) => m.origin?.queueId).sort()).toEqual([...ids].sort());
    expect(onB.every((m) => m.origin?.relay === 'relay.test')).toBe(true);
    for (const m of onB) {
      expect(m.recipients).toHaveLength(1);
      expect(m.recipients[0]?.legs.map((l) => l.role)).toEqual(['copy']);
    }

    // The secondary comes back: B delivers the copies; nobody delivers a primary again.
    await copy.up();
    await waitFor(() => copy.messages.length === N, { timeoutMs: 15_000, what: 'every copy delivered by B' });
    await waitFor(async () => (await listOf(b)).total === 0, { what: "B's queue empty" });
    expect(primary.messages).toHaveLength(N);
    expect(copy.for('user0@roll.test')[0]?.bodyType).toBe('8bitmime');
    expect(copy.for('user0@roll.test')[0]?.raw.toString('utf8')).toContain('body 0 café\r\n');
    expect(new Set(copy.messages.flatMap((m) => m.rcptTo))).toEqual(
      new Set(Array.from({ length: N }, (_, i) => `user${i}@roll.test`)),
    );
  });
});
