// What the spool's file per message costs the whole machine, against a write-ahead log: the question behind
// docs/perf.md "The journal's share". N sessions accept messages at once, each waiting until its message is durable,
// in rounds that alternate four stores on the same file system:
//   - spool: the relay's spool (relay/spool), accept() then remove() as delivery does: per message a new file written
//     with O_DSYNC, a share of a directory fsync for its entry, then an unlink and a share of a directory fsync.
//   - files: the same file calls without the spool's code (open with O_DSYNC, one write, the directory fsync started
//     at the create and waited for, close; unlink and a shared directory fsync after).
//   - hybrid: files, but the file is written without O_DSYNC and without the directory fsync; the accept waits for
//     the same bytes appended to the log below instead. The removal as in files.
//   - log: the log alone (bench/relay/accept-log.ts): one preallocated file opened with O_DSYNC, written in place,
//     group-committed. Nothing is done per removal. A measurement, not a store: no index, no recovery, no checkpoint.
// Each message is the spool's bytes: the body, the initial state's JSON and the footer.
// Per store and round: accepts per second, p50/p99 from the body's end to durable, the process's CPU and the whole
// machine's (/proc/stat: every process and kernel thread, the file system's journal and the loop device included)
// per accept, and the journal commits per accept (/proc/fs/jbd2/DEVICE-*/info) when the file system has a journal.
// usage: node bench/spool-log.bench.ts --dir DIR [--sessions 20] [--messages 4000] [--size 4096] [--rounds 3]
import { execFileSync } from 'node:child_process';
import { constants as fsConstants, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, open, rm, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { encodeTrailer } from '../relay/spool/format.ts';
import { GroupSync } from '../relay/spool/group-sync.ts';
import { openAcceptLog, type AcceptLog } from './relay/accept-log.ts';
import { initialState, openSpool } from '../relay/spool/spool.ts';
import { dualEnvelope } from '../test/support/delivery.ts';

const { values: v } = parseArgs({
  options: {
    dir: { type: 'string' },
    sessions: { type: 'string', default: '20' },
    messages: { type: 'string', default: '4000' },
    size: { type: 'string', default: '4096' },
    rounds: { type: 'string', default: '3' },
  },
});
if (v.dir === undefined) throw new Error('--dir DIR: a folder on the file system to measure');
const sessions = Number(v.sessions);
const messages = Number(v.messages);
const rounds = Number(v.rounds);
const body = Buffer.alloc(Number(v.size), 'x');
const meta = dualEnvelope('sink', 'copy');
const CREATE = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL;

/** Busy jiffies of every CPU (all but idle and iowait), from /proc/stat's first line. */
function machineBusyMs(): number {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return ((user + nice + system + irq + softirq + steal) * 1000) / 100; // USER_HZ 100
}

/** The jbd2 info file of the file system that holds dir, if it has a journal. */
function journalInfo(dir: string): string | undefined {
  const source = execFileSync('findmnt', ['-no', 'SOURCE', '--target', dir], { encoding: 'utf8' }).trim();
  const dev = basename(source);
  const name = readdirSync('/proc/fs/jbd2').find((n) => n.startsWith(`${dev}-`));
  return name === undefined ? undefined : `/proc/fs/jbd2/${name}/info`;
}
const commits = (info: string | undefined): number =>
  info === undefined ? 0 : Number(/^(\d+) transactions/.exec(readFileSync(info, 'utf8'))?.[1] ?? 0);

type Store = { accept(): Promise<void>; close(): Promise<void> };

async function spoolStore(dir: string): Promise<Store> {
  const spool = await openSpool({ dir, logger: pino({ level: 'silent' }) });
  const removals = new Set<Promise<boolean>>();
  return {
    async accept() {
      const stream = new PassThrough();
      stream.end(body);
      const r = await spool.accept(meta, stream);
      if (!r.ok) throw r.error;
      // removed as delivery does, but not awaited by the accept (the session goes on to its next message)
      const removal = spool.remove(r.id);
      removals.add(removal);
      void removal.finally(() => removals.delete(removal));
    },
    async close() {
      await Promise.all(removals);
      await spool.close();
    },
  };
}

/**
 * The spool's file calls without its code: a file per message created with O_DSYNC and written in one call, a
 * directory fsync (group commit) started at the create and waited for, then closed; the removal unlinks and shares a
 * directory fsync, not waited for by the accept.
 */
function filesStore(dir: string, logged: AcceptLog | undefined): Store {
  const dirSync = new GroupSync(async () => {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  });
  const removals = new Set<Promise<void>>();
  let seq = 0;
  return {
    async accept() {
      const id = (seq++).toString(36).padStart(16, '0');
      const path = join(dir, `${id}.msg`);
      const data = [body, encodeTrailer(initialState(id, meta, body.length))];
      const fh = await open(path, logged === undefined ? CREATE | fsConstants.O_DSYNC : CREATE, 0o700);
      const entry = logged === undefined ? dirSync.sync() : undefined;
      await fh.writev(data);
      if (logged !== undefined) await logged.append(data);
      await entry;
      await fh.close();
      const removal = (async () => {
        await unlink(path);
        await dirSync.sync();
      })();
      removals.add(removal);
      void removal.finally(() => removals.delete(removal));
    },
    async close() {
      await Promise.all(removals);
      await logged?.close();
    },
  };
}

async function logStore(dir: string): Promise<Store> {
  const log = await openAcceptLog(dir);
  let seq = 0;
  return {
    accept() {
      const id = (seq++).toString(36).padStart(16, '0');
      return log.append([body, encodeTrailer(initialState(id, meta, body.length))]);
    },
    close: () => log.close(),
  };
}

const KINDS = ['spool', 'files', 'hybrid', 'log'] as const;
type Kind = (typeof KINDS)[number];

async function storeOf(kind: Kind, dir: string): Promise<Store> {
  switch (kind) {
    case 'spool':
      return spoolStore(dir);
    case 'files':
      return filesStore(dir, undefined);
    case 'hybrid':
      return filesStore(dir, await openAcceptLog(dir));
    case 'log':
      return logStore(dir);
  }
}

async function round(kind: Kind, info: string | undefined): Promise<Record<string, number | string>> {
  const dir = await mkdtemp(join(v.dir ?? '', `mailroute-${kind}-`));
  try {
    const store = await storeOf(kind, dir);
    const samples: number[] = [];
    let next = 0;
    const machine0 = machineBusyMs();
    const cpu0 = process.cpuUsage();
    const commits0 = commits(info);
    const t0 = performance.now();
    const session = async (): Promise<void> => {
      while (next < messages) {
        next++;
        const start = performance.now();
        await store.accept();
        samples.push(performance.now() - start);
      }
    };
    await Promise.all(Array.from({ length: sessions }, session));
    await store.close();
    const wallS = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const machineMs = machineBusyMs() - machine0;
    const commitCount = commits(info) - commits0;
    samples.sort((a, b) => a - b);
    const q = (p: number): number =>
      Number((samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] ?? 0).toFixed(2));
    return {
      store: kind,
      perSecond: Math.round(messages / wallS),
      p50: q(0.5),
      p99: q(0.99),
      processCpuUsPerAccept: Math.round((cpu.user + cpu.system) / messages),
      machineCpuUsPerAccept: Math.round((machineMs * 1000) / messages),
      journalCommitsPerAccept:
        info === undefined ? 'no journal' : Number((commitCount / messages).toFixed(2)),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const info = journalInfo(v.dir);
for (let r = 0; r < rounds; r++) {
  for (const kind of r % 2 === 0 ? KINDS : [...KINDS].reverse()) {
    console.log(
      JSON.stringify({ round: r + 1, sessions, messages, size: body.length, ...(await round(kind, info)) }),
    );
  }
}
