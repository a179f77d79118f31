// Pure: the JSON shapes of the queue admin API, built from spool state files. Shared by relay/admin/server.ts and
// the `mailroute queue` command (cli/commands/queue.ts), which renders them as text.
import type { LegStateName, SpoolState } from '../spool/types.ts';

export interface LegView {
  role: 'primary' | 'copy';
  server: string;
  /** host:port */
  address: string;
  /** Envelope recipient on this leg (after rewriting). */
  recipient: string;
  state: LegStateName;
  attempts: number;
  nextAttemptAt?: string;
  lastAttemptAt?: string;
  lastReply?: string;
  dsnId?: string;
}

export interface RecipientView {
  recipient: string;
  /** "primary delivered, copy deferred" */
  summary: string;
  legs: LegView[];
}

export interface MessageView {
  id: string;
  receivedAt: string;
  /** '' = null sender */
  mailFrom: string;
  size: number;
  /** pending: something not tried yet; deferred: waiting for a retry; done: all legs final (DSN being queued). */
  state: 'pending' | 'deferred' | 'done';
  recipients: RecipientView[];
}

export interface QueueListView {
  total: number;
  /** More messages exist than were listed (see ?limit=). */
  truncated: boolean;
  messages: MessageView[];
  /** Messages whose state file could not be read while listing (quarantined or gone meanwhile). */
  skipped: number;
}

export function recipientSummary(legs: LegView[]): string {
  return legs.map((l) => `${l.role} ${l.state}`).join(', ');
}

export function messageView(s: SpoolState): MessageView {
  const byRecipient = new Map<string, LegView[]>();
  for (const l of s.legs) {
    const view: LegView = {
      role: l.leg.role,
      server: l.leg.server.name,
      address: `${l.leg.server.host}:${l.leg.server.port}`,
      recipient: l.leg.recipient,
      state: l.state,
      attempts: l.attempts,
      ...(l.nextAttemptAt ? { nextAttemptAt: l.nextAttemptAt } : {}),
      ...(l.lastAttemptAt ? { lastAttemptAt: l.lastAttemptAt } : {}),
      ...(l.lastReply ? { lastReply: l.lastReply } : {}),
      ...(l.dsnId ? { dsnId: l.dsnId } : {}),
    };
    const list = byRecipient.get(l.recipient) ?? [];
    list.push(view);
    byRecipient.set(l.recipient, list);
  }
  const states = s.legs.map((l) => l.state);
  const state = states.includes('pending') ? 'pending' : states.includes('deferred') ? 'deferred' : 'done';
  return {
    id: s.id,
    receivedAt: s.meta.receivedAt,
    mailFrom: s.meta.mailFrom,
    size: s.size,
    state,
    recipients: [...byRecipient.entries()].map(([recipient, legs]) => ({
      recipient,
      summary: recipientSummary(legs),
      legs,
    })),
  };
}
