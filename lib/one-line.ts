// Text that came from outside (a remote server's reply, an error message, a client's parameter or header) made safe
// to keep on one line: in a state file, a log line, a DSN header field, a reply; and cut to a length. Pure.

// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

/**
 * One line: runs of CR and LF become one space, every other control character (NUL included; tab kept) a '?', and
 * the ends are trimmed. What it returns passes the spool's one-line check (relay/spool/check.ts) and never ends a
 * header field or an SMTP command.
 */
export function oneLine(s: string): string {
  return s
    .replace(/[\r\n]+/g, ' ')
    .replace(CONTROLS, '?')
    .trim();
}

/**
 * At most max characters of text, then `... (N more)`: what a log line, a reply or a kept state holds of text a client
 * or a server chose (a 16 KiB parameter name or header value is not copied whole into each line about it).
 */
export function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}... (${text.length - max} more)` : text;
}
