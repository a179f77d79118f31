// Spool folders of worker processes (relay/workers.ts) and the adoption of folders a previous run left behind.
//
// Layout with N workers: worker 0 uses the spool root itself (<spool>/queue, as a single process does), worker i > 0
// uses <spool>/w<i>/. A run with fewer workers than the previous one adopts the messages of every folder w<k>, k >= N,
// into the spool of worker k mod N before any worker starts.
//
// Adoption never loses a message that was answered 250: the folder's accept log is replayed first (every message it
// holds gets a durable file of its own), then each message is hard-linked into the target queue (its
// latest state file first, when it has one, then the message file), the target directory is fsynced, and only then
// are the source's message and state files unlinked. A crash in between leaves the message in both places (delivered
// twice at worst, as the guarantee allows), or a state file alone in the target (removed at the next start while the
// source still holds the message).
import type { Dirent } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import pino from 'pino';
import { replayAcceptLog } from './accept-log.ts';
import { classifyEntry, messageFile, stateFile } from './format.ts';
import { defaultSpoolFs, isQueueId } from './spool.ts';

const silent = pino({ level: 'silent' });

/** The spool folder of worker `index` (0: the root). */
export function workerSpoolDir(root: string, index: number): string {
  return index === 0 ? root : join(root, `w${index}`);
}

/** Worker folder indexes present under the spool root (w1, w2, ...). */
async function workerFolders(root: string): Promise<number[]> {
  let names: string[];
  try {
    names = await nodeFs.readdir(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: number[] = [];
  for (const n of names) {
    const m = /^w([1-9]\d{0,5})$/.exec(n);
    if (m?.[1]) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await nodeFs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function linkIfAbsent(from: string, to: string): Promise<void> {
  try {
    await nodeFs.link(from, to);
  } catch (err) {
    // Already linked by an adoption that was cut short (ids are unique per message).
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/** Moves every message (message file + state file, if any) of fromDir/queue into toDir/queue. Returns how many moved. */
export async function adoptQueue(fromDir: string, toDir: string, log: Logger = silent): Promise<number> {
  // The folder's accept log first: a message it holds may have no durable file of its own yet (accept-log.ts).
  await replayAcceptLog(fromDir, defaultSpoolFs, log, isQueueId);
  const src = join(fromDir, 'queue');
  const dst = join(toDir, 'queue');
  let entries: Dirent[];
  try {
    entries = await nodeFs.readdir(src, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  await nodeFs.mkdir(dst, { recursive: true });
  // Regular files only: a FIFO or a directory under a spool name stays behind (it cannot be hard-linked, and the
  // spool never reads one); the source folder's leftovers are not moved.
  const files = entries.filter((e) => e.isFile()).map((e) => e.name);
  const have = new Set(files);
  const ids: string[] = [];
  for (const n of files) {
    const e = classifyEntry(n, isQueueId);
    if (e.kind === 'message') ids.push(e.id);
  }
  if (ids.length === 0) return 0;
  for (const id of ids) {
    if (have.has(stateFile(id))) await linkIfAbsent(join(src, stateFile(id)), join(dst, stateFile(id)));
    await linkIfAbsent(join(src, messageFile(id)), join(dst, messageFile(id)));
  }
  await fsyncDir(dst);
  for (const id of ids) {
    await nodeFs.unlink(join(src, messageFile(id)));
    if (have.has(stateFile(id))) await nodeFs.unlink(join(src, stateFile(id)));
  }
  await fsyncDir(src);
  return ids.length;
}

/**
 * Before N workers start: the queues of worker folders k >= N move to worker k mod N. Leftover temp files and
 * quarantined files stay where they are (the temp files were never acknowledged).
 */
export async function adoptOrphanFolders(root: string, workers: number, log: Logger): Promise<number> {
  let total = 0;
  for (const k of await workerFolders(root)) {
    if (k < workers) continue;
    const from = workerSpoolDir(root, k);
    const to = workerSpoolDir(root, k % workers);
    const moved = await adoptQueue(from, to, log);
    total += moved;
    if (moved > 0) log.info({ from, to, messages: moved }, 'spool: adopted the queue of a former worker');
  }
  return total;
}
