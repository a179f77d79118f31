// SMTP command fuzzing against the real relay process: random and hostile command lines (known and unknown verbs,
// broken addresses and parameters, binary and UTF-8, bare CR, NUL, lines up to 20 KiB, DATA in any state) are
// written to a socket, pipelined, followed by "\r\n.\r\nQUIT\r\n". For every session: the first reply is 220, every
// line the relay sends is a valid reply line (three digits 2xx-5xx, then space or hyphen), and the session ends (the
// relay closes it) within a deadline. After all sessions the process is alive, /healthz answers 200, its RSS growth is
// bounded, and a well-behaved client still gets 250. The samples come from fast-check with a printed seed
// (MAILROUTE_FUZZ_SEED reproduces a run).
import { Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  dualDestinations,
  relayArgs,
  type RelayChild,
  report,
  rssKb,
  rssSampler,
  scale,
  spawnRelay,
  submit,
} from './support.ts';

const SESSIONS = Number(process.env['MAILROUTE_FUZZ_SESSIONS'] ?? scale(10_000, 1000));
const PARALLEL = 8;
// RSS of the whole relay (primary and --workers processes): growth over the baseline during the run.
const RSS_GROWTH_LIMIT_KB = 200 * 1024;

const verb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      'EHLO',
      'HELO',
      'MAIL FROM:',
      'RCPT TO:',
      'DATA',
      'RSET',
      'NOOP',
      'VRFY',
      'EXPN',
      'HELP',
      'STARTTLS',
      'AUTH',
      'AUTH PLAIN',
      'BDAT',
      'XCLIENT',
      'XFORWARD',
      'ETRN',
      'TURN',
      'ehlo',
      'mail from:',
      'rcpt to:',
      'MAIL FROM: ',
      'RCPT TO: ',
      'MAIL',
      'RCPT',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
);
const arg = fc.oneof(
  fc.constantFrom(
    '',
    '<>',
    '<a@fuzz.test>',
    '<user@fuzz.test> SIZE=1000',
    '<user@fuzz.test> SIZE=99999999999999999999',
    '<user@fuzz.test> BODY=8BITMIME SMTPUTF8',
    '<user@fuzz.test> BODY=BINARYMIME',
    '<user@fuzz.test> RET=HDRS ENVID=x NOTIFY=NEVER',
    '<üser@fuzz.test> SMTPUTF8',
    '<user%other.test@fuzz.test>',
    '<@a.test,@b.test:user@fuzz.test>',
    '<"a b\\"c"@fuzz.test>',
    '<user@[127.0.0.1]>',
    '<user@[IPv6:::1]>',
    '<user@unmanaged.test>',
    '<<<>>>',
    '<a@b@c>',
    'user@fuzz.test',
    '0',
    '-1',
    '4294967296 LAST',
    '=',
    '*',
    '\0',
    'a\rb',
    '\x7f\x1b[2J',
  ),
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.integer({ min: 100, max: 20_000 }).map((n) => 'x'.repeat(n)),
);
const command = fc
  .tuple(verb, arg)
  .map(([v, a]) =>
    `${v}${v.endsWith(':') || v.endsWith(' ') || a === '' ? '' : ' '}${a}`.replace(/\n/g, ' '),
  );
// Half the sessions open a valid transaction first, so DATA (354) and fuzzed message content are reached too.
const VALID_START = ['EHLO fuzz.client', 'MAIL FROM:<s@origin.test>', 'RCPT TO:<r@fuzz.test>'];
const session = fc
  .tuple(fc.boolean(), fc.array(command, { minLength: 1, maxLength: 12 }))
  .map(([valid, cmds]) => (valid ? [...VALID_START, ...cmds] : cmds));

interface SessionResult {
  lines: string[];
  ms: number;
}

function runSession(port: number, commands: string[], deadlineMs: number): Promise<SessionResult> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const s = new Socket();
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new Error(`session not ended by the relay within ${deadlineMs} ms: ${JSON.stringify(commands)}`),
      );
    }, deadlineMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({
        lines: text.split('\r\n').filter((l, i, all) => l !== '' || i < all.length - 1),
        ms: Date.now() - t0,
      });
    });
    s.connect(port, '127.0.0.1', () => {
      const body = `${commands.join('\r\n')}\r\n\r\n.\r\nQUIT\r\n`;
      s.write(Buffer.from(body, 'utf8'));
    });
  });
}

describe('SMTP command fuzzing against the real relay', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let relay: RelayChild;

  beforeAll(async () => {
    let dir: string;
    ({ primary, copy, dir } = await dualDestinations('rel-fuzz', 'fuzz.test'));
    relay = await spawnRelay(
      relayArgs(dir, ['--idle-timeout', '2s', '--data-timeout', '3s', '--max-connections-per-ip', '100']),
    );
  });
  afterAll(async () => {
    if (relay && relay.proc.exitCode === null) {
      relay.kill('SIGKILL');
      await relay.exited;
    }
    await primary?.close();
    await copy?.close();
  });

  it(`${SESSIONS} fuzzed sessions: valid reply lines only, no crash, bounded memory, still serving`, async () => {
    const seed = Number(process.env['MAILROUTE_FUZZ_SEED'] ?? Date.now() % 2 ** 31);
    const samples = fc.sample(session, { numRuns: SESSIONS, seed });
    const rss = rssSampler(relay.pid);
    const t0 = Date.now();
    const codes = new Map<string, number>();
    const bad: { commands: string[]; line: string }[] = [];
    let lines = 0;
    let slowest = 0;
    /** Tree RSS (MiB) at five checkpoints through the run: a leak shows as a steady climb. */
    const rssCurve: number[] = [];
    for (let i = 0; i < samples.length; i += PARALLEL) {
      const batch = samples.slice(i, i + PARALLEL);
      const results = await Promise.all(batch.map((cmds) => runSession(relay.smtpPort, cmds, 15_000)));
      results.forEach((r, j) => {
        slowest = Math.max(slowest, r.ms);
        const cmds = batch[j] ?? [];
        if (!r.lines[0]?.startsWith('220 '))
          bad.push({ commands: cmds, line: `first: ${r.lines[0] ?? '(none)'}` });
        for (const line of r.lines) {
          lines++;
          if (!/^[2-5]\d\d(?:[ -]|$)/.test(line)) bad.push({ commands: cmds, line });
          else codes.set(line.slice(0, 3), (codes.get(line.slice(0, 3)) ?? 0) + 1);
        }
      });
      expect(relay.proc.exitCode, 'the relay process died').toBeNull();
      if ((i / PARALLEL) % Math.ceil(samples.length / PARALLEL / 5) === 0)
        rssCurve.push(Math.round(((await rssKb(relay.pid)) ?? 0) / 1024));
    }
    const { baselineKb, peakKb } = await rss.stop();
    const health = await fetch(`http://127.0.0.1:${relay.httpPort}/healthz`);
    const afterReply = await submit(relay.smtpPort, {
      from: 's@origin.test',
      to: 'after@fuzz.test',
      subject: 'after-fuzz',
      text: 'ok\n',
    });
    await waitFor(() => primary.messages.some((m) => m.rcptTo.includes('after@fuzz.test')), {
      timeoutMs: 10_000,
      what: 'the message after fuzzing',
    });
    report('smtp fuzz', {
      seed,
      sessions: samples.length,
      replyLines: lines,
      codes: Object.fromEntries([...codes].sort()),
      invalid: bad.length,
      slowestSessionMs: slowest,
      rssBaselineMiB: Math.round(baselineKb / 1024),
      peakRssMiB: Math.round(peakKb / 1024),
      rssGrowthMiB: Math.round((peakKb - baselineKb) / 1024),
      rssCurveMiB: rssCurve,
      seconds: Math.round((Date.now() - t0) / 100) / 10,
    });
    expect(bad.slice(0, 5)).toEqual([]);
    expect(health.status).toBe(200);
    expect(afterReply).toMatch(/^250 /);
    expect(peakKb - baselineKb).toBeLessThan(RSS_GROWTH_LIMIT_KB);
  });
});
