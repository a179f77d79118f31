// What a remote server says is kept in the spool (the last reply of a deferred leg), and the spool is read again at
// every start. Bytes a server may send in a reply (a NUL, other control characters) must never make a later start
// refuse the state and quarantine the message. Real spool on disk, the real engine and SMTP client, and a scripted
// server on 127.0.0.1 that writes the reply bytes exactly.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startDelivery, type DeliveryEngine } from '../../relay/delivery/engine.ts';
import { openSpool } from '../../relay/spool/spool.ts';
import type { Spool } from '../../relay/spool/types.ts';
import { deliveryOptions, envelope, localServer } from '../support/delivery.ts';
import { expectLine, scriptedServers, type ScriptedSession } from '../support/scripted-smtp.ts';
import { waitFor } from '../support/wait.ts';

const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });
const cleanups: (() => unknown)[] = [];
const { scripted, takeErrors } = scriptedServers(cleanups);

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  expect(takeErrors()).toEqual([]);
});

/** One transaction: the RCPT gets `rcptReply`; when it is a 250 the message is taken. Then QUIT or the next MAIL. */
async function serve(s: ScriptedSession, rcptReply: () => string, delivered: Buffer[]): Promise<void> {
  await s.hello(['PIPELINING', '8BITMIME']);
  for (;;) {
    const mail = await s.line();
    if (mail === undefined || mail === 'QUIT') return s.reply('221 bye');
    if (mail === 'RSET') {
      await s.reply('250 ok');
      continue;
    }
    if (!mail.startsWith('MAIL FROM:')) throw new Error(`expected MAIL FROM, got ${mail}`);
    await expectLine(s, /^RCPT TO:<bob@example\.com>/);
    await expectLine(s, 'DATA');
    const rcpt = rcptReply();
    const ok = rcpt.startsWith('250');
    await s.write(`250 2.1.0 ok\r\n${rcpt}\r\n${ok ? '354 go on' : '554 5.5.1 no valid recipients'}\r\n`);
    if (!ok) continue;
    const data = await s.data();
    if (data === undefined) return;
    delivered.push(data);
    await s.reply('250 2.0.0 queued');
  }
}

/** A spool on `dir` and a ready engine on it that tries a deferred leg again only after an hour. */
async function startOn(dir: string): Promise<{ spool: Spool; engine: DeliveryEngine }> {
  const spool = await openSpool({ dir, logger });
  const engine = startDelivery(deliveryOptions(spool, { logger, retryScheduleMs: [3_600_000] }));
  await engine.ready;
  return { spool, engine };
}

describe("a remote server's reply kept in the spool", () => {
  it.each([
    ['a NUL', '451 4.7.1 greylisted\u0000 try later', '451 4.7.1 greylisted? try later'],
    ['an escape and a DEL', '451 4.7.1 \u001b[31mgreylisted\u007f', '451 4.7.1 ?[31mgreylisted?'],
  ])(
    'with %s: the leg stays queued across a restart and is delivered when the server takes it',
    async (_what, reply, kept) => {
      const delivered: Buffer[] = [];
      let greylisting = true;
      const peer = await scripted((s) => serve(s, () => (greylisting ? reply : '250 2.1.5 ok'), delivered));
      const dir = await mkdtemp(join(tmpdir(), 'mailroute-reply-text-'));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      // an hour between tries: only the restart and the flush below try again
      let { spool, engine } = await startOn(dir);
      cleanups.push(() => engine.stop());
      const legs = [
        {
          server: localServer('legacy', peer.port),
          recipient: 'bob@example.com',
          role: 'primary',
          bounces: 'Notify',
        },
      ] as const;
      const r = await spool.accept(
        envelope([{ recipient: 'bob@example.com', legs: [...legs] }]),
        Readable.from([Buffer.from('Subject: t\r\n\r\nhello\r\n')]),
      );
      if (!r.ok) throw r.error;
      engine.notify(r.id);
      const deferred = await waitFor(
        async () => {
          const st = await spool.load(r.id);
          return st.ok && st.state.legs[0]?.state === 'deferred' ? st.state.legs[0] : undefined;
        },
        { what: 'the leg deferred with the reply' },
      );
      expect(deferred.lastReply).toBe(kept);

      // a rollout: the relay stops and starts again; the server takes mail now
      await engine.stop();
      greylisting = false;
      ({ spool, engine } = await startOn(dir));
      engine.flush();
      await waitFor(() => delivered.length === 1, { what: 'the message delivered after the restart' });
      await waitFor(async () => (await spool.list()).length === 0, { what: 'the message removed' });
      expect(delivered[0]?.toString()).toContain('hello');
      expect(await readdir(join(dir, 'quarantine'))).toEqual([]);
    },
  );

  it('a reply of almost a megabyte to each of nine recipients: kept short, so the state reads back after a restart', async () => {
    // 1,000 lines of 1,000 characters (the client reads replies up to 1 MiB); kept whole on nine legs the state grew
    // past what the spool reads back (8 MiB): the next start quarantined it and sent delivered legs again
    const huge = Array.from(
      { length: 1000 },
      (_, i) => `452${i < 999 ? '-' : ' '}4.2.2 ${'z'.repeat(990)}`,
    ).join('\r\n');
    const rcpts = Array.from({ length: 9 }, (_, i) => `u${i}@example.com`);
    const peer = await scripted(async (s) => {
      await s.hello(['8BITMIME']);
      for (;;) {
        const line = await s.line();
        if (line === undefined) return;
        if (line === 'QUIT') return s.reply('221 bye');
        if (line.startsWith('MAIL FROM:') || line === 'RSET') await s.reply('250 ok');
        else if (line.startsWith('RCPT TO:')) await s.write(`${huge}\r\n`);
        else if (line === 'DATA') await s.reply('554 5.5.1 no valid recipients');
        else throw new Error(`unexpected ${line}`);
      }
    });
    const dir = await mkdtemp(join(tmpdir(), 'mailroute-reply-text-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    let { spool, engine } = await startOn(dir);
    cleanups.push(() => engine.stop());
    const server = localServer('legacy', peer.port);
    const r = await spool.accept(
      envelope(
        rcpts.map((rc) => ({
          recipient: rc,
          legs: [{ server, recipient: rc, role: 'primary' as const, bounces: 'Notify' as const }],
        })),
      ),
      Readable.from([Buffer.from('Subject: t\r\n\r\nhello\r\n')]),
    );
    if (!r.ok) throw r.error;
    engine.notify(r.id);
    await waitFor(
      async () => {
        const st = await spool.load(r.id);
        return st.ok && st.state.legs.every((l) => l.state === 'deferred');
      },
      { what: 'nine legs deferred with the long reply' },
    );
    await engine.stop();
    await spool.close();
    ({ spool, engine } = await startOn(dir));
    const st = await spool.load(r.id);
    if (!st.ok) throw new Error(`after the restart: ${st.reason} ${st.error}`);
    expect(st.state.legs.map((l) => l.state)).toEqual(rcpts.map(() => 'deferred'));
    for (const l of st.state.legs) {
      expect(l.lastReply?.startsWith('452-4.2.2 zzz')).toBe(true);
      expect(l.lastReply?.length).toBeLessThan(1100);
    }
    expect(await readdir(join(dir, 'quarantine'))).toEqual([]);
  });
});
