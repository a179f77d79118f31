// Pure parsing of SMTP replies for the preflight probe: multi-line replies (RFC 5321 §4.2.1) and EHLO keywords.

export interface SmtpReply {
  code: number;
  /** Text of each line, without the code and separator. */
  lines: string[];
}

export type ReplyParse =
  | { kind: 'complete'; reply: SmtpReply; rest: string }
  | { kind: 'partial' }
  | { kind: 'invalid'; line: string };

const LINE = /^(\d{3})([ -])(.*)$/;

/**
 * Takes the text received so far and returns the first complete reply and what follows it, 'partial' when more
 * bytes are needed, or 'invalid' when a line is not an SMTP reply line (or the code changes mid-reply).
 */
export function parseReply(buffer: string): ReplyParse {
  const lines: string[] = [];
  let code: number | undefined;
  let offset = 0;
  for (;;) {
    const nl = buffer.indexOf('\n', offset);
    if (nl < 0) return { kind: 'partial' };
    const raw = buffer.slice(offset, nl).replace(/\r$/, '');
    offset = nl + 1;
    const m = LINE.exec(raw) ?? (/^\d{3}$/.test(raw) ? [raw, raw, ' ', ''] : null);
    if (m === null) return { kind: 'invalid', line: raw };
    const lineCode = Number(m[1]);
    if (code !== undefined && lineCode !== code) return { kind: 'invalid', line: raw };
    code = lineCode;
    lines.push(m[3] ?? '');
    if (m[2] === ' ') return { kind: 'complete', reply: { code, lines }, rest: buffer.slice(offset) };
  }
}

/** Upper-cased EHLO keywords (the first word of every line after the greeting line). */
export function ehloKeywords(reply: SmtpReply): Set<string> {
  const out = new Set<string>();
  for (const line of reply.lines.slice(1)) {
    const word = line.trim().split(/\s+/)[0];
    if (word) out.add(word.toUpperCase());
  }
  return out;
}

/** "250 mail.example ESMTP" style one-line rendering for messages. */
export function formatSmtpReply(reply: SmtpReply): string {
  return `${reply.code} ${reply.lines[0] ?? ''}`.trim();
}
