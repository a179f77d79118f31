// The DATA encoder: a message body as it goes on the wire after "354", byte for byte what nodemailer's encoder sends
// (smtp-connection/data-stream.js, the algorithm relay/delivery/dot-stuffing.test.ts keeps as its reference): a dot
// at the start of a line doubled, a bare LF and a bare CR made CRLF (a dot after a bare CR is stuffed too, so that a
// receiver that ends lines at a lone CR cannot be made to see an end of data: SMTP smuggling), and the final dot line
// with a CRLF before it when the body does not end with one. The state across chunks is the last input byte, so a body
// read from its file in chunks encodes as the whole body would. Pure.
//
// The positions that need an insert are found by one regular expression over the chunk read as latin1 (one byte, one
// character), the first byte checked against the previous chunk's last apart: V8 runs it as native code, where a loop over the
// candidates (every line end, three indexOf calls each) cost 256 µs per leg on a 100 KiB body against 32 µs
// (docs/perf.md). A body that needs no insert, the usual case, is passed on as it is.
//
// Exports:
//   DotStuffer: push(chunk) -> its encoding (the chunk itself when nothing is inserted), end() -> the final dot line.
//   stuffWhole(body): { data, end } for a body held whole in memory.
//   passWhole(body): the same for a body its writer vouched needs no insert (relay/spool/wire-ready.ts), unscanned.

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
/** The last byte before the data: a dot there starts a line, and no CR precedes an LF there. */
const START = -1;

const INSERT_CR = Buffer.from('\r');
const INSERT_LF = Buffer.from('\n');
const INSERT_LF_DOT = Buffer.from('\n.');
const INSERT_DOT = Buffer.from('.');
const END_AFTER_LF = Buffer.from('.\r\n');
const END_AFTER_CR = Buffer.from('\n.\r\n');
const END = Buffer.from('\r\n.\r\n');

/**
 * In a chunk: a bare CR (not followed by LF), an LF with a dot after it, a bare LF. The dot is tried before the bare
 * LF so that an LF with a dot after it is one match (its own bareness is checked apart).
 */
const NEEDS_INSERT = /\r(?!\n)|\n\.|(?<!\r)\n/g;

export class DotStuffer {
  private last = START;

  /** The chunk encoded; the chunk itself (not copied) when nothing had to be inserted. */
  push(chunk: Buffer): Buffer {
    const len = chunk.length;
    if (len === 0) return chunk;
    const last = this.last;
    this.last = chunk[len - 1]!;
    const first = chunk[0]!;
    // the first byte, after the previous chunk's last: the one place the expression cannot see
    let head: Buffer | undefined;
    if (last === CR && first !== LF) head = first === DOT ? INSERT_LF_DOT : INSERT_LF;
    else if (first === DOT && (last === LF || last === START)) head = INSERT_DOT;
    // one byte, one character: text[i] is chunk[i]
    const text = chunk.toString('latin1');
    // test(), not exec(): no match object per insert (a body of dot lines has one per line); which alternative
    // matched is read from the character before lastIndex
    NEEDS_INSERT.lastIndex = 0;
    let found = NEEDS_INSERT.test(text);
    if (!found && head === undefined) return chunk;
    // where to insert what, in order: numbers and shared buffers, no slice of the chunk per insert
    const at: number[] = [];
    const what: Buffer[] = [];
    let size = len;
    const add = (i: number, insert: Buffer): void => {
      at.push(i);
      what.push(insert);
      size += insert.length;
    };
    if (head !== undefined) add(0, head);
    /** An LF at i is bare: no CR before it (at 0: the previous chunk's last byte). */
    const bareLf = (i: number): boolean => (i > 0 ? text.charCodeAt(i - 1) !== CR : last !== CR);
    for (; found; found = NEEDS_INSERT.test(text)) {
      const endAt = NEEDS_INSERT.lastIndex;
      const c = text.charCodeAt(endAt - 1);
      if (c === CR) {
        // a bare CR: a line end before chunk[i + 1], which is stuffed if it is a dot; a CR that is the chunk's last
        // byte is left to the next chunk (its first byte decides)
        if (endAt >= len) break;
        add(endAt, text.charCodeAt(endAt) === DOT ? INSERT_LF_DOT : INSERT_LF);
      } else if (c === LF) {
        if (bareLf(endAt - 1)) add(endAt - 1, INSERT_CR);
      } else {
        // an LF (bare or not) and a dot that starts a line
        const i = endAt - 2;
        if (bareLf(i)) add(i, INSERT_CR);
        add(i + 1, INSERT_DOT);
      }
    }
    if (at.length === 0) return chunk;
    const out = Buffer.allocUnsafe(size);
    let o = 0;
    let from = 0;
    for (let k = 0; k < at.length; k++) {
      const i = at[k]!;
      o += chunk.copy(out, o, from, i);
      o += what[k]!.copy(out, o);
      from = i;
    }
    chunk.copy(out, o, from);
    return out;
  }

  /** The final dot line, with the line end the body still needs before it. Shared buffers: never write into them. */
  end(): Buffer {
    if (this.last === LF) return END_AFTER_LF;
    if (this.last === CR) return END_AFTER_CR;
    return END;
  }
}

/** A whole body encoded: the data (the body itself when nothing is inserted) and the final dot line. */
export function stuffWhole(body: Buffer): { data: Buffer; end: Buffer } {
  const s = new DotStuffer();
  const data = s.push(body);
  return { data, end: s.end() };
}

/**
 * A whole body whose writer vouched that every line ends in CRLF and none starts with a dot (relay/spool/wire-ready.ts):
 * the body itself and the final dot line, without the scan. What is cheap to check is checked (the first and the last
 * byte); a body that fails it is encoded as any other.
 */
export function passWhole(body: Buffer): { data: Buffer; end: Buffer } {
  if (body.length > 0 && body[0] !== DOT && body[body.length - 1] === LF)
    return { data: body, end: END_AFTER_LF };
  return stuffWhole(body);
}
