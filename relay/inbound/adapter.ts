// The one adapter from verdicts to smtp-server: an Error with responseCode and enhancedCode (the patched
// smtp-server writes "<code> <enhanced> <text>"), or null for accept.
import type { Verdict } from './verdict.ts';

export interface SmtpReplyError extends Error {
  responseCode: number;
  enhancedCode: string;
  reason: string;
}

export function toSmtpError(v: Verdict): SmtpReplyError | null {
  switch (v.verdict) {
    case 'accept':
      return null;
    case 'tempfail':
    case 'reject':
      return Object.assign(new Error(v.reply.text), {
        responseCode: v.reply.code,
        enhancedCode: v.reply.enhanced,
        reason: v.reason,
      });
  }
}
