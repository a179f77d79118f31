// A write-ahead log for the accept path, as a measurement (docs/perf.md "The journal's share"): one preallocated file
// opened with O_DSYNC and written in place at the next offset, from the start again at its end. Every record that
// arrives while a write is in flight goes into the next write (group commit), so one durable write serves every
// session waiting at that moment. Overwriting blocks that are already allocated changes no metadata the data depends
// on: an O_DSYNC write then needs no journal commit of the file system. No index, no recovery, no checkpoint: not a
// store. Used by bench/spool-log.bench.ts and the floor relay's `log` part (floor-relay.ts).
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

export interface AcceptLog {
  /** Resolves once the record is durable (with every record appended before the write that carried it). */
  append(record: readonly Buffer[]): Promise<void>;
  close(): Promise<void>;
}

/** Creates DIR/accept.log of `bytes` zero bytes (written and fsynced, its entry too) and opens it for appends. */
export async function openAcceptLog(dir: string, bytes = 64 * 1024 * 1024): Promise<AcceptLog> {
  const path = join(dir, 'accept.log');
  const init = await open(path, 'w');
  const zeros = Buffer.alloc(1024 * 1024);
  for (let off = 0; off < bytes; off += zeros.length) await init.write(zeros, 0, zeros.length, off);
  await init.sync();
  await init.close();
  const dirFh = await open(dir, 'r');
  await dirFh.sync();
  await dirFh.close();
  const fh: FileHandle = await open(path, fsConstants.O_WRONLY | fsConstants.O_DSYNC);
  let offset = 0;
  let writing = false;
  let pending: { data: Buffer[]; bytes: number; done: (() => void)[] } = { data: [], bytes: 0, done: [] };
  const flush = async (): Promise<void> => {
    writing = true;
    while (pending.data.length > 0) {
      const batch = pending;
      pending = { data: [], bytes: 0, done: [] };
      if (offset + batch.bytes > bytes) offset = 0;
      await fh.writev(batch.data, offset);
      offset += batch.bytes;
      for (const d of batch.done) d();
    }
    writing = false;
  };
  return {
    append(record) {
      return new Promise<void>((resolve) => {
        for (const b of record) {
          pending.data.push(b);
          pending.bytes += b.length;
        }
        pending.done.push(resolve);
        if (!writing) void flush();
      });
    },
    close: () => fh.close(),
  };
}
