// The content checks of the DATA phase, as a pure incremental scanner (no streams, no I/O): feed it the message
// chunks that smtp-server emits (already dot-unstuffed, ending with the CRLF before "."), get back the bytes to
// relay or a refusal. Chunk boundaries never change the outcome (tested at every split point).
//
// - bare LF / bare CR anywhere: refused (554 5.6.11), or converted to CRLF in normalize mode (SMTP smuggling:
//   the relayed bytes never contain a bare LF or CR);
// - NUL: refused;
// - a line longer than maxLineLength: refused;
// - hop limit (Postfix's hopcount_limit, counted the same way): when the message's `Received:` fields plus the one
//   the relay prepends reach hopLimit, it is refused (554 5.4.6). With 50, a message arriving with 48 passes (it
//   leaves with 49) and one arriving with 49 is refused, exactly as Postfix 3.7 answers (measured: docs/relay.md);
// - a `Received:` field carrying this relay's own trace (trace.ts): a forwarding loop, refused (554 5.4.6) at its
//   first return;
// - more than maxBytes: refused (552 5.3.4);
// otherwise the bytes pass unchanged.
import type { BareLfMode } from '../config.ts';
import { REPLIES, type Refusal } from './verdict.ts';

export interface ContentLimits {
  bareLf: BareLfMode;
  maxBytes: number;
  /** Received: fields, the relay's own included, at which the message is refused as a loop (Postfix: 50). */
  hopLimit: number;
  maxLineLength: number;
  /** Does a Received: field's value carry this relay's trace (trace.ts traceMatcher)? Undefined: no trace check. */
  ownTrace?: (fieldValue: string) => boolean;
}

/** At most this much of a Received: field is looked at for the trace (the relay's own is a few hundred bytes). */
const TRACE_CAPTURE = 4096;
const SP = 0x20;
const HT = 0x09;

export type ScanResult = { ok: true; out: Buffer[] } | { ok: false; refusal: Refusal };

const CR = 0x0d;
const LF = 0x0a;
const NUL = 0x00;
const CRLF = Buffer.from('\r\n');
const RECEIVED = Buffer.from('received:');
/** A CR not followed by LF, or an LF not preceded by CR (no g flag: exec starts at 0 every time). */
const BARE_CR_OR_LF = /\r(?!\n)|(?<!\r)\n/;

export class ContentScanner {
  readonly limits: ContentLimits;
  /** Message bytes seen (as received, before normalization). */
  bytes = 0;
  receivedHeaders = 0;
  /** Bare CR/LF that were converted (normalize mode). */
  normalized = 0;
  private pendingCR = false;
  private inHeaders = true;
  private lineLen = 0;
  /** How much of "received:" the current header line matched; -1 once it cannot match. */
  private matchPos = 0;
  private failed: Refusal | undefined;
  /** The Received: field being read (for the trace check); null when the current field is not one. */
  private field: Buffer | null = null;
  private fieldLen = 0;
  private readonly isOwnTrace: ((value: string) => boolean) | undefined;

  /** Body lines that end in CRLF are checked with indexOf (native) instead of byte by byte. */
  private readonly fastLines: boolean;

  /** `byteByByte` turns the line fast path off: the reference the fast path is tested against. */
  constructor(limits: ContentLimits, opts: { byteByByte?: boolean } = {}) {
    this.limits = limits;
    this.fastLines = opts.byteByByte !== true;
    this.isOwnTrace = limits.ownTrace;
  }

  get refusal(): Refusal | undefined {
    return this.failed;
  }

  write(chunk: Buffer): ScanResult {
    if (this.failed) return { ok: false, refusal: this.failed };
    this.bytes += chunk.length;
    if (this.bytes > this.limits.maxBytes) return this.fail(REPLIES.tooLarge(this.limits.maxBytes));
    const out: Buffer[] = [];
    const normalize = this.limits.bareLf === 'normalize';
    let segStart = 0;
    let i = 0;
    if (this.pendingCR) {
      this.pendingCR = false;
      if (chunk[0] === LF) {
        out.push(CRLF);
        this.endOfLine();
        if (this.failed) return { ok: false, refusal: this.failed };
        i = 1;
        segStart = 1;
      } else {
        if (!normalize) return this.fail(REPLIES.bareLineFeed());
        this.normalized++;
        out.push(CRLF);
        this.endOfLine();
        if (this.failed) return { ok: false, refusal: this.failed };
      }
    }
    const n = chunk.length;
    if (this.fastLines && !this.inHeaders && chunk.indexOf(NUL, i) === -1) i = this.skipLines(chunk, i);
    for (; i < n; i++) {
      const b = chunk[i] as number;
      if (b === LF || b === CR) {
        if (b === CR) {
          if (i + 1 === n) {
            // decided by the next chunk (or the end)
            if (i > segStart) out.push(chunk.subarray(segStart, i));
            segStart = n;
            this.pendingCR = true;
            break;
          }
          if (chunk[i + 1] === LF) {
            i++;
            const inHeaders = this.inHeaders;
            this.endOfLine();
            if (this.failed) return { ok: false, refusal: this.failed };
            // the header section just ended: the rest of the chunk is body, for the fast path (the loop's i++ follows)
            if (inHeaders && !this.inHeaders && this.fastLines && chunk.indexOf(NUL, i + 1) === -1)
              i = this.skipLines(chunk, i + 1) - 1;
            continue;
          }
        }
        // a bare LF (not preceded by CR in this chunk: CRLF pairs are consumed at the CR) or a bare CR
        if (!normalize) return this.fail(REPLIES.bareLineFeed());
        this.normalized++;
        if (i > segStart) out.push(chunk.subarray(segStart, i));
        out.push(CRLF);
        segStart = i + 1;
        this.endOfLine();
        if (this.failed) return { ok: false, refusal: this.failed };
        continue;
      }
      if (b === NUL) return this.fail(REPLIES.nul());
      if (++this.lineLen > this.limits.maxLineLength)
        return this.fail(REPLIES.lineTooLong(this.limits.maxLineLength));
      if (this.inHeaders) {
        // a line that does not start with folding whitespace begins a new field: the Received: field read so far ends
        if (this.field !== null && this.lineLen === 1 && b !== SP && b !== HT && this.endField())
          return this.fail(REPLIES.mailLoop());
        if (this.field !== null) {
          if (this.fieldLen < TRACE_CAPTURE) this.field[this.fieldLen++] = b;
        } else if (this.matchPos >= 0) {
          // case-insensitive match of the field name at the start of a header line
          if ((b | 0x20) === RECEIVED[this.matchPos]) {
            this.matchPos++;
            if (this.matchPos === RECEIVED.length) {
              this.matchPos = -1;
              // ours would be one more
              if (++this.receivedHeaders + 1 >= this.limits.hopLimit)
                return this.fail(REPLIES.tooManyHops(this.limits.hopLimit));
              if (this.isOwnTrace) {
                this.field = Buffer.allocUnsafe(TRACE_CAPTURE);
                this.fieldLen = 0;
              }
            }
          } else {
            this.matchPos = -1;
          }
        }
      }
    }
    if (segStart === 0 && out.length === 0 && !this.pendingCR) return { ok: true, out: [chunk] };
    if (segStart < n) out.push(chunk.subarray(segStart, n));
    return { ok: true, out };
  }

  /**
   * Body fast path: consumes, from i, every whole line that is plainly fine (no NUL in the chunk, checked by the
   * caller; ends in CRLF; no other CR; not too long) and returns where the byte-by-byte loop must go on: at the first
   * line that is not plainly fine, or at the unfinished last line. Those bytes pass unchanged, so the loop's output
   * segment still starts at 0. Exactly the byte loop's result (a property test compares the two).
   *
   * When no line in the rest of the chunk can be too long (the line in progress plus every byte left fits the limit:
   * always with the default 64 KiB limit and socket-sized chunks), one regular expression over the rest read as
   * latin1 finds the first CR or LF outside a CRLF pair, and everything up to the last LF before it is consumed at
   * once: V8 runs the expression as native code, where two indexOf calls per line cost 85 µs per 100 KiB message
   * (docs/perf.md). Otherwise the lines are checked one by one.
   */
  private skipLines(chunk: Buffer, start: number): number {
    const max = this.limits.maxLineLength;
    const n = chunk.length;
    if (this.lineLen + (n - start) <= max) {
      // one byte, one character: text[k] is chunk[start + k]
      const text = chunk.toString('latin1', start, n);
      // a bare CR or LF; an LF at the rest's first byte is taken as bare (its CR, if any, lies before start), and so
      // is a CR at its last (its LF, if any, is in the next chunk): the byte loop decides both
      const bare = BARE_CR_OR_LF.exec(text);
      const limit = bare === null ? n : start + bare.index;
      const lastLf = limit > start ? chunk.lastIndexOf(LF, limit - 1) : -1;
      if (lastLf < start) return start;
      this.lineLen = 0;
      return lastLf + 1;
    }
    let i = start;
    for (;;) {
      const lf = chunk.indexOf(LF, i);
      if (lf <= i || chunk[lf - 1] !== CR) return i; // no LF, an empty line's bare LF, or a bare LF
      if (chunk.indexOf(CR, i) < lf - 1) return i; // a CR inside the line
      if (this.lineLen + (lf - 1 - i) > max) return i; // too long: the byte loop refuses at the exact byte
      this.lineLen = 0;
      i = lf + 1;
    }
  }

  /** The end of the message: a trailing CR is bare. */
  end(): ScanResult {
    if (this.failed) return { ok: false, refusal: this.failed };
    // a message that is all header: its last field ends here
    if (this.field !== null && this.endField()) return this.fail(REPLIES.mailLoop());
    if (!this.pendingCR) return { ok: true, out: [] };
    this.pendingCR = false;
    if (this.limits.bareLf !== 'normalize') return this.fail(REPLIES.bareLineFeed());
    this.normalized++;
    return { ok: true, out: [CRLF] };
  }

  private endOfLine(): void {
    if (this.inHeaders && this.lineLen === 0) {
      this.inHeaders = false;
      if (this.field !== null && this.endField()) this.fail(REPLIES.mailLoop());
    } else if (this.field !== null && this.fieldLen < TRACE_CAPTURE) {
      this.field[this.fieldLen++] = SP; // the line break of a folded field
    }
    this.lineLen = 0;
    this.matchPos = this.inHeaders ? 0 : -1;
  }

  /** The Received: field just ended: true when it carries this relay's own trace. */
  private endField(): boolean {
    const value = this.field?.toString('latin1', 0, this.fieldLen) ?? '';
    this.field = null;
    return this.isOwnTrace?.(value) === true;
  }

  private fail(refusal: Refusal): ScanResult {
    this.failed = refusal;
    return { ok: false, refusal };
  }
}
