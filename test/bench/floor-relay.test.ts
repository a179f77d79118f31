// The benchmark's floor relay (bench/relay/floor-relay.ts) against real SMTP peers: every leg of a message arrives
// byte for byte (dot lines, a body without its last CRLF, 8-bit bytes), the copy at the copy domain, split legs where
// the accounts say, and its queue is empty once the legs are delivered; alone and with the relay's smtp-server,
// nodemailer and pino in place of its own parts. Bad arguments end it with an error that names the flag.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mailrouteManifests } from '../../bench/relay/mailroute.ts';
import { COPY_DOMAIN } from '../../bench/relay/workloads.ts';
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
  stderr: () => string;
}

async function startFloor(
  dir: string,
  manifests: string,
  withParts: string,
  extra: string[] = [],
): Promise<Floor> {
  await mkdir(join(dir, 'manifests'), { recursive: true });
  await writeFile(join(dir, 'manifests', 'bench.yaml'), manifests);
  const port = await freePort();
  const spool = join(dir, 'spool');
  const args = [
    FLOOR,
    '--manifests',
    join(dir, 'manifests'),
    '--listen',
    `127.0.0.1:${port}`,
    '--spool',
    spool,
  ];
  if (withParts !== '') args.push('--with', withParts);
  args.push(...extra);
  const child = spawn(NODE, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        if (child.exitCode !== null) throw new Error(`floor exited: ${err}`);
        const s = connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      }),
    { what: 'the floor relay listening' },
  );
  return { port, spool, child, stderr: () => err };
}

/** A session written by hand: the body as given, then QUIT pipelined right behind the final dot. */
function rawSession(port: number, from: string, to: string, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let seen = '';
    const steps = [
      'EHLO t\r\n',
      `MAIL FROM:<${from}>\r\n`,
      `RCPT TO:<${to}>\r\n`,
      'DATA\r\n',
      `${data}QUIT\r\n`,
    ];
    s.on('data', (c: Buffer) => {
      seen += c.toString('latin1');
      const finals = seen.split('\r\n').filter((l) => /^\d{3} /.test(l)).length;
      const next = steps[finals - 1];
      if (next !== undefined) {
        steps[finals - 1] = '';
        if (next !== '') s.write(Buffer.from(next, 'latin1'));
      }
    });
    s.on('close', () => resolve(seen));
    s.on('error', reject);
  });
}

describe.each(['', 'smtp-server,nodemailer,pino', 'spool'])('floor relay (with: %j)', (withParts) => {
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
      withParts,
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
    await waitFor(async () => (await readdir(join(floor.spool, 'queue'))).length === 0, {
      what: 'an empty queue',
    });
    expect(floor.child.exitCode).toBeNull();
  });

  it('takes a body whose final dot arrives with QUIT in one packet', async () => {
    const before = a.messages.length;
    const seen = await rawSession(
      floor.port,
      's@origin.test',
      'v@bench.example',
      'Subject: raw\r\n\r\n..x\r\n.\r\n',
    );
    expect(seen).toMatch(/\r\n250 [^\r]*\r\n221 /);
    const m = await waitFor(() => a.messages[before], { what: 'the raw message' });
    expect(m.raw.toString('latin1')).toBe('Subject: raw\r\n\r\n.x\r\n');
  });
});

describe('floor relay: split, and bad arguments', () => {
  it('sends known recipients to the primary and the others to the secondary', async () => {
    const a = await startSmtpPeer('a');
    const b = await startSmtpPeer('b');
    const dir = await mkdtemp(join(tmpdir(), 'mailroute-floor-'));
    const floor = await startFloor(
      dir,
      mailrouteManifests({ root: dir, sinkA: a.port, sinkB: b.port, mode: 'Split', recipients: 1 }),
      '',
    );
    try {
      await submit(floor.port, {
        from: 's@o.test',
        to: ['known@bench.example', 'stranger@bench.example'],
        text: 'x',
      });
      await waitFor(() => a.messages.length === 1 && b.messages.length === 1, { what: 'the two split legs' });
      expect(a.messages[0]?.rcptTo).toEqual(['known@bench.example']);
      expect(b.messages[0]?.rcptTo).toEqual(['stranger@bench.example']);
    } finally {
      floor.child.kill('SIGKILL');
      await a.close();
      await b.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs as two processes on one port (SO_REUSEPORT), every message delivered once', async () => {
    const a = await startSmtpPeer('a');
    const dir = await mkdtemp(join(tmpdir(), 'mailroute-floor-'));
    const floor = await startFloor(
      dir,
      mailrouteManifests({ root: dir, sinkA: a.port, sinkB: a.port, mode: 'Direct', recipients: 1 }),
      '',
      ['--processes', '2'],
    );
    try {
      for (let i = 0; i < 8; i++)
        await submit(floor.port, { from: 's@o.test', to: `u${i}@bench.example`, text: `${i}` });
      await waitFor(() => a.messages.length === 8, { what: 'eight messages' });
      expect(new Set(a.messages.map((m) => m.rcptTo[0])).size).toBe(8);
    } finally {
      floor.child.kill('SIGTERM');
      await waitFor(() => floor.child.exitCode !== null || floor.child.signalCode !== null, {
        what: 'the floor gone',
      });
      await a.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [['--processes', '0'], '--processes: 0 is not a whole number from 1 to 16'],
    [['--with', 'postfix'], '--with: unknown part "postfix"'],
    [['--listen', '127.0.0.1:0', '--spool', '/tmp/x'], '--manifests is required'],
  ])('%j', async (args, message) => {
    const r = await runProcess(NODE, [FLOOR, ...args], { timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
  });
});
