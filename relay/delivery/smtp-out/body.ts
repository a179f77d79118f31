// Writing a message body after DATA's 354: a body held in memory encoded whole (once per body: the legs of a message
// share it) and written with the final dot line in one system call; a body file (bytes [start, size) of a spool file
// that has other data after size) read and encoded chunk by chunk, the file paused while the socket is full, its last
// chunk written with the dot line. A file that cannot be read in full fails the body: the dot line is then never
// written, so the server never takes a truncated message.
//
// Exports: writeBody(socket, body, done) -> stop(): done(undefined) once the dot line is written, done(failure) when
//   the file could not be read; stop() ends a file's reading (the transaction ended first).
import { createReadStream } from 'node:fs';
import type { Writable } from 'node:stream';
import type { MessageBody } from '../../spool/types.ts';
import { isWireReady } from '../../spool/wire-ready.ts';
import { DotStuffer, passWhole, stuffWhole } from './data-encoder.ts';
import { smtpFailure, type SmtpFailure } from './replies.ts';

const nothing = (): void => undefined;

/**
 * The encoding of each body held in memory, for as long as the body is: the legs of one message share the spool's
 * in-memory body (one Buffer, never changed after the accept), so a dual message is encoded once, not once per leg
 * (33 µs per 100 KiB leg: docs/perf.md). A body that needs no insert is its own encoding, so most entries hold no
 * second copy. A body the inbound content scan vouched for (relay/spool/wire-ready.ts) is not scanned again.
 */
const encoded = new WeakMap<Buffer, { data: Buffer; end: Buffer }>();

function stuffOnce(body: Buffer): { data: Buffer; end: Buffer } {
  let e = encoded.get(body);
  if (e === undefined) {
    e = isWireReady(body) ? passWhole(body) : stuffWhole(body);
    encoded.set(body, e);
  }
  return e;
}

export function writeBody(
  socket: Writable,
  body: MessageBody,
  done: (failure: SmtpFailure | undefined) => void,
): () => void {
  if (Buffer.isBuffer(body)) {
    const { data, end } = stuffOnce(body);
    // one system call for the body and the final dot line, neither copied
    socket.cork();
    if (data.length > 0) socket.write(data);
    socket.write(end);
    socket.uncork();
    done(undefined);
    return nothing;
  }
  const encoder = new DotStuffer();
  const start = body.start ?? 0;
  const expected = Math.max(0, body.size - start);
  const finish = (last: Buffer | undefined): void => {
    socket.cork();
    if (last !== undefined) socket.write(last);
    socket.write(encoder.end());
    socket.uncork();
    done(undefined);
  };
  if (expected === 0) {
    finish(undefined);
    return nothing;
  }
  const file = createReadStream(body.path, { start, end: body.size - 1 });
  /** The last chunk encoded, held back to go with the dot line. */
  let held: Buffer | undefined;
  let read = 0;
  let stopped = false;
  const onDrain = (): void => {
    if (!stopped) file.resume();
  };
  file.on('data', (chunk) => {
    if (stopped || !Buffer.isBuffer(chunk)) return;
    read += chunk.length;
    const previous = held;
    held = encoder.push(chunk);
    if (previous !== undefined && !socket.write(previous)) {
      file.pause();
      socket.once('drain', onDrain);
    }
  });
  file.on('end', () => {
    if (stopped) return;
    if (read !== expected) {
      done(smtpFailure('ESTREAM', `the body file ended after ${read} of ${expected} bytes`));
      return;
    }
    finish(held);
    held = undefined;
  });
  file.on('error', (err) => {
    if (!stopped) done(smtpFailure('ESTREAM', err.message));
  });
  return () => {
    stopped = true;
    socket.removeListener('drain', onDrain);
    file.destroy();
  };
}
