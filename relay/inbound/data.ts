// DATA phase: a streaming Transform between smtp-server's data stream and SpoolWriter.accept(). It prepends the one
// Received: header and runs the content checks (content.ts) on the way; the message is never held whole in memory.
// When a check fails mid-stream the stream to the spool is destroyed with the refusal (so nothing is kept), the rest
// of the client's data is still read and discarded, and the refusal is the answer at the end of DATA.
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { EnvelopeMeta, SpoolWriter } from '../spool/types.ts';
import { ContentScanner, type ContentLimits } from './content.ts';
import { REPLIES, type Refusal } from './verdict.ts';
import { safeDelay } from '../../routing/timer.ts';
import { isNoSpace } from '../../lib/errors.ts';

/** The body stream failed because a content check refused the message. */
class RefusedContent extends Error {
  readonly refusal: Refusal;
  constructor(refusal: Refusal) {
    super(refusal.reply.text);
    this.refusal = refusal;
  }
}

const LF = 0x0a;
const DOT = 0x2e;
/** A line that starts with a dot, after the first line. */
const LF_DOT = Buffer.from('\n.');
/**
 * Pieces shorter than this are joined before they go on, up to JOIN_AT bytes. smtp-server passes on the bytes before
 * every escaped dot as a piece of its own, so a body of `..` lines arrives as one 3-byte piece per line; kept one by
 * one (the spool holds a small body's pieces), each costs a Buffer object of about 100 bytes: 50 times the bytes.
 */
const SMALL_PIECE = 1024;
const JOIN_AT = 16 * 1024;

class MessageGuard extends Transform {
  readonly scanner: ContentScanner;
  private header: Buffer | undefined;
  private readonly onBytes: ((n: number, messageBytes: number) => void) | undefined;
  private streamed = 0;
  /** What was passed on: its last byte (-1: nothing yet), whether a line of it starts with a dot, whether it ended. */
  private lastOut = -1;
  private dotLine = false;
  private ended = false;
  /** Small pieces not yet passed on (SMALL_PIECE), and their bytes. */
  private held: Buffer[] = [];
  private heldBytes = 0;

  constructor(
    limits: ContentLimits,
    receivedHeader: Buffer,
    onBytes?: (n: number, messageBytes: number) => void,
  ) {
    super({ highWaterMark: 64 * 1024 });
    this.scanner = new ContentScanner(limits);
    this.header = receivedHeader;
    this.onBytes = onBytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.streamed += chunk.length;
    this.onBytes?.(chunk.length, this.streamed);
    this.pushHeader();
    const r = this.scanner.write(chunk);
    if (!r.ok) return cb(new RefusedContent(r.refusal));
    for (const b of r.out) this.piece(b);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    this.pushHeader();
    const r = this.scanner.end();
    if (!r.ok) return cb(new RefusedContent(r.refusal));
    for (const b of r.out) this.piece(b);
    this.release();
    this.ended = true;
    cb();
  }

  /** A piece of checked content: passed on as it is, or held to be joined with the next small ones. */
  private piece(b: Buffer): void {
    if (b.length >= SMALL_PIECE) {
      this.release();
      this.pass(b);
      return;
    }
    this.held.push(b);
    this.heldBytes += b.length;
    if (this.heldBytes >= JOIN_AT) this.release();
  }

  /** The held pieces passed on as one buffer. */
  private release(): void {
    if (this.held.length === 0) return;
    const joined = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held, this.heldBytes);
    this.held = [];
    this.heldBytes = 0;
    this.pass(joined);
  }

  /**
   * The bytes passed on can go after DATA's 354 as they are: the content checks let no bare CR or LF through (refused
   * or made CRLF), and this guard saw no line start with a dot and a last line that ends in LF. Asked by the spool
   * once the body has ended (relay/spool/wire-ready.ts).
   */
  wireReady(): boolean {
    return this.ended && !this.dotLine && this.lastOut === LF;
  }

  private pass(b: Buffer): void {
    if (b.length > 0) {
      if (
        !this.dotLine &&
        ((b[0] === DOT && (this.lastOut === LF || this.lastOut === -1)) || b.includes(LF_DOT))
      )
        this.dotLine = true;
      this.lastOut = b[b.length - 1] ?? this.lastOut;
    }
    this.push(b);
  }

  private pushHeader(): void {
    if (this.header === undefined) return;
    this.pass(this.header);
    this.header = undefined;
  }
}

export type DataOutcome = { verdict: 'accept'; id: string; size: number; normalized: number } | Refusal;

export interface DataDeps {
  spool: SpoolWriter;
  limits: ContentLimits;
  /**
   * The relay's Received: header as bytes (helo.ts receivedHeaderBytes: UTF-8), prepended as they are, outside the
   * content checks. The spool's size counts these bytes; the size limit counts the client's bytes only, and the hop
   * count adds one field for this header, whatever its length.
   */
  receivedHeader: Buffer;
  meta: EnvelopeMeta;
  /** Longest time the whole DATA phase may take; then the message is refused 421 4.4.2. */
  dataTimeoutMs: number;
  /** Called when the DATA timeout fires (the caller closes the connection). */
  onTimeout?: () => void;
  /** Told the size of every body chunk as it streams (the relay's buffer governor, relay/memory.ts). */
  onBodyBytes?: (n: number, messageBytes: number) => void;
}

/**
 * Streams one message from smtp-server to the spool. Resolves once the spool answered; by then the client's data
 * was read up to the end of DATA, or it is being drained (smtp-server waits for the end before it replies).
 */
export async function receiveData(source: Readable, deps: DataDeps): Promise<DataOutcome> {
  const guard = new MessageGuard(deps.limits, deps.receivedHeader, deps.onBodyBytes);
  let failure: Refusal | undefined;
  const drain = (): void => {
    source.unpipe(guard);
    source.resume();
  };
  guard.on('error', (err: Error) => {
    if (err instanceof RefusedContent) failure ??= err.refusal;
    drain();
  });
  // The client went away mid-message: fail the spool write, nothing is kept.
  const onSourceError = (err: Error): void => {
    failure ??= REPLIES.connectionLost();
    guard.destroy(err);
  };
  source.once('error', onSourceError);
  const onSourceClose = (): void => {
    if (!source.readableEnded) onSourceError(new Error('connection closed during DATA'));
  };
  source.once('close', onSourceClose);
  const timer = setTimeout(() => {
    failure ??= REPLIES.dataTimeout();
    guard.destroy(new RefusedContent(failure));
    deps.onTimeout?.();
  }, safeDelay(deps.dataTimeoutMs));
  timer.unref();
  // The DATA phase ends with the client's data; the wait for the spool's fsync is not part of it.
  source.once('end', () => clearTimeout(timer));
  source.pipe(guard);
  let result;
  try {
    result = await deps.spool.accept(deps.meta, guard, { wireReady: () => guard.wireReady() });
  } finally {
    clearTimeout(timer);
    source.removeListener('error', onSourceError);
    source.removeListener('close', onSourceClose);
  }
  if (result.ok) {
    if (failure) return failure; // cannot happen: a refused body never commits
    return {
      verdict: 'accept',
      id: result.id,
      size: guard.scanner.bytes,
      normalized: guard.scanner.normalized,
    };
  }
  drain();
  if (failure) return failure;
  if (result.error instanceof RefusedContent) return result.error.refusal;
  if (result.storage) return isNoSpace(result.error) ? REPLIES.diskFull() : REPLIES.spoolError();
  return REPLIES.spoolError();
}
