// Security probes against the real relay process (dual mode for sec.test, STARTTLS with a self-signed certificate,
// --max-recipients 5, --max-line-length 1000). Destinations are smtp-server peers that record every envelope.
// - open relay: unmanaged domains, percent hack, source routes, quoted local parts, address literals, IDN/UTF-8
//   addresses (SMTPUTF8): a recipient whose domain is not managed is refused at RCPT, and every envelope recipient
//   that reaches a destination is on the managed domain;
// - SMTP smuggling (LF.LF, CR.CR, LF.CRLF, CRLF.LF, CR.LF, NUL) in reject mode and in normalize mode: no
//   destination ever sees a second (smuggled) message, its recipient, or a bare CR/LF;
// - STARTTLS command injection: commands pipelined after STARTTLS in the same packet get no reply, before or after
//   the handshake;
// - header injection through EHLO names: no injected header field at the destination, one Received: added;
// - header injection through an SMTPUTF8 recipient (č and Ċ, whose low bytes are CR and LF): the Received: header
//   arrives as UTF-8 bytes, with the recipient in it, and no field of the client's before the original ones;
// - oversized command and content lines, too many recipients.
import { Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawSmtp, code } from '../relay/raw-client.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { selfSignedFiles } from '../support/tls.ts';
import { rawHttp } from '../support/net.ts';
import { waitFor } from '../support/wait.ts';
import {
  isDsn,
  adminPort,
  dualDomain,
  queueTotal,
  relayArgs,
  report,
  ROOT,
  run,
  spawnRelay,
  subjectOf,
  tempDir,
  writeManifests,
  type RelayChild,
} from './support.ts';

const DOMAIN = 'sec.test';
/** münchen.test, a managed internationalised domain (A-label form, as the CRD requires). */
const IDN = 'xn--mnchen-3ya.test';

/** One transaction over a raw socket; DATA only when a recipient was accepted. Returns every reply. */
async function transact(
  port: number,
  opts: { ehlo?: string; from?: string; mailParams?: string; rcpts: string[]; content?: string | Buffer },
): Promise<{ ehlo: string; mail: string; rcpts: string[]; final?: string; after?: string }> {
  const c = await RawSmtp.connect(port);
  // Commands go out as UTF-8 (RawSmtp.cmd writes latin1), so SMTPUTF8 addresses are sent as a real client would.
  const cmd = async (line: string): Promise<string> => {
    c.write(Buffer.from(`${line}\r\n`, 'utf8'));
    return c.reply();
  };
  try {
    await c.reply();
    const ehlo = await cmd(`EHLO ${opts.ehlo ?? 'client.test'}`);
    const mail = await cmd(`MAIL FROM:<${opts.from ?? 'probe@origin.test'}>${opts.mailParams ?? ''}`);
    const rcpts: string[] = [];
    for (const r of opts.rcpts) rcpts.push(await cmd(`RCPT TO:<${r}>`));
    if (opts.content === undefined || !rcpts.some((r) => code(r) === 250)) return { ehlo, mail, rcpts };
    const d = await c.cmd('DATA');
    if (code(d) !== 354) return { ehlo, mail, rcpts, final: d };
    c.write(opts.content);
    const final = await c.reply();
    const after = final.startsWith('421') ? '' : await c.cmd('NOOP');
    return { ehlo, mail, rcpts, final, after };
  } finally {
    c.close();
  }
}

const hasBare = (b: Buffer): boolean => {
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x0d && b[i + 1] !== 0x0a) return true;
    if (b[i] === 0x0a && (i === 0 || b[i - 1] !== 0x0d)) return true;
  }
  return false;
};

describe('security probes', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  /** The --dsn-relay smarthost: DSNs to senders outside the managed domain go here (instead of the sender's MX). */
  let dsnPeer: SmtpPeer;
  let relay: RelayChild;
  let relayDir: string;
  let normalizing: RelayChild;
  const all = (): SmtpPeer['messages'] => [...primary.messages, ...copy.messages];

  beforeAll(async () => {
    primary = await startSmtpPeer('primary');
    copy = await startSmtpPeer('copy');
    dsnPeer = await startSmtpPeer('dsn');
    const dir = await tempDir('rel-sec');
    relayDir = dir;
    const dir2 = await tempDir('rel-sec-norm');
    const manifests = {
      'd.yaml': dualDomain(DOMAIN, primary.port, copy.port),
      'idn.yaml': dualDomain(IDN, primary.port, copy.port),
    };
    await writeManifests(join(dir, 'manifests'), manifests);
    await writeManifests(join(dir2, 'manifests'), manifests);
    const { cert, key } = selfSignedFiles(dir, 'relay.test');
    const common = [
      '--max-recipients',
      '5',
      '--max-line-length',
      '1000',
      '--tls-cert',
      cert,
      '--tls-key',
      key,
      '--dsn-relay',
      `127.0.0.1:${dsnPeer.port}`,
      '--command-timeout',
      '2s',
    ];
    relay = await spawnRelay(relayArgs(dir, common));
    normalizing = await spawnRelay(relayArgs(dir2, [...common, '--bare-lf', 'normalize']));
  });
  afterAll(async () => {
    for (const r of [relay, normalizing]) {
      if (r && r.proc.exitCode === null) {
        r.kill('SIGKILL');
        await r.exited;
      }
    }
    await primary?.close();
    await copy?.close();
    await dsnPeer?.close();
  });

  it('open-relay probes: unmanaged domains are refused at RCPT; nothing reaches a destination off the managed domain', async () => {
    // [recipient, must be refused?, MAIL FROM parameters]
    const probes: [string, boolean, string?][] = [
      ['user@unmanaged.test', true],
      ['user@UNMANAGED.TEST', true],
      [`user@${DOMAIN}.unmanaged.test`, true],
      [`user@unmanaged.test.${DOMAIN}`, true],
      ['user@unmanaged.test.', true],
      [`user%unmanaged.test@${DOMAIN}`, true],
      [`user%unmanaged.test`, true],
      [`user!unmanaged.test`, true],
      [`unmanaged.test!user@${DOMAIN}`, true],
      [`@${DOMAIN}:user@unmanaged.test`, true],
      [`@unmanaged.test:user@${DOMAIN}`, false],
      [`@a.test,@b.test:user@unmanaged.test`, true],
      [`"user@unmanaged.test"@${DOMAIN}`, true],
      [`"user@${DOMAIN}"@unmanaged.test`, true],
      [`user@${DOMAIN}@unmanaged.test`, true],
      ['user@[127.0.0.1]', true],
      ['user@[IPv6:::1]', true],
      ['postmaster@unmanaged.test', true],
      ['user@bücher.test', true, ' SMTPUTF8'],
      ['user@xn--bcher-kva.test', true],
      [`üser@${DOMAIN}`, false, ' SMTPUTF8'],
      [`USER@${DOMAIN.toUpperCase()}`, false],
    ];
    const results: { probe: string; rcpt: string; final?: string }[] = [];
    for (const [i, [rcpt, mustRefuse, params]] of probes.entries()) {
      const r = await transact(relay.smtpPort, {
        rcpts: [rcpt],
        ...(params !== undefined ? { mailParams: params } : {}),
        content: `Subject: probe-${i}\r\n\r\nopen relay probe\r\n.\r\n`,
      });
      const reply = r.rcpts[0] ?? '';
      results.push({
        probe: rcpt,
        rcpt: reply.slice(0, 9),
        ...(r.final ? { final: r.final.slice(0, 3) } : {}),
      });
      if (mustRefuse) expect(code(reply), `RCPT TO:<${rcpt}> got ${reply}`).toBeGreaterThanOrEqual(500);
    }
    await waitFor(async () => (await queueTotal(adminPort(relay))) === 0, {
      timeoutMs: 20_000,
      what: 'queue drained',
    });
    const delivered = all().filter((m) => /^probe-\d+$/.test(subjectOf(m.raw) ?? ''));
    const accepted = results.filter((r) => r.final === '250').length;
    expect(delivered.length).toBe(2 * accepted);
    for (const m of delivered) {
      for (const r of m.rcptTo)
        expect([DOMAIN, IDN], `envelope ${r}`).toContain(r.slice(r.lastIndexOf('@') + 1).toLowerCase());
    }
    report('security open-relay probes', {
      probes: probes.length,
      refusedAtRcpt: results.filter((r) => code(r.rcpt) >= 500).length,
      delivered: delivered.length,
      recipientsDelivered: [...new Set(delivered.flatMap((m) => m.rcptTo))],
      results,
    });
  });

  it('no backscatter: a primary 5xx for a sender on an unmanaged domain sends exactly one DSN, to the sender only (via --dsn-relay); the queue empties', async () => {
    primary.behaviour.rcpt = (a) =>
      a === `bounce@${DOMAIN}` ? { code: 550, message: '5.1.1 no such user' } : undefined;
    const dsns = (): SmtpPeer['messages'] =>
      dsnPeer.messages.filter((m) => m.raw.toString('latin1').includes('Subject: backscatter'));
    try {
      const r = await transact(relay.smtpPort, {
        from: 'victim@unmanaged.test',
        rcpts: [`bounce@${DOMAIN}`],
        content: 'Subject: backscatter\r\n\r\nx\r\n.\r\n',
      });
      expect(r.final).toMatch(/^250 /);
      // The copy leg is delivered; the primary leg fails for good; a DSN goes to the sender; the queue empties.
      await waitFor(() => copy.messages.some((m) => subjectOf(m.raw) === 'backscatter'), {
        timeoutMs: 10_000,
        what: 'the copy',
      });
      await waitFor(() => dsns().length > 0, { timeoutMs: 20_000, what: 'the DSN at the --dsn-relay peer' });
      await waitFor(
        async () => {
          const res = await fetch(`http://127.0.0.1:${adminPort(relay)}/queue`);
          return ((await res.json()) as { total: number }).total === 0;
        },
        { timeoutMs: 20_000, what: 'GET /queue empty' },
      );
      const [dsn, ...more] = dsns();
      expect(more).toEqual([]);
      expect(dsn?.mailFrom).toBe('');
      expect(dsn?.rcptTo).toEqual(['victim@unmanaged.test']);
      const text = dsn?.raw.toString('latin1') ?? '';
      expect(text).toMatch(/Content-Type: multipart\/report; report-type=delivery-status/i);
      expect(text).toMatch(/Final-Recipient: rfc822; ?bounce@sec\.test/i);
      expect(text).toMatch(/Status: 5\.1\.1/);
      // Never to the managed destinations.
      expect(all().filter(isDsn)).toEqual([]);
      expect(relay.logs.some((l) => l.includes('DSN not sent'))).toBe(false);
    } finally {
      primary.behaviour.rcpt = undefined;
    }
  });

  const SMUGGLED =
    'MAIL FROM:<evil@origin.test>\r\nRCPT TO:<victim@sec.test>\r\nDATA\r\nSubject: SMUGGLED\r\n\r\nevil\r\n';
  const variants: [string, string][] = [
    ['LF.LF', '\n.\n'],
    ['CR.CR', '\r.\r'],
    ['LF.CRLF', '\n.\r\n'],
    ['CRLF.LF', '\r\n.\n'],
    ['CR.LF', '\r.\n'],
    ['CR.CRLF', '\r.\r\n'],
    ['NUL', '\r\n.\0\r\n'],
    ['NUL-dot', '\r\n\0.\r\n'],
  ];
  for (const [mode, which] of [
    ['reject', () => relay],
    ['normalize', () => normalizing],
  ] as const) {
    it(`SMTP smuggling (${mode} mode): no destination sees a smuggled message or a bare CR/LF`, async () => {
      const outcome: Record<string, string> = {};
      for (const [name, seq] of variants) {
        const r = await transact(which().smtpPort, {
          rcpts: [`smug@${DOMAIN}`],
          content: `Subject: smug-${mode}-${name}\r\n\r\nhello${seq}${SMUGGLED}.\r\n`,
        });
        outcome[name] = r.final?.slice(0, 9) ?? '';
        if (mode === 'reject') expect(r.final, name).toMatch(/^554 5\.6\.(11|0) /);
        // The session is still in step: the next command is answered as itself.
        expect(r.after, name).toMatch(/^250/);
      }
      // A clean message after them, so there is something to wait for.
      const clean = await transact(which().smtpPort, {
        rcpts: [`smug@${DOMAIN}`],
        content: `Subject: smug-${mode}-clean\r\n\r\nclean\r\n.\r\n`,
      });
      expect(clean.final).toMatch(/^250 /);
      await waitFor(() => copy.messages.some((m) => subjectOf(m.raw) === `smug-${mode}-clean`), {
        timeoutMs: 10_000,
        what: 'the clean message on the copy leg',
      });
      await waitFor(async () => (await queueTotal(adminPort(which()))) === 0, {
        timeoutMs: 20_000,
        what: 'queue drained',
      });
      for (const m of all()) {
        expect(m.rcptTo).not.toContain(`victim@${DOMAIN}`);
        expect(subjectOf(m.raw)).not.toBe('SMUGGLED');
        expect(hasBare(m.raw), `bare CR/LF in ${subjectOf(m.raw) ?? '?'}`).toBe(false);
      }
      const seen = all().filter((m) => (subjectOf(m.raw) ?? '').startsWith(`smug-${mode}-`));
      report(`security smuggling ${mode}`, { replies: outcome, messagesAtDestinations: seen.length });
      // Each accepted message arrives once per leg; nothing else does.
      const accepted = Object.values(outcome).filter((f) => f.startsWith('250')).length + 1;
      expect(seen.length).toBe(2 * accepted);
    });
  }

  it('STARTTLS injection: commands pipelined after STARTTLS are discarded (no reply before or after the handshake)', async () => {
    const plain = new Socket();
    let buf = '';
    const onData = (c: Buffer): void => {
      buf += c.toString('latin1');
    };
    plain.on('data', onData);
    plain.on('error', () => undefined);
    await new Promise<void>((resolve) => plain.connect(relay.smtpPort, '127.0.0.1', resolve));
    const until = (re: RegExp, what: string): Promise<RegExpExecArray> =>
      waitFor(() => re.exec(buf) ?? undefined, { timeoutMs: 5000, what });
    await until(/^220 .*\r\n/, 'greeting');
    plain.write('EHLO client.test\r\n');
    await until(/250 [^\r\n]*\r\n$/, 'EHLO reply');
    expect(buf).toMatch(/STARTTLS/);
    buf = '';
    plain.write('STARTTLS\r\nHELP\r\nMAIL FROM:<injected@origin.test>\r\nRCPT TO:<injected@sec.test>\r\n');
    await until(/^220 [^\r\n]*\r\n/, 'the STARTTLS 220');
    const plaintextAfter220 = buf.replace(/^220 [^\r\n]*\r\n/, '');
    plain.removeListener('data', onData);
    // A plaintext reply to the injected commands would also break the handshake.
    const secure: TLSSocket = await new Promise((resolve, reject) => {
      const t = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: 'relay.test' }, () =>
        resolve(t),
      );
      t.once('error', reject);
    });
    let tbuf = '';
    secure.on('data', (c: Buffer) => (tbuf += c.toString('latin1')));
    secure.write('EHLO client.test\r\n');
    await waitFor(() => /(^|\n)\d{3} [^\r\n]*\r\n/.exec(tbuf), {
      timeoutMs: 5000,
      what: 'the first reply over TLS',
    });
    const firstTls = tbuf;
    tbuf = '';
    secure.write('MAIL FROM:<real@origin.test>\r\n');
    await waitFor(() => /\r\n$/.test(tbuf), { timeoutMs: 5000, what: 'MAIL FROM reply over TLS' });
    const mail = tbuf;
    secure.destroy();
    report('security STARTTLS injection', {
      plaintextAfter220: JSON.stringify(plaintextAfter220),
      firstTlsReply: firstTls.split('\r\n')[0],
      mailFromReply: mail.trim(),
    });
    expect(plaintextAfter220).toBe('');
    // The first thing answered over TLS is our EHLO (250-...), not HELP (214) or the injected MAIL/RCPT.
    expect(firstTls).toMatch(/^250[- ]/);
    expect(firstTls).not.toMatch(/^214|^503|^5\d\d/m);
    expect(mail).toMatch(/^250 /);
    expect(all().some((m) => m.mailFrom === 'injected@origin.test')).toBe(false);
  });

  it('header injection through EHLO names: no injected field at the destination, exactly one Received: added', async () => {
    // smtp-server refuses a name with whitespace or control characters (501); names without them are accepted
    // and go into the Received: header through sanitizeHelo.
    const names = [
      'evil.test\rX-Injected: yes',
      'evil.test X-Injected: yes',
      'evil.test\tX-Injected: yes',
      '[127.0.0.1]\x0bX-Injected: yes',
      'X-Injected:yes',
      '(X-Injected:yes)',
      'evil.test;X-Injected:yes',
      'evil.test)',
      'evil>X-Injected:yes<',
      '[127.0.0.1]X-Injected:yes',
      'ünïcode.test',
    ];
    const replies: Record<string, string> = {};
    for (const [i, name] of names.entries()) {
      const r = await transact(relay.smtpPort, {
        ehlo: name,
        rcpts: [`ehlo${i}@${DOMAIN}`],
        content: `Subject: ehlo-${i}\r\nX-Original: kept\r\n\r\nbody\r\n.\r\n`,
      });
      replies[JSON.stringify(name)] = `${r.ehlo.slice(0, 3)}/${r.final?.slice(0, 3) ?? '-'}`;
    }
    await waitFor(async () => (await queueTotal(adminPort(relay))) === 0, {
      timeoutMs: 20_000,
      what: 'queue drained',
    });
    const accepted = Object.values(replies).filter((r) => r.endsWith('/250')).length;
    const got = all().filter((m) => /^ehlo-\d+$/.test(subjectOf(m.raw) ?? ''));
    expect(accepted).toBeGreaterThan(0);
    expect(got.length).toBe(2 * accepted);
    for (const m of got) {
      const head = m.raw.subarray(0, m.raw.indexOf('\r\n\r\n')).toString('latin1');
      const fields = head.split(/\r\n(?![ \t])/);
      expect(fields.filter((f) => /^x-injected/i.test(f))).toEqual([]);
      expect(fields.filter((f) => /^received:/i.test(f)).length).toBe(1);
      expect(fields[0]).toMatch(/^Received: from /);
      expect(fields).toContain('X-Original: kept');
    }
    report('security EHLO header injection', { ehloReplies: replies, delivered: got.length });
  });

  // Before, the header went out as latin1, one byte per character: U+010D č became CR and U+010A Ċ became LF, so the
  // first recipient put two header fields of the client's choosing inside the relay's own trace, and josé came out
  // as the single byte 0xE9 (not UTF-8).
  it.each([
    [
      'forged fields inside the trace before',
      `"xčĊX-Spam-Flag:NOčĊX-Spam-Score:-9"@${DOMAIN}`,
      'utf8-rcpt-hostile',
    ],
    ['latin1 bytes before', `josé@${DOMAIN}`, 'utf8-rcpt-plain'],
  ])(
    'header injection through a UTF-8 recipient (%s): %s is in a Received: header of UTF-8 bytes with no CR, LF or NUL of the client, the only field before the original ones',
    async (_before, to, subject) => {
      const r = await transact(relay.smtpPort, {
        mailParams: ' SMTPUTF8',
        rcpts: [to],
        content: `Subject: ${subject}\r\nX-Original: kept\r\n\r\nbody\r\n.\r\n`,
      });
      expect(r.mail).toMatch(/^250 /);
      expect(r.rcpts[0], `RCPT TO:<${to}>`).toMatch(/^250 /);
      expect(r.final).toMatch(/^250 /);
      /** The relay's Received: field as each peer got it. */
      const seen: Record<string, string> = {};
      for (const p of [primary, copy]) {
        await waitFor(() => p.messages.some((m) => subjectOf(m.raw) === subject), {
          timeoutMs: 10_000,
          what: `${subject} at ${p.name}`,
        });
        const m = p.messages.find((x) => subjectOf(x.raw) === subject)!;
        expect(m.rcptTo).toEqual([to]);
        const head = m.raw.subarray(0, m.raw.indexOf('\r\n\r\n') + 2);
        // the relay's one Received: and then the original fields, nothing else
        const fields = head
          .toString('utf8')
          .slice(0, -2)
          .split(/\r\n(?![ \t])/);
        expect(fields.slice(1)).toEqual([`Subject: ${subject}`, 'X-Original: kept']);
        expect(fields[0]).toMatch(/^Received: from /);
        // the relay's field as bytes: up to the first CRLF that no folding white space follows
        const end = /\r\n(?![ \t])/.exec(head.toString('latin1'));
        expect(end).not.toBeNull();
        const received = head.subarray(0, end!.index + 2);
        seen[p.name] = received.toString('utf8');
        // exactly the header the relay writes, as UTF-8 bytes (with the session id and date the relay chose)
        const parts =
          /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby relay\.test \(mailroute relay\.test\) with ESMTP id (\S+)\r\n\tfor <.*>;\r\n\t([^\r\n]+ \+0000)\r\n$/.exec(
            received.toString('utf8'),
          );
        expect(parts, received.toString('utf8')).not.toBeNull();
        const [, id, date] = parts!;
        const want = `Received: from client.test ([127.0.0.1])\r\n\tby relay.test (mailroute relay.test) with ESMTP id ${id}\r\n\tfor <${to}>;\r\n\t${date}\r\n`;
        expect(received.toString('hex')).toBe(Buffer.from(want, 'utf8').toString('hex'));
        // valid UTF-8: a fatal decoder throws on anything else
        expect(new TextDecoder('utf-8', { fatal: true }).decode(received)).toBe(want);
        // no CR, LF or NUL but the field's own folds (every line break a CRLF, every line after the first starting
        // with a tab) and no other control byte
        expect(received.includes(0)).toBe(false);
        expect(hasBare(received)).toBe(false);
        const lines = received.subarray(0, -2).toString('latin1').split('\r\n');
        expect(lines.slice(1).every((l) => l.startsWith('\t'))).toBe(true);
        // eslint-disable-next-line no-control-regex
        expect(lines.some((l) => /[\x00-\x08\x0a-\x1f\x7f]/.test(l))).toBe(false);
        // and the body is there, byte for byte
        expect(m.raw.subarray(head.length).toString('latin1')).toBe('\r\nbody\r\n');
      }
      report(`security UTF-8 recipient header injection: ${subject}`, seen);
    },
  );

  it('oversized lines: a 20 KiB command line ends the session (421) and a 2,000-byte content line gets 554 5.6.0', async () => {
    const c = await RawSmtp.connect(relay.smtpPort);
    let longCommand: string;
    try {
      await c.reply();
      longCommand = await c.cmd(`EHLO ${'a'.repeat(20 * 1024)}`);
    } finally {
      c.close();
    }
    // smtp-server's command limit is 16 KiB: the session ends with 421 4.4.2 (or a 5xx / close), never a 2xx.
    const ended = longCommand === '' || code(longCommand) === 421 || code(longCommand) >= 500;
    expect(ended, `reply to a 20 KiB EHLO: ${longCommand}`).toBe(true);
    const r = await transact(relay.smtpPort, {
      rcpts: [`long@${DOMAIN}`],
      content: `Subject: long-line\r\n\r\n${'x'.repeat(2000)}\r\n.\r\n`,
    });
    expect(r.final).toMatch(/^554 5\.6\.0 /);
    expect(r.after).toMatch(/^250/);
    expect(relay.proc.exitCode).toBeNull();
    expect(all().some((m) => subjectOf(m.raw) === 'long-line')).toBe(false);
    report('security oversized lines', { command20KiB: longCommand.slice(0, 40), contentLine2000: r.final });
  });

  it('too many recipients: the 6th and later get 452 4.5.3; the message goes to the first 5 on both legs', async () => {
    const rcpts = Array.from({ length: 8 }, (_, i) => `many${i}@${DOMAIN}`);
    const r = await transact(relay.smtpPort, { rcpts, content: 'Subject: many-rcpts\r\n\r\nx\r\n.\r\n' });
    expect(r.rcpts.slice(0, 5).every((x) => code(x) === 250)).toBe(true);
    for (const x of r.rcpts.slice(5)) expect(x).toMatch(/^452 4\.5\.3 /);
    expect(r.final).toMatch(/^250 /);
    await waitFor(
      () =>
        [primary, copy].every((p) =>
          p.messages.some((m) => subjectOf(m.raw) === 'many-rcpts' && m.rcptTo.length > 0),
        ) &&
        new Set(
          all()
            .filter((m) => subjectOf(m.raw) === 'many-rcpts')
            .flatMap((m) => m.rcptTo),
        ).size >= 5,
      { timeoutMs: 10_000, what: 'many-rcpts on both legs' },
    );
    await waitFor(async () => (await queueTotal(adminPort(relay))) === 0, {
      timeoutMs: 20_000,
      what: 'queue drained',
    });
    for (const p of [primary, copy]) {
      const to = p.messages.filter((m) => subjectOf(m.raw) === 'many-rcpts').flatMap((m) => m.rcptTo);
      expect(to.sort()).toEqual(rcpts.slice(0, 5).sort());
    }
  });

  it('IDN (mail loss before): A-label senders get 250, the managed xn-- domain receives mail in any case, U-labels with SMTPUTF8 route to it; both legs get the A-label recipient, the primary the A-label sender', async () => {
    const cases: { from: string; to: string; params?: string; subject: string; want: string }[] = [
      { from: 'a@xn--bcher-kva.example', to: `idn1@${DOMAIN}`, subject: 'idn-1', want: `idn1@${DOMAIN}` },
      { from: 'a@xn--bcher-kva.example', to: `idn2@${IDN}`, subject: 'idn-2', want: `idn2@${IDN}` },
      { from: 'a@origin.test', to: `idn3@${IDN.toUpperCase()}`, subject: 'idn-3', want: `idn3@${IDN}` },
      { from: 'a@origin.test', to: 'idn4@xN--mNCHEN-3ya.test', subject: 'idn-4', want: `idn4@${IDN}` },
      {
        from: 'a@bücher.example',
        to: 'idn5@münchen.test',
        params: ' SMTPUTF8',
        subject: 'idn-5',
        want: `idn5@${IDN}`,
      },
    ];
    for (const c of cases) {
      const r = await transact(relay.smtpPort, {
        from: c.from,
        rcpts: [c.to],
        ...(c.params !== undefined ? { mailParams: c.params } : {}),
        content: `Subject: ${c.subject}\r\n\r\nidn\r\n.\r\n`,
      });
      expect(r.mail, `MAIL FROM:<${c.from}>`).toMatch(/^250 /);
      expect(r.rcpts[0], `RCPT TO:<${c.to}>`).toMatch(/^250 /);
      expect(r.final).toMatch(/^250 /);
    }
    for (const c of cases) {
      for (const p of [primary, copy]) {
        await waitFor(() => p.messages.some((m) => subjectOf(m.raw) === c.subject), {
          timeoutMs: 10_000,
          what: `${c.subject} at ${p.name}`,
        });
        const m = p.messages.find((x) => subjectOf(x.raw) === c.subject)!;
        expect(m.rcptTo).toEqual([c.want]);
        // the sender in A-label form (a U-label sender is relayed as xn--...); the copy, whose bounces are
        // suppressed, goes out with the null reverse path
        expect(m.mailFrom).toBe(p === copy ? '' : c.from.replace('bücher', 'xn--bcher-kva'));
      }
    }
  });

  it('admin API (browser reachable before): cross-origin POST, DNS-rebinding Host, DELETE without the token and oversized pages are refused; `mailroute queue` still works', async () => {
    const port = adminPort(relay);
    const probes = {
      crossOriginFlush: await rawHttp(port, 'POST', '/queue/flush', {
        'content-type': 'text/plain',
        origin: 'http://attacker.example',
      }),
      reboundList: await rawHttp(port, 'GET', '/queue', { host: `attacker.example:${port}` }),
      reboundDelete: await rawHttp(port, 'DELETE', '/queue/0000000000000abc', { host: 'attacker.example' }),
      deleteWithoutToken: await rawHttp(port, 'DELETE', '/queue/0000000000000abc', {}),
      flushWithoutToken: await rawHttp(port, 'POST', '/queue/flush', {}),
      hugePage: await rawHttp(port, 'GET', '/queue?limit=100000', {}),
    };
    expect(probes.crossOriginFlush.status).toBe(403);
    expect(probes.reboundList.status).toBe(421);
    expect(probes.reboundDelete.status).toBe(421);
    expect(probes.deleteWithoutToken.status).toBe(401);
    expect(probes.flushWithoutToken.status).toBe(401);
    expect(probes.hugePage.status).toBe(400);
    // the CLI, with the relay's spool folder, still lists, flushes and deletes
    const cli = (...args: string[]) =>
      run(process.execPath, [
        join(ROOT, 'bin/mailroute.js'),
        'queue',
        ...args,
        '--admin',
        `127.0.0.1:${port}`,
      ]);
    const list = await cli('list');
    expect(list.stdout).toMatch(/queue is empty|messages? \(/);
    const flush = await cli('flush', '--spool', join(relayDir, 'spool'));
    expect(flush.stdout).toMatch(/^flush requested: \d+ messages? queued/);
    await expect(cli('delete', '0000000000000abc', '--spool', join(relayDir, 'spool'))).rejects.toMatchObject(
      {
        stderr: expect.stringContaining('not in the queue (HTTP 404)') as unknown,
      },
    );
    await expect(cli('flush', '--spool', join(relayDir, 'elsewhere'))).rejects.toMatchObject({
      stderr: expect.stringContaining('cannot read the admin token') as unknown,
    });
    report('security admin API', Object.fromEntries(Object.entries(probes).map(([k, v]) => [k, v.status])));
  });

  it('slowloris (held its slot forever before): a client trickling a byte every 300 ms is cut off within --command-timeout 2s', async () => {
    const c = await RawSmtp.connect(relay.smtpPort);
    try {
      expect(code(await c.reply())).toBe(220);
      const line = 'EHLO slowloris.example';
      let i = 0;
      const t0 = Date.now();
      const drip = setInterval(() => {
        if (!c.isClosed) c.write(line[i++ % line.length] ?? 'x');
      }, 300);
      let reply: string;
      try {
        reply = await c.reply(10_000);
      } finally {
        clearInterval(drip);
      }
      const cutMs = Date.now() - t0;
      report('security slowloris', { cutAfterMs: cutMs, bytes: i, reply });
      expect(reply).toMatch(/^421 4\.4\.2 Command line not completed in time/);
      expect(cutMs).toBeLessThan(4000);
    } finally {
      c.close();
    }
  });
});
