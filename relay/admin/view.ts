// Pure: the JSON shapes of the queue admin API, built from spool state files. Shared by relay/admin/server.ts and
// the `mailroute queue` command (cli/commands/queue.ts), which renders them as text.
import { isOpenLeg, type LegState, type LegStateName, type SpoolState } from '../spool/types.ts';
import type { ServerLookup } from '../delivery/server-lookup.ts';
import { keptBySoftBounce } from '../delivery/outcome.ts';

export interface LegView {
  role: 'primary' | 'copy';
  server: string;
  /** host:port, as the current routing table defines the server (the stored copy when it is not in the table). */
  address: string;
  /** Set on an open leg whose server is no longer in the routing table: why it is held. */
  unroutable?: string;
  /**
   * Set on a deferred leg whose last reply refused it for good (a 5xx other than "too many recipients"): only the
   * domain's softBounce keeps it queued (docs/routing.md), and it bounces at the queue lifetime if still refused.
   */
  softBounced?: true;
  /** Envelope recipient on this leg (after rewriting). */
  recipient: string;
  state: LegStateName;
  attempts: number;
  nextAttemptAt?: string;
  lastAttemptAt?: string;
  lastReply?: string;
  dsnId?: string;
}

interface RecipientView {
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
  /** A message handed over by a relay that was shutting down: its queue id there (logs connect the two). */
  origin?: { queueId: string; relay: string };
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

function recipientSummary(legs: LegView[]): string {
  return legs.map((l) => `${l.role} ${l.state}`).join(', ');
}

/** `lookup`: where the relay would deliver a leg now (relay/delivery/server-lookup.ts); default: the stored copy. */
export function messageView(s: SpoolState, lookup?: (leg: LegState) => ServerLookup): MessageView {
  const byRecipient = new Map<string, LegView[]>();
  for (const l of s.legs) {
    const found = lookup?.(l);
    const server = found?.server ?? l.leg.server;
    const open = isOpenLeg(l);
    const view: LegView = {
      role: l.leg.role,
      server: l.leg.server.name,
      address: `${server.host}:${server.port}`,
      ...(found !== undefined && !found.ok && open ? { unroutable: found.reason } : {}),
      ...(keptBySoftBounce(l) ? { softBounced: true as const } : {}),
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
    ...(s.meta.origin ? { origin: s.meta.origin } : {}),
    recipients: [...byRecipient.entries()].map(([recipient, legs]) => ({
      recipient,
      summary: recipientSummary(legs),
      legs,
    })),
  };
}
