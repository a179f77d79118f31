// The front half over real SMTP: open-relay refusal, mixed recipients, smuggling variants, size, loop, limits,
// Received header, disk full. Clients are raw sockets (exact bytes) and nodemailer; the spool is the real one.
import { constants as fsConstants } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import nodemailer from 'nodemailer';
import { RawSmtp } from './raw-client.ts';
import { directDomain, startInbound, type InboundHarness } from './inbound-harness.ts';
import { spoolFsWith } from '../support/spool-fs.ts';
import { makeSelfSigned } from '../support/tls.ts';

const MANIFESTS = directDomain('example.com', '127.0.0.1', 1);

async function sendRaw(
  port: number,
  rcpts: string[],
  content: string | Buffer,
): Promise<{ replies: string[]; final: string; after: string }> {
  const c = await RawSmtp.connect(port);
  try {
    const replies = await c.begin('sender@origin.test', rcpts);
    replies.push(await c.cmd('DATA'));
    c.write(content);
    const final = await c.reply();
    const after = final.startsWith('421') ? '' : await c.cmd('NOOP');
    return { replies, final, after };
  } finally {
    c.close();
  }
}

describe('inbound', () => {
  let h: InboundHarness;
  beforeAll(async () => {
    h = await startInbound(MANIFESTS);
  });
  afterAll(async () => {
    await h.close();
  });

  it('refuses an undeclared domain (no open relay) and keeps the accepted recipients of a mixed transaction', async () => {
    const before = (await h.spool.list()).length;
    const c = await RawSmtp.connect(h.port);
    const [greeting, ehlo, mail, ok1, bad, ok2, pct, bang, route] = await c.begin('a@origin.test', [
      'alice@example.com',
      'bob@evil.org',
      'carol@EXAMPLE.com',
      'user%evil.org@example.com',
      'evil.org!user@example.com',
      '@example.com:mallory@evil.org',
    ]);
    expect(greeting).toMatch(/^220 relay\.test ESMTP/);
    expect(ehlo).toMatch(/^250-relay\.test/);
    expect(ehlo).not.toMatch(/STARTTLS|AUTH/);
    expect(ehlo).toMatch(/PIPELINING/);
    expect(ehlo).toMatch(/8BITMIME/);
    expect(ehlo).toMatch(/SMTPUTF8/);
    expect(ehlo).toMatch(/ENHANCEDSTATUSCODES/);
    expect(ehlo).toMatch(/SIZE 1048576/);
    expect(mail).toMatch(/^250/);
    expect(ok1).toMatch(/^250 2\.1\.5/);
    expect(bad).toBe('554 5.7.1 relay access denied');
    expect(ok2).toMatch(/^250/);
    // routing chosen by the sender (the percent hack, a bang path): a managed server that honours it would relay to
    // evil.org for the relay it trusts, so it is refused as Postfix does by default (allow_untrusted_routing = no)
    expect(pct).toBe(
      '554 5.7.1 Relay access denied: sender-specified routing (%, ! or @ in the local part) is not accepted',
    );
    expect(bang).toMatch(/^554 5\.7\.1 Relay access denied: sender-specified routing/);
    expect(route).toMatch(/^554 5\.7\.1/); // source route ignored (RFC 5321 App. C): mallory@evil.org is refused
    expect(await c.cmd('DATA')).toMatch(/^354/);
    c.write('Subject: mixed\r\n\r\nhello\r\n.\r\n');
    const final = await c.reply();
    expect(final).toMatch(/^250 2\.0\.0 queued as [0-9a-z]{16}$/);
    c.close();
    const msgs = await h.spooled();
    expect(msgs.length).toBe(before + 1);
    const id = final.split(' ').pop();
    const m = msgs.find((x) => x.state.id === id);
    expect(
      m?.state.legs.map((l) => `${l.recipient}->${l.leg.recipient}@${l.leg.server.name}`).sort(),
    ).toEqual(['alice@example.com->alice@example.com@main', 'carol@example.com->carol@example.com@main']);
  });

  it('prepends exactly one Received: header and relays the rest byte for byte', async () => {
    const content =
      'DKIM-Signature: v=1; a=rsa-sha256; b=abc\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nline 1\r\n..leading dot\r\n\u00e9 8bit\r\n';
    const c = await RawSmtp.connect(h.port);
    await c.begin('a@origin.test', ['alice@example.com']);
    await c.cmd('DATA');
    c.write(`${content.replace(/\r\n\.\./g, '\r\n..')}.\r\n`);
    const final = await c.reply();
    c.close();
    expect(final).toMatch(/^250/);
    const id = final.split(' ').pop();
    const m = (await h.spooled()).find((x) => x.state.id === id);
    const body = m?.body.toString('latin1') ?? '';
    const received =
      /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby relay\.test \(mailroute\) with ESMTP id [^\r\n]+\r\n\tfor <alice@example\.com>;\r\n\t\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r\n/;
    expect(body).toMatch(received);
    expect(body.replace(received, '')).toBe(content.replace('..leading', '.leading'));
  });

  const smuggling: [string, string][] = [
    [
      'LF.LF',
      'Subject: s\r\n\r\nhi\n.\nMAIL FROM:<x@evil.org>\nRCPT TO:<y@example.com>\nDATA\nsmuggled\n.\n',
    ],
    ['CR.CR', 'Subject: s\r\n\r\nhi\r.\rMAIL FROM:<x@evil.org>\r'],
    ['LF.CRLF', 'Subject: s\r\n\r\nhi\n.\r\nMAIL FROM:<x@evil.org>\r\n'],
    ['CRLF.LF', 'Subject: s\r\n\r\nhi\r\n.\nMAIL FROM:<x@evil.org>\r\n'],
    ['bare LF in body', 'Subject: s\r\n\r\nline\nline\r\n'],
    ['bare CR in body', 'Subject: s\r\n\r\nline\rline\r\n'],
    ['bare LF in headers', 'Subject: s\nX-Injected: 1\r\n\r\nbody\r\n'],
  ];
  for (const [name, content] of smuggling) {
    it(`smuggling ${name}: refused 554 5.6.11 at the real end of DATA, nothing spooled, session still in sync`, async () => {
      const before = (await h.spool.list()).length;
      const r = await sendRaw(h.port, ['alice@example.com'], `${content}\r\n.\r\n`);
      expect(r.final).toMatch(/^554 5\.6\.11 /);
      expect(r.after).toMatch(/^250/); // the next command is answered in order: no smuggled command ran
      expect((await h.spool.list()).length).toBe(before);
    });
  }

  it('NUL in content: 554', async () => {
    const r = await sendRaw(h.port, ['alice@example.com'], 'Subject: n\r\n\r\na\u0000b\r\n.\r\n');
    expect(r.final).toMatch(/^554 5\.6\.0 /);
  });

  it('a declared SIZE over the limit gets 552 5.3.4 at MAIL FROM; a larger body gets 552 5.3.4 at the end of DATA', async () => {
    const c = await RawSmtp.connect(h.port);
    await c.reply();
    await c.cmd('EHLO client.test');
    expect(await c.cmd('MAIL FROM:<a@origin.test> SIZE=2000000')).toMatch(/^552 5\.3\.4 /);
    c.close();
    const before = (await h.spool.list()).length;
    const big = `Subject: big\r\n\r\n${`${'x'.repeat(998)}\r\n`.repeat(1100)}.\r\n`;
    const r = await sendRaw(h.port, ['alice@example.com'], big);
    expect(r.final).toMatch(/^552 5\.3\.4 /);
    expect(r.after).toMatch(/^250/);
    expect((await h.spool.list()).length).toBe(before);
  });

  it('a parameter the relay does not implement gets 555 5.5.4 naming it (DSN is not offered: NOTIFY=NEVER is not ignored)', async () => {
    const c = await RawSmtp.connect(h.port);
    await c.reply();
    expect(await c.cmd('EHLO client.test')).not.toMatch(/DSN/);
    expect(await c.cmd('MAIL FROM:<a@origin.test> RET=HDRS')).toMatch(
      /^555 5\.5\.4 Unsupported parameter RET/,
    );
    expect(await c.cmd('MAIL FROM:<a@origin.test> ENVID=abc123')).toMatch(
      /^555 5\.5\.4 Unsupported parameter ENVID/,
    );
    expect(await c.cmd('MAIL FROM:<a@origin.test> foo=bar')).toMatch(
      /^555 5\.5\.4 Unsupported parameter FOO/,
    );
    // what the relay implements is taken
    expect(await c.cmd('MAIL FROM:<a@origin.test> SIZE=100 BODY=8BITMIME')).toMatch(/^250 /);
    expect(await c.cmd('RCPT TO:<alice@example.com> NOTIFY=NEVER')).toMatch(
      /^555 5\.5\.4 Unsupported parameter NOTIFY/,
    );
    expect(await c.cmd('RCPT TO:<alice@example.com> ORCPT=rfc822;alice@example.com')).toMatch(
      /^555 5\.5\.4 Unsupported parameter ORCPT/,
    );
    expect(await c.cmd('RCPT TO:<alice@example.com>')).toMatch(/^250 /);
    c.close();
  });

  it("hop limit as Postfix counts it (the relay's own Received: included): 49 arriving is 554 5.4.6; 48 pass and leave with 49", async () => {
    const hops = (n: number): string =>
      'Received: from a by b; Sat, 28 Nov 2026 10:00:00 +0000\r\n'.repeat(n);
    const loop = await sendRaw(h.port, ['alice@example.com'], `${hops(49)}Subject: l\r\n\r\nx\r\n.\r\n`);
    expect(loop.final).toMatch(/^554 5\.4\.6 Too many hops/);
    const ok = await sendRaw(h.port, ['alice@example.com'], `${hops(48)}Subject: l\r\n\r\nhop48\r\n.\r\n`);
    expect(ok.final).toMatch(/^250 /);
    const stored = (await h.spooled()).find((m) => m.body.includes('hop48'));
    expect(stored?.body.toString('latin1').match(/^Received:/gim)).toHaveLength(49);
  });

  it('more recipients than --max-recipients: 452 4.5.3', async () => {
    const c = await RawSmtp.connect(h.port);
    const replies = await c.begin('a@origin.test', [
      'r1@example.com',
      'r2@example.com',
      'r3@example.com',
      'r4@example.com',
      'r5@example.com',
      'r6@example.com',
    ]);
    c.close();
    expect(replies.slice(3, 8).every((r) => r.startsWith('250'))).toBe(true);
    expect(replies[8]).toMatch(/^452 4\.5\.3 /);
  });

  it('a non-ASCII address without SMTPUTF8 gets 553 5.6.7 at MAIL FROM and RCPT TO; with SMTPUTF8 it passes', async () => {
    const before = (await h.spool.list()).length;
    const c = await RawSmtp.connect(h.port);
    // Commands as UTF-8 bytes, as a real client would send them.
    const utf8 = async (line: string): Promise<string> => {
      c.write(Buffer.from(`${line}\r\n`, 'utf8'));
      return c.reply();
    };
    try {
      expect(await c.reply()).toMatch(/^220 /);
      expect(await c.cmd('EHLO client.test')).toMatch(/^250/);
      expect(await utf8('MAIL FROM:<jörg@origin.test>')).toMatch(/^553 5\.6\.7 /);
      expect(await utf8('MAIL FROM:<a@bücher.test>')).toMatch(/^553 5\.6\.7 /);
      expect(await utf8('MAIL FROM:<a@origin.test>')).toMatch(/^250 /);
      expect(await utf8('RCPT TO:<ülrich@example.com>')).toMatch(/^553 5\.6\.7 /);
      expect(await utf8('RCPT TO:<alice@example.com>')).toMatch(/^250 /);
      expect(await c.cmd('RSET')).toMatch(/^250 /);
      expect(await utf8('MAIL FROM:<jörg@origin.test> SMTPUTF8')).toMatch(/^250 /);
      expect(await utf8('RCPT TO:<ülrich@example.com>')).toMatch(/^250 /);
      expect(await c.cmd('RSET')).toMatch(/^250 /);
    } finally {
      c.close();
    }
    expect((await h.spool.list()).length).toBe(before);
    const rejected = await h.metrics.registry.getSingleMetricAsString('mailroute_messages_rejected_total');
    expect(rejected).toMatch(/reason="NonAsciiAddress"/);
  });

  it('nodemailer sends through it (8BITMIME, SMTPUTF8 sender)', async () => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: h.port, secure: false, ignoreTLS: true });
    const info = await t.sendMail({
      from: 'jörg@origin.test',
      to: 'alice@example.com',
      subject: 'grüße',
      text: 'ünïcödé body',
    });
    t.close();
    expect(info.response).toMatch(/^250 2\.0\.0 queued as /);
    const accepted = (
      await h.metrics.registry.getSingleMetricAsString('mailroute_messages_accepted_total')
    ).match(/ (\d+)$/m)?.[1];
    expect(Number(accepted)).toBeGreaterThan(0);
    const rejected = await h.metrics.registry.getSingleMetricAsString('mailroute_messages_rejected_total');
    expect(rejected).toMatch(/reason="RelayDenied"/);
    expect(rejected).toMatch(/reason="BareLineFeed"/);
    expect(rejected).not.toMatch(/@/);
  });
});

describe('inbound limits', () => {
  it('connections per client IP beyond the limit get 421 4.7.0', async () => {
    const h = await startInbound(MANIFESTS, { maxConnectionsPerIp: 2 });
    try {
      const a = await RawSmtp.connect(h.port);
      const b = await RawSmtp.connect(h.port);
      expect(await a.reply()).toMatch(/^220/);
      expect(await b.reply()).toMatch(/^220/);
      const c = await RawSmtp.connect(h.port);
      expect(await c.reply()).toMatch(/^421 4\.7\.0 /);
      a.close();
      // a slot frees up when a connection closes
      const { waitFor } = await import('../support/wait.ts');
      await waitFor(() => h.inbound.connections <= 1, { what: 'connection count to drop' });
      const d = await RawSmtp.connect(h.port);
      expect(await d.reply()).toMatch(/^220/);
      b.close();
      c.close();
      d.close();
    } finally {
      await h.close();
    }
  });

  // Postfix's smtpd closes after 221 too. A client that keeps its side open (or resets it, as smtp-source does) must
  // not hold the slot: smtp-server alone half-closes and waits up to 5 s for the client's FIN.
  it('QUIT frees the connection at once: closed after the 221, without waiting for the client to close its side', async () => {
    const h = await startInbound(MANIFESTS, { maxConnectionsPerIp: 1 });
    const { waitFor } = await import('../support/wait.ts');
    const clients: RawSmtp[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const c = await RawSmtp.connect(h.port, '127.0.0.1', { allowHalfOpen: true });
        clients.push(c);
        expect(await c.reply()).toMatch(/^220/);
        expect(await c.cmd('EHLO client.test')).toMatch(/^250/);
        expect(await c.cmd('QUIT')).toMatch(/^221 /);
        await waitFor(() => c.isClosed || c.socket.readableEnded, {
          timeoutMs: 2_000,
          what: 'the relay to close its side after 221',
        });
        // the client's own side is still open, yet the relay has let the connection go
        expect(c.socket.writable).toBe(true);
        await waitFor(() => h.inbound.connections === 0, {
          timeoutMs: 2_000,
          what: 'the connection to leave the count while the client lingers',
        });
      }
    } finally {
      for (const c of clients) c.close();
      await h.close();
    }
  });

  it('a command pipelined after QUIT is not answered: the 221 arrives, then the connection ends', async () => {
    const h = await startInbound(MANIFESTS);
    try {
      const c = await RawSmtp.connect(h.port);
      expect(await c.reply()).toMatch(/^220/);
      c.write('QUIT\r\nMAIL FROM:<a@origin.test>\r\nNOOP\r\n');
      expect(await c.reply()).toMatch(/^221 /);
      expect(await c.reply()).toBe(''); // closed, nothing more answered
      c.close();
    } finally {
      await h.close();
    }
  });

  // `nc -N`, `printf ... | nc` and some scripts send the whole transaction and then their FIN at once. net.Server's
  // default ended the relay's side on that FIN, so the 250 written after the message was stored had nowhere to go:
  // the message was kept and delivered, and the client, which saw no 250, sent it again (RFC 5321 §4.1.1.4).
  it.each([
    ['with QUIT after the dot', 'QUIT\r\n', /^221 /],
    ['without QUIT (the relay closes once it owes nothing)', '', /^$/],
  ])('a client that half-closes after pipelining its message gets its 250, %s', async (_what, quit, last) => {
    const h = await startInbound(MANIFESTS);
    const { waitFor } = await import('../support/wait.ts');
    try {
      const before = (await h.spooled()).length;
      const c = await RawSmtp.connect(h.port, '127.0.0.1', { allowHalfOpen: true });
      expect(await c.reply()).toMatch(/^220/);
      expect(await c.cmd('EHLO client.test')).toMatch(/^250/);
      c.write(
        'MAIL FROM:<a@origin.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n' +
          `Subject: half-closed\r\n\r\nhello\r\n.\r\n${quit}`,
      );
      c.socket.end(); // the client's FIN, right after the last bytes
      expect(await c.reply()).toMatch(/^250/);
      expect(await c.reply()).toMatch(/^250/);
      expect(await c.reply()).toMatch(/^354/);
      expect(await c.reply()).toMatch(/^250 2\.0\.0 queued as [0-9a-z]{16}$/);
      expect(await c.reply(5_000)).toMatch(last);
      // the relay lets the connection go: at once after a 221, within the sweep's two seconds without one
      await waitFor(() => c.isClosed, {
        timeoutMs: 5_000,
        what: 'the relay to close the half-closed session',
      });
      expect((await h.spooled()).length).toBe(before + 1);
    } finally {
      await h.close();
    }
  });

  it('an early talker (command before the greeting) gets 421; a client that passed is greeted at once later', async () => {
    const h = await startInbound(MANIFESTS, { greetingDelayMs: 1000 });
    try {
      const early = await RawSmtp.connect(h.port);
      early.write('EHLO early.test\r\n');
      expect(await early.reply()).toMatch(/^421 .*talk too soon/);
      early.close();
      const polite = await RawSmtp.connect(h.port);
      expect(await polite.reply()).toMatch(/^220/);
      await polite.cmd('EHLO polite.test');
      expect(await polite.cmd('MAIL FROM:<a@origin.test>')).toMatch(/^250/);
      polite.close();
      // passed: the greeting now comes without the hold-back, well before the 1 s early-talker window could end
      const t0 = Date.now();
      const again = await RawSmtp.connect(h.port);
      expect(await again.reply()).toMatch(/^220/);
      expect(Date.now() - t0).toBeLessThan(700);
      again.close();
    } finally {
      await h.close();
    }
  });

  // op 'plan': only the write that carries the delivery plan (the trailer after the body, relay/spool/format.ts)
  type FaultOp = 'write' | 'plan' | 'sync';
  const faults: { name: string; file: string; op: FaultOp; code: string; reply: RegExp }[] = [
    {
      name: 'disk full writing the body',
      file: '.msg',
      op: 'write',
      code: 'ENOSPC',
      reply: /^452 4\.3\.1 /,
    },
    {
      name: 'disk full writing the plan',
      file: '.msg',
      op: 'plan',
      code: 'ENOSPC',
      reply: /^452 4\.3\.1 /,
    },
    { name: 'fsync failing (EIO)', file: '.msg', op: 'sync', code: 'EIO', reply: /^451 4\.3\.0 / },
  ];
  for (const f of faults) {
    it(`${f.name}: 4xx, nothing half-kept, earlier mail intact, accepted again once healthy`, async () => {
      let broken = false;
      const fail = (): Promise<never> =>
        Promise.reject(Object.assign(new Error(`${f.code}: injected`), { code: f.code }));
      const carriesPlan = (bufs: Uint8Array[]): boolean =>
        bufs.some((b) => Buffer.from(b).includes('mailroute-spool-v1'));
      const hit = (op: 'write' | 'sync', bufs: Uint8Array[] = []): boolean =>
        broken && (op === f.op || (op === 'write' && f.op === 'plan' && carriesPlan(bufs)));
      // A message that fits one write goes into the accept log alone: its body, its plan and its fsync are the log's
      // O_DSYNC write of its file's bytes (relay/spool/accept-log.ts); when that fails, the spool writes and fsyncs
      // the message file instead, which fails too on a full or failing disk.
      const durableWrite = (flags: string | number): boolean =>
        typeof flags === 'number' && (flags & fsConstants.O_DSYNC) !== 0;
      const fs = spoolFsWith((p, flags, fh) =>
        p.endsWith(f.file) || p.endsWith('.seg')
          ? {
              write: (d) => (hit('write', [d]) ? fail() : fh.write(d)),
              writev: (bufs, p) =>
                hit('write', bufs) || (durableWrite(flags) && hit('sync')) ? fail() : fh.writev(bufs, p),
              sync: () => (hit('sync') ? fail() : fh.sync()),
            }
          : {},
      );
      const h = await startInbound(MANIFESTS, {}, fs);
      try {
        const before = await sendRaw(h.port, ['alice@example.com'], 'Subject: before\r\n\r\nx\r\n.\r\n');
        expect(before.final).toMatch(/^250 /);
        broken = true;
        const r = await sendRaw(h.port, ['alice@example.com'], 'Subject: broken\r\n\r\nx\r\n.\r\n');
        expect(r.final).toMatch(f.reply);
        expect(r.after).toMatch(/^250/);
        const { readdir } = await import('node:fs/promises');
        const id = before.final.split(' ').pop() ?? '';
        expect(await h.spool.list()).toEqual([id]);
        // nothing of the refused message: the earlier one is in the log alone, or has its own file
        const files = await readdir(`${h.dir}/spool/queue`);
        expect(files.filter((n) => n !== `${id}.msg`)).toEqual([]);
        broken = false;
        const ok = await sendRaw(h.port, ['alice@example.com'], 'Subject: after\r\n\r\nx\r\n.\r\n');
        expect(ok.final).toMatch(/^250 /);
        const bodies = (await h.spooled()).map((m) => /Subject: (\w+)/.exec(m.body.toString())?.[1]).sort();
        expect(bodies).toEqual(['after', 'before']);
      } finally {
        await h.close();
      }
    });
  }

  it('--bare-lf normalize: bare LF/CR become CRLF and the relayed bytes hold no bare LF or CR', async () => {
    const h = await startInbound(MANIFESTS, { bareLf: 'normalize' });
    try {
      const r = await sendRaw(h.port, ['alice@example.com'], 'Subject: n\r\n\r\na\nb\rc\n.\nd\r\n.\r\n');
      expect(r.final).toMatch(/^250 /);
      const [m] = await h.spooled();
      const body = m?.body.toString('latin1') ?? '';
      expect(body.endsWith('Subject: n\r\n\r\na\r\nb\r\nc\r\n.\r\nd\r\n')).toBe(true);
      expect(/(?<!\r)\n|\r(?!\n)/.test(body)).toBe(false);
    } finally {
      await h.close();
    }
  });
});

describe('inbound timeouts and TLS', () => {
  it('--idle-timeout: a silent client gets 421 and is disconnected', async () => {
    const h = await startInbound(MANIFESTS, { idleTimeoutMs: 300 });
    try {
      const c = await RawSmtp.connect(h.port);
      expect(await c.reply()).toMatch(/^220/);
      expect(await c.reply(5000)).toMatch(/^421 /);
      c.close();
    } finally {
      await h.close();
    }
  });

  it('--data-timeout: a DATA phase that takes too long gets 421 4.4.2 and nothing is kept', async () => {
    const h = await startInbound(MANIFESTS, { dataTimeoutMs: 400, idleTimeoutMs: 30_000 });
    try {
      const c = await RawSmtp.connect(h.port);
      await c.begin('a@origin.test', ['alice@example.com']);
      expect(await c.cmd('DATA')).toMatch(/^354/);
      c.write('Subject: slow\r\n\r\nstill typing');
      expect(await c.reply(5000)).toMatch(/^421 4\.4\.2 /);
      c.close();
      expect(await h.spool.list()).toEqual([]);
    } finally {
      await h.close();
    }
  });

  it('STARTTLS with --tls-cert/--tls-key: advertised, and the Received: header says ESMTPS (nodemailer requireTLS)', async () => {
    const pem = makeSelfSigned('relay.test');
    const h = await startInbound(MANIFESTS, {
      tls: { key: Buffer.from(pem.key), cert: Buffer.from(pem.cert) },
    });
    try {
      const c = await RawSmtp.connect(h.port);
      await c.reply();
      expect(await c.cmd('EHLO client.test')).toMatch(/STARTTLS/);
      c.close();
      const t = nodemailer.createTransport({
        host: '127.0.0.1',
        port: h.port,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
      });
      const info = await t.sendMail({
        from: 'a@origin.test',
        to: 'alice@example.com',
        subject: 'tls',
        text: 'over TLS',
      });
      t.close();
      expect(info.response).toMatch(/^250 2\.0\.0 queued as/);
      const [m] = await h.spooled();
      expect(m?.body.toString()).toMatch(
        /^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.[23] with cipher \S+\)\r\n\tby relay\.test \(mailroute\) with ESMTPS id /,
      );
    } finally {
      await h.close();
    }
  });
});
