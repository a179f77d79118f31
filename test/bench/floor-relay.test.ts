// The benchmark's floor relay (bench/relay/floor-relay.ts) against real SMTP peers: every leg of a message arrives
// byte for byte (dot lines, a body without its last CRLF, 8-bit bytes, an A-label domain), the copy at the copy
// domain, split legs where the accounts say, and its queue is empty once the legs are delivered; alone and with the
// relay's smtp-server, SMTP client (its own, or nodemailer's as before), pino or spool in place of its own parts, and
// with its files made durable by a write-ahead log (log). Bad arguments and bad manifests end it
// with an error that names the flag or the file.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mailrouteManifests } from '../../bench/relay/mailroute.ts';
import { waitForSmtp } from '../../bench/relay/smtp-client.ts';
import { COPY_DOMAIN } from '../../bench/relay/workloads.ts';
import { RawSmtp } from '../relay/raw-client.ts';
import { NODE, ROOT, submit } from '../relay/relay-harness.ts';
import { freePort } from '../support/net.ts';
import { runProcess } from '../support/process.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';

const FLOOR = join(ROOT, 'bench/relay/floor-relay.ts');

interface Floor {
  port: number;
  spool: string;
  child: ChildProcess;
}

async function writeBenchManifests(dir: string, text: string): Promise<string> {
  await mkdir(join(dir, 'manifests'), { recursive: true });
  await writeFile(join(dir, 'manifests', 'bench.yaml'), text);
  return join(dir, 'manifests');
}

async function startFloor(dir: string, manifests: string, args: string[] = []): Promise<Floor> {
  const port = await freePort();
  const spool = join(dir, 'spool');
  const child = spawn(
    NODE,
    [
      FLOOR,
      '--manifests',
      await writeBenchManifests(dir, manifests),
      '--listen',
      `127.0.0.1:${port}`,
      '--spool',
      spool,
      ...args,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  try {
    await waitForSmtp(port, 20_000, () => child.exitCode === null);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${e instanceof Error ? e.message : String(e)}: ${err}`, { cause: e });
  }
  return { port, spool, child };
}

/** Peers a and b, a floor routing between them as `mode` says, torn down after fn. */
async function withFloor(
  mode: 'Direct' | 'Dual' | 'Split',
  args: string[],
  fn: (f: Floor, a: SmtpPeer, b: SmtpPeer) => Promise<void>,
): Promise<void> {
  const a = await startSmtpPeer('a');
  const b = await startSmtpPeer('b');
  const dir = await mkdtemp(join(tmpdir(), 'mailroute-floor-'));
  const floor = await startFloor(
    dir,
    mailrouteManifests({ root: dir, sinkA: a.port, sinkB: b.port, mode, recipients: 1 }),
    args,
  );
  try {
    await fn(floor, a, b);
  } finally {
    floor.child.kill('SIGTERM'); // with --processes, the parent ends its children
    await waitFor(() => floor.child.exitCode !== null || floor.child.signalCode !== null, {
      what: 'the floor gone',
    });
    await a.close();
    await b.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const queueEmpty = (f: Floor): Promise<boolean> =>
  waitFor(async () => (await readdir(join(f.spool, 'queue'))).length === 0, { what: 'an empty queue' });

describe.each(['', 'smtp-server,client,pino', 'smtp-server,nodemailer,pino', 'spool', 'log'])(
  'floor relay (with: %j)',
  (withParts) => {
    let a: SmtpPeer;
    let b: SmtpPeer;
    let dir: string;
    let floor: Floor;

    beforeAll(async () => {
      a = await startSmtpPeer('a');
      b = await startSmtpPeer('b');
      dir = await mkdtemp(join(tmpdir(), 'mailroute-floor-'));
      floor = await startFloor(
        dir,
        mailrouteManifests({ root: dir, sinkA: a.port, sinkB: b.port, mode: 'Dual', recipients: 1 }),
        withParts === '' ? [] : ['--with', withParts],
      );
    });
    afterAll(async () => {
      floor?.child.kill('SIGKILL');
      await a?.close();
      await b?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('delivers both legs of a dual message byte for byte, the copy at the copy domain, and empties its queue', async () => {
      const text = '.leading dot\r\n..two\r\n.\r\nbytes \xe9\xff\r\nlast line without CRLF';
      await submit(floor.port, { from: 's@origin.test', to: 'u@bench.example', subject: 'floor', text });
      const got = await waitFor(
        () => (a.messages.length >= 1 && b.messages.length >= 1 ? [a.messages[0], b.messages[0]] : undefined),
        {
          what: 'both legs',
        },
      );
      expect(got[0]?.rcptTo).toEqual(['u@bench.example']);
      expect(got[1]?.rcptTo).toEqual([`u@${COPY_DOMAIN}`]);
      expect(got[0]?.mailFrom).toBe('s@origin.test');
      expect(got[0]?.raw.equals(got[1]?.raw ?? Buffer.alloc(0))).toBe(true);
      const body = got[0]?.raw.toString('latin1') ?? '';
      expect(body).toContain('\r\n.leading dot\r\n..two\r\n.\r\nbytes');
      await queueEmpty(floor);
      expect(floor.child.exitCode).toBeNull();
    });

    it('takes a body whose final dot arrives with QUIT in one packet, and an A-label domain as it is', async () => {
      const before = a.messages.length;
      const c = await RawSmtp.connect(floor.port);
      try {
        const replies = await c.begin('s@xn--bcher-kva.example', ['v@bench.example']);
        expect(replies.every((r) => r.startsWith('2'))).toBe(true);
        expect(await c.cmd('DATA')).toMatch(/^354/);
        c.write('Subject: raw\r\n\r\n..x\r\n.\r\nQUIT\r\n');
        expect(await c.reply()).toMatch(/^250 /);
        expect(await c.reply()).toMatch(/^221 /);
      } finally {
        c.close();
      }
      const m = await waitFor(() => a.messages[before], { what: 'the raw message' });
      expect(m.mailFrom).toBe('s@xn--bcher-kva.example');
      expect(m.raw.toString('latin1')).toBe('Subject: raw\r\n\r\n.x\r\n');
    });
  },
);

describe('floor relay: split, and bad arguments', () => {
  it('sends known recipients to the primary and the others to the secondary', async () => {
    await withFloor('Split', [], async (floor, a, b) => {
      await submit(floor.port, {
        from: 's@o.test',
        to: ['known@bench.example', 'stranger@bench.example'],
        text: 'x',
      });
      await waitFor(() => a.messages.length === 1 && b.messages.length === 1, { what: 'the two split legs' });
      expect(a.messages[0]?.rcptTo).toEqual(['known@bench.example']);
      expect(b.messages[0]?.rcptTo).toEqual(['stranger@bench.example']);
    });
  });

  it('runs as two processes on one port (SO_REUSEPORT), every message delivered once', async () => {
    await withFloor('Direct', ['--processes', '2'], async (floor, a) => {
      for (let i = 0; i < 8; i++)
        await submit(floor.port, { from: 's@o.test', to: `u${i}@bench.example`, text: `${i}` });
      await waitFor(() => a.messages.length >= 8, { what: 'eight messages' });
      await queueEmpty(floor);
      expect(a.messages.map((m) => m.rcptTo[0]).sort()).toEqual(
        Array.from({ length: 8 }, (_, i) => `u${i}@bench.example`).sort(),
      );
    });
  });

  const dual = mailrouteManifests({ root: '/unused', sinkA: 2601, sinkB: 2602, mode: 'Dual', recipients: 1 });
  it.each([
    ['a YAML error', 'kind: MailDomain\n  spec: [\n', 'bench.yaml'],
    ['a mode the schema refuses', dual.replace('mode: Dual', 'mode: Mirror'), 'spec.mode'],
  ])('refuses manifests with %s, naming the file or field', async (_name, yaml, message) => {
    const dir = await mkdtemp(join(tmpdir(), 'mailroute-floor-'));
    try {
      const manifests = await writeBenchManifests(dir, yaml);
      const r = await runProcess(
        NODE,
        [FLOOR, '--manifests', manifests, '--listen', '127.0.0.1:1', '--spool', dir],
        {
          timeoutMs: 20_000,
        },
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(message);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [['--processes', '0'], '--processes: 0 is not a whole number from 1 to 16'],
    [['--with', 'postfix'], '--with: unknown part "postfix"'],
    [['--with', 'client,nodemailer'], '--with: client and nodemailer are both outbound clients'],
    [['--with', 'spool,log'], '--with: log and spool are both stores'],
    [['--listen', '127.0.0.1:0', '--spool', '/tmp/x'], '--manifests is required'],
  ])('%j', async (args, message) => {
    const r = await runProcess(NODE, [FLOOR, ...args], { timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
  });
});
