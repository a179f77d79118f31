// Text that came from outside (a remote server's reply, an error message) made safe to keep on one line: in a state
// file, a log line, a DSN header field. Pure.

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
