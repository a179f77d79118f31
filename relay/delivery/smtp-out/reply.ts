// SMTP replies as they arrive from a server, gathered and decoded the way nodemailer's client does it
// (smtp-connection/index.js _onData, _processResponse, decodeServerResponse): bytes split into lines at LF (a CR
// before it dropped), continuation lines ("250-...") joined to their reply with "\n" until a last line ("250 ..."),
// blank lines between replies skipped, each reply decoded as UTF-8 unless that is invalid (then byte for byte), and a
// reply (or a line) that grows past MAX_RESPONSE_SIZE refused. Pure.
//
// Exports:
//   MAX_RESPONSE_SIZE: the largest reply accepted (1 MiB, nodemailer's).
//   ReplyParser: push(chunk) -> the replies it completes (undefined: over the size limit), remainder(), reset().
//   decodeReply(raw): a reply received as bytes (a latin1 string), as text.
//   replyCode(reply): its leading number, 0 when it has none.
//   isClosing(reply): a 421 reply (RFC 5321 §3.8: the server is closing the connection).

/** nodemailer's MAX_RESPONSE_SIZE: generous for any real reply, it only stops a peer that never completes one. */
export const MAX_RESPONSE_SIZE = 1024 * 1024;

const NON_ASCII = /[\x80-\uFFFF]/;

/** A reply held as bytes (one latin1 character per byte) as text: UTF-8 when valid, else the bytes as they are. */
export function decodeReply(raw: string): string {
  // ASCII reads the same either way; most replies are ASCII, so skip the copy
  if (!NON_ASCII.test(raw)) return raw;
  const utf8 = Buffer.from(raw, 'latin1').toString('utf8');
  // a latin1 string can never hold U+FFFD, so one in the result marks bytes that are not UTF-8
  return utf8.includes('\uFFFD') ? raw : utf8;
}

/** The reply's leading number (nodemailer's responseCode: any digits at the start), 0 when there is none. */
export function replyCode(reply: string): number {
  const m = /^\d+/.exec(reply);
  return m ? Number(m[0]) : 0;
}

/** A 421 reply: the server is about to close the connection, whatever command it answers. */
export function isClosing(reply: string): boolean {
  return /^421[ -]/.test(reply);
}

const CONTINUATION = /^\d+-/;

export class ReplyParser {
  /** Bytes after the last LF: the line being received. */
  private rest = '';
  /** The lines so far of a reply whose last line was a continuation. */
  private current: string | undefined;
  private readonly max: number;

  constructor(max: number = MAX_RESPONSE_SIZE) {
    this.max = max;
  }

  /** The replies this chunk completes, in order; undefined when a reply or a line is over the size limit. */
  push(chunk: Buffer): string[] | undefined {
    const data = chunk.toString('latin1');
    if (!data.includes('\n')) {
      // only extends the line being received: no split, so a line that never ends costs linear time
      this.rest += data;
      return this.rest.length > this.max ? undefined : [];
    }
    const lines = (this.rest + data).split(/\r?\n/);
    this.rest = lines.pop() ?? '';
    const done: string[] = [];
    for (const line of lines) {
      const reply = this.current === undefined ? line : `${this.current}\n${line}`;
      if (CONTINUATION.test(line)) {
        if (reply.length > this.max) return undefined;
        this.current = reply;
        continue;
      }
      this.current = undefined;
      if (reply.trim() !== '') done.push(decodeReply(reply));
    }
    return this.rest.length > this.max ? undefined : done;
  }

  /** What arrived after the last complete line (a server that closes may leave its last reply unterminated). */
  remainder(): string {
    return this.rest;
  }

  /** Forgets everything received (RFC 3207 §4.2: nothing received before the TLS handshake is kept). */
  reset(): void {
    this.rest = '';
    this.current = undefined;
  }
}
