// The floor relay: the least a durable SMTP relay in Node does per message, for the benchmark's `floor` system
// (docs/perf.md, "A floor"). It speaks SMTP itself (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), writes each message
// and its envelope to one file, fsyncs the file and the queue directory (group commit) before the 250, delivers each
// leg over a pool of up to 20 connections per server with MAIL, RCPT and DATA in one write (PIPELINING) and the body
// in one more, then removes the file and fsyncs the directory again. No routing table, no state, no retries, no
// metrics, no limits (a line or a body is buffered whole, whatever its size): a failed leg is printed and the process
// exits 1. Not a relay for mail, a yardstick, for the benchmark's clients on 127.0.0.1.
//
// --with lists parts of the real relay to put in place of its own: smtp-server (inbound, with the relay's options),
// client (outbound: the relay's own SMTP client, relay/delivery/smtp-out/), nodemailer (outbound: nodemailer's pool as
// the relay used it until 5 December, relay/delivery/transport.ts; one of the two outbound parts at most), pino (the relay's logger: one line
// per accepted message and per leg), spool (relay/spool: the message file with its delivery plan, accepted and
// removed as the relay does), and log, which is not a part of the relay: each message file is written without an
// fsync and without the directory fsync, and the 250 waits for the same bytes appended to a group-committed write-ahead
// log instead (accept-log.ts); the removal unlinks and appends a removal record to the log, without waiting.
//
// --processes N runs N such processes on one port (SO_REUSEPORT), each with its own pools and queue files.
//
//   node bench/relay/floor-relay.ts --manifests DIR --listen 127.0.0.1:2525 --spool DIR [--with PARTS] [--processes N]
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { loadManifests } from '../../lib/manifests.ts';
import type { Leg, ServerRoute } from '../../routing/model.ts';
import { relayLikeSmtpServerOptions } from './smtp-server-options.ts';
import { GroupSync } from '../../relay/spool/group-sync.ts';
import { openAcceptLog } from './accept-log.ts';
import { formatManifestError } from '../../routing/parse.ts';
import {
  FLOOR_PARTS,
  floorLegs,
  floorPlan,
  fromWire,
  toWire,
  type FloorLeg,
  type FloorPlan,
} from './floor-plan.ts';

type Part = (typeof FLOOR_PARTS)[number];

/**
 * One accepted message and its bytes as they came in: dot-stuffed with the final dot (the floor's own inbound) or as
 * the message (smtp-server). The other form is made once, when a part needs it.
 */
interface Accepted {
  from: string;
  rcpts: string[];
  received: Buffer;
  dotStuffed: boolean;
  converted?: Buffer;
}
const wireOf = (m: Accepted): Buffer => (m.dotStuffed ? m.received : (m.converted ??= toWire(m.received)));
const rawOf = (m: Accepted): Buffer => (m.dotStuffed ? (m.converted ??= fromWire(m.received)) : m.received);

function fail(message: string): never {
  process.stderr.write(`floor: ${message}\n`);
  process.exit(1);
}

type Deliver = (leg: FloorLeg, m: Accepted) => Promise<void>;

/** Outbound: connections to one server, each carrying one transaction at a time. */
function rawOutbound(hostname: string): Deliver {
  interface Job {
    leg: FloorLeg;
    m: Accepted;
    done: () => void;
  }
  const pools = new Map<number, { queue: Job[]; idle: ((j: Job) => void)[]; conns: number }>();
  const openConnection = (port: number): void => {
    const pool = pools.get(port);
    if (pool === undefined) return;
    pool.conns++;
    const s: Socket = connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let pending = '';
    let replies: string[] = [];
    let want = 1;
    let onReplies: (r: string[]) => void = (greeting) => {
      if (!greeting[0]?.startsWith('220')) fail(`server on port ${port} greeted ${greeting[0] ?? ''}`);
      s.write(`EHLO ${hostname}\r\n`);
      expect(1, (ehlo) => {
        if (!ehlo[0]?.startsWith('250')) fail(`server on port ${port} answered EHLO ${ehlo[0] ?? ''}`);
        next();
      });
    };
    const expect = (n: number, then: (r: string[]) => void): void => {
      want = n;
      replies = [];
      onReplies = then;
    };
    const run = (j: Job): void => {
      let envelope = `MAIL FROM:<${j.m.from}>\r\n`;
      for (const r of j.leg.rcpts) envelope += `RCPT TO:<${r}>\r\n`;
      envelope += 'DATA\r\n';
      expect(2 + j.leg.rcpts.length, (r) => {
        const refused = r.find((line, i) => !line.startsWith(i === r.length - 1 ? '354' : '250'));
        if (refused !== undefined) fail(`server on port ${port} answered ${refused}`);
        expect(1, (end) => {
          if (!end[0]?.startsWith('250'))
            fail(`server on port ${port} answered the body with ${end[0] ?? ''}`);
          j.done();
          next();
        });
        s.write(wireOf(j.m));
      });
      s.write(envelope);
    };
    const next = (): void => {
      const j = pool.queue.shift();
      if (j) run(j);
      else pool.idle.push(run);
    };
    s.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl).replace(/\r$/, '');
        pending = pending.slice(nl + 1);
        if (line[3] === '-') continue; // a continuation line of a multi-line reply
        replies.push(line);
        if (replies.length === want) onReplies(replies);
      }
    });
    s.on('error', (err) => fail(`connection to port ${port}: ${err.message}`));
  };
  return (leg, m) =>
    new Promise<void>((done) => {
      let pool = pools.get(leg.port);
      if (pool === undefined) pools.set(leg.port, (pool = { queue: [], idle: [], conns: 0 }));
      const job = { leg, m, done };
      const idle = pool.idle.pop();
      if (idle) idle(job);
      else {
        pool.queue.push(job);
        if (pool.conns < 20) openConnection(leg.port);
      }
    });
}

/** Legs through one of the relay's outbound clients: its own (client) or nodemailer's pool (nodemailer). */
async function transportOutbound(hostname: string, which: 'client' | 'nodemailer'): Promise<Deliver> {
  const factory =
    which === 'client'
      ? (await import('../../relay/delivery/smtp-out/pool.ts')).smtpOutTransportFactory({ hostname })
      : (await import('../../relay/delivery/transport.ts')).nodemailerTransportFactory({ hostname });
  const transports = new Map<number, ReturnType<typeof factory>>();
  return async (leg, m) => {
    let t = transports.get(leg.port);
    if (t === undefined) {
      t = factory({ host: '127.0.0.1', port: leg.port, tls: 'None', maxConnections: 20 });
      transports.set(leg.port, t);
    }
    const raw = rawOf(m);
    const replies = await t.send({ from: m.from, to: [...leg.rcpts], raw, size: raw.length });
    for (const [rcpt, r] of replies)
      if (r.kind !== 'smtp' || r.code !== 250) fail(`leg to port ${leg.port}, ${rcpt}: ${r.text}`);
  };
}

/** The relay's spool (relay/spool/spool.ts) in place of the floor's one file per message. */
async function relaySpool(
  dir: string,
  plan: FloorPlan,
): Promise<{ accept(m: Accepted): Promise<string>; remove(id: string): Promise<boolean> }> {
  const { openSpool } = await import('../../relay/spool/spool.ts');
  const { createLogger } = await import('../../lib/logger.ts');
  const spool = await openSpool({ dir, logger: createLogger({ level: 'warn', format: 'json', base: {} }) });
  const server = (name: string, port: number): ServerRoute => ({
    name,
    host: '127.0.0.1',
    port,
    mx: false,
    tls: 'None',
    maxConnections: 20,
  });
  const primary = server('a', plan.primaryPort);
  const secondary = server('b', plan.secondaryPort ?? plan.primaryPort);
  return {
    async accept(m) {
      const legsOf = (rcpt: string): Leg[] =>
        floorLegs(plan, [rcpt]).map((leg, i) => {
          const to = leg.rcpts[0] ?? rcpt;
          const srv = leg.port === plan.primaryPort ? primary : secondary;
          return i === 0
            ? { role: 'primary', bounces: 'Notify', server: srv, recipient: to }
            : { role: 'copy', bounces: 'Suppress', server: srv, recipient: to };
        });
      const r = await spool.accept(
        {
          mailFrom: m.from,
          recipients: m.rcpts.map((recipient) => ({ recipient, legs: legsOf(recipient) })),
          clientAddress: '127.0.0.1',
          clientHostname: '',
          helo: 'floor',
          receivedAt: new Date().toISOString(),
          revision: 'floor',
          smtputf8: false,
          body8bit: false,
        },
        Readable.from([rawOf(m)]),
      );
      if (!r.ok) throw r.error;
      return r.id;
    },
    remove: (id) => spool.remove(id),
  };
}

type OnMessage = (m: Accepted) => Promise<void>;

/** Inbound, the floor's own: a session answers each command line as it comes; DATA ends at CRLF `.` CRLF. */
interface Listener {
  listen(o: { port: number; host: string; reusePort: boolean }): void;
}

function rawInbound(onMessage: OnMessage): Listener {
  const END = Buffer.from('\r\n.\r\n');
  return createServer((s) => {
    s.setNoDelay(true);
    s.on('error', () => undefined); // smtp-source resets after QUIT
    s.write('220 floor ESMTP\r\n');
    let from = '';
    let rcpts: string[] = [];
    let inData = false;
    let waiting = false;
    let buf: Buffer = Buffer.alloc(0);
    const addressIn = (line: string): string => /<([^>]*)>/.exec(line)?.[1] ?? '';
    const onBytes = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        if (waiting) return;
        if (inData) {
          // The DATA section begins right after the DATA line's CRLF, so CRLF `.` CRLF can also end an empty body:
          // search from 2 bytes before its start (the CRLF put in front of it at DATA).
          const end = buf.indexOf(END);
          if (end < 0) return;
          const wire = buf.subarray(2, end + END.length);
          buf = buf.subarray(end + END.length);
          inData = false;
          const m: Accepted = { from, rcpts, received: Buffer.from(wire), dotStuffed: true };
          // Commands pipelined behind the final dot (QUIT) wait for this message's reply.
          waiting = true;
          const resume = (reply: string): void => {
            s.write(reply);
            waiting = false;
            onBytes(Buffer.alloc(0));
          };
          onMessage(m).then(
            () => resume('250 2.0.0 Ok: queued\r\n'),
            (err: unknown) => resume(`451 4.3.0 ${err instanceof Error ? err.message : String(err)}\r\n`),
          );
          return;
        }
        const nl = buf.indexOf(10);
        if (nl < 0) return;
        const line = buf.subarray(0, nl).toString('latin1').replace(/\r$/, '');
        buf = buf.subarray(nl + 1);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') s.write('250-floor\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
        else if (verb === 'HELO') s.write('250 floor\r\n');
        else if (verb === 'MAIL') {
          from = addressIn(line);
          rcpts = [];
          s.write('250 2.1.0 Ok\r\n');
        } else if (verb === 'RCPT') {
          rcpts.push(addressIn(line));
          s.write('250 2.1.5 Ok\r\n');
        } else if (verb === 'DATA') {
          s.write('354 End data with <CR><LF>.<CR><LF>\r\n');
          inData = true;
          buf = Buffer.concat([Buffer.from('\r\n'), buf]);
        } else if (verb === 'RSET' || verb === 'NOOP') s.write('250 2.0.0 Ok\r\n');
        else if (verb === 'QUIT') {
          s.end('221 2.0.0 Bye\r\n');
          return;
        } else s.write('502 5.5.2 Command not implemented\r\n');
      }
    };
    s.on('data', onBytes);
  });
}

/** Inbound through smtp-server, with the options the relay gives it (relay/inbound/server.ts). */
async function smtpServerInbound(onMessage: OnMessage): Promise<Listener> {
  const { SMTPServer } = await import('smtp-server');
  return new SMTPServer({
    ...relayLikeSmtpServerOptions('floor'),
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const mailFrom = session.envelope.mailFrom;
        const m: Accepted = {
          from: mailFrom === false ? '' : mailFrom.address,
          rcpts: session.envelope.rcptTo.map((r) => r.address),
          received: Buffer.concat(chunks),
          dotStuffed: false,
        };
        onMessage(m).then(
          () => callback(null, 'Ok: queued'),
          (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
        );
      });
    },
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      manifests: { type: 'string' },
      listen: { type: 'string' },
      spool: { type: 'string' },
      with: { type: 'string' },
      processes: { type: 'string' },
      // what the benchmark also passes to `mailroute relay`; not used here
      http: { type: 'string' },
      admin: { type: 'string' },
      hostname: { type: 'string' },
    },
  });
  const need = (name: 'manifests' | 'listen' | 'spool'): string =>
    values[name] ?? fail(`--${name} is required`);
  const parts = new Set<Part>();
  for (const p of (values.with ?? '').split(',').filter((x) => x !== '')) {
    const known = FLOOR_PARTS.find((k) => k === p);
    if (known === undefined) fail(`--with: unknown part "${p}" (known: ${FLOOR_PARTS.join(', ')})`);
    parts.add(known);
  }
  if (parts.has('log') && parts.has('spool')) fail('--with: log and spool are both stores; name one of them');
  if (parts.has('client') && parts.has('nodemailer'))
    fail('--with: client and nodemailer are both outbound clients; name one of them');
  const processes = Number(values.processes ?? '1');
  if (!Number.isInteger(processes) || processes < 1 || processes > 16)
    fail(`--processes: ${values.processes ?? ''} is not a whole number from 1 to 16`);
  if (processes > 1 && process.env['FLOOR_CHILD'] === undefined) {
    // The parent only starts the N processes and ends them with itself.
    const children = Array.from({ length: processes }, () =>
      spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
        stdio: 'inherit',
        env: { ...process.env, FLOOR_CHILD: '1' },
      }),
    );
    for (const c of children)
      c.on('exit', (code) => {
        if (code !== 0 && code !== null) fail(`a process exited ${code}`);
      });
    process.on('SIGTERM', () => {
      for (const c of children) c.kill('SIGTERM');
      process.exit(0);
    });
    return;
  }
  // The project's loader: size limits, YAML and schema errors named by file and field.
  const loaded = await loadManifests([need('manifests')]);
  if (loaded.errors.length > 0) fail(loaded.errors.map(formatManifestError).join('\n'));
  let plan: FloorPlan;
  try {
    plan = floorPlan(loaded.objects);
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
  }
  const listen = /^(.*):(\d+)$/.exec(need('listen')) ?? fail('--listen: HOST:PORT');
  const queueDir = join(need('spool'), 'queue');
  mkdirSync(queueDir, { recursive: true });
  const dirHandle = await open(queueDir, 'r');
  const dirSync = new GroupSync(() => dirHandle.sync());
  let log: Logger | undefined;
  if (parts.has('pino')) {
    const { createLogger } = await import('../../lib/logger.ts');
    log = createLogger({ level: 'info', format: 'json', base: { component: 'floor' } });
  }
  const hostname = values.hostname ?? 'floor.localhost';
  const deliver = parts.has('client')
    ? await transportOutbound(hostname, 'client')
    : parts.has('nodemailer')
      ? await transportOutbound(hostname, 'nodemailer')
      : rawOutbound(hostname);
  let seq = 0;
  const store = parts.has('spool') ? await relaySpool(need('spool'), plan) : undefined;
  const acceptLog = parts.has('log') ? await openAcceptLog(need('spool')) : undefined;

  const onMessage: OnMessage = async (m) => {
    if (store !== undefined) {
      const id = await store.accept(m);
      log?.info({ id, from: m.from }, 'accepted');
      setImmediate(() => {
        void Promise.all(
          floorLegs(plan, m.rcpts).map((leg) =>
            deliver(leg, m).then(() => log?.info({ id, to: leg.rcpts }, 'delivered')),
          ),
        ).then(() => store.remove(id));
      });
      return;
    }
    const path = join(queueDir, `${process.pid}-${seq++}`);
    const fh = await open(path, 'wx', 0o600);
    const body = m.received;
    const data = [body, Buffer.from(JSON.stringify({ from: m.from, rcpts: m.rcpts }))];
    if (acceptLog !== undefined) {
      // durable in the log; the file's own bytes and entry reach the disk whenever the kernel writes them
      await fh.writev(data);
      await acceptLog.append([Buffer.from(path), ...data]);
    } else {
      const entry = dirSync.sync(); // the new entry, while the body is written
      await fh.writev(data);
      await fh.sync();
      await entry;
    }
    void fh.close();
    log?.info({ id: path, from: m.from, size: body.length }, 'accepted');
    // after the 250 (the caller writes it when this resolves): the legs, then the removal
    setImmediate(() => {
      const legs = floorLegs(plan, m.rcpts);
      void Promise.all(
        legs.map((leg) => deliver(leg, m).then(() => log?.info({ id: path, to: leg.rcpts }, 'delivered'))),
      )
        .then(() => unlink(path))
        .then(() =>
          acceptLog !== undefined ? void acceptLog.append([Buffer.from(`-${path}`)]) : dirSync.sync(),
        );
    });
  };
  const server = parts.has('smtp-server') ? await smtpServerInbound(onMessage) : rawInbound(onMessage);
  // With --processes N, each of N processes binds the port with SO_REUSEPORT and the kernel spreads the connections.
  server.listen({ port: Number(listen[2]), host: listen[1] ?? '127.0.0.1', reusePort: processes > 1 });
  process.on('SIGTERM', () => process.exit(0));
}

await main();
