// Pure: the ESMTP parameters of MAIL FROM and RCPT TO that the relay implements. Any other gets 555 5.5.4, naming it
// (RFC 5321 §4.1.1.11: a parameter the server does not recognise or cannot implement). The relay does not offer DSN
// (RFC 3461): a NOTIFY=NEVER it accepted and ignored would still have sent its sender a bounce, and RET, ENVID and
// ORCPT would have been dropped on the way; refused, the client's own MTA keeps the message and reports on it itself.
import { LEGS_PARAM, ORIGIN_PARAM } from './handoff.ts';
import { REPLIES, type Refusal } from './verdict.ts';

/** MAIL FROM: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531) and a peer relay's hand-off origin. */
export const MAIL_PARAMS: ReadonlySet<string> = new Set(['SIZE', 'BODY', 'SMTPUTF8', ORIGIN_PARAM]);
/** RCPT TO: only a peer relay's hand-off legs. */
export const RCPT_PARAMS: ReadonlySet<string> = new Set([LEGS_PARAM]);

/** The refusal of the first parameter not in `supported` (smtp-server upper-cases the names); undefined if none. */
export function unsupportedParameter(
  args: Readonly<Record<string, string | true>> | false,
  supported: ReadonlySet<string>,
): Refusal | undefined {
  if (args === false) return undefined;
  for (const name in args) {
    if (!supported.has(name)) return REPLIES.unsupportedParameter(name);
  }
  return undefined;
}
