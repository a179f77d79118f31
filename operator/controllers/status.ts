// The pure status decision shared by the MailDomain, DeliveryPolicy and TestRecipient controllers:
// gathered facts in, desired conditions out (the condition helper turns them into a status write).

import type { CompileIssue, Kind } from '../../routing/model.ts';
import type { DesiredCondition } from '../kube/conditions.ts';
import { relayLeaseName } from '../../contract/relay-lease.ts';
import { SECRET_NOT_USABLE } from '../../routing/secret-opt-in.ts';
import { nextInstant, parseInstant, stageIndexAt } from '../../routing/schedule.ts';

const ConditionTypes = {
  Accepted: 'Accepted',
  ResolvedRefs: 'ResolvedRefs',
  Programmed: 'Programmed',
  Ready: 'Ready',
  Active: 'Active',
  /** MailDomain only: True when the domain accepts any local part (routing/backscatter.ts); not part of Ready. */
  BackscatterRisk: 'BackscatterRisk',
} as const;

/** Condition reasons set by the operator (compile issue reasons, e.g. Conflict or PolicyNotFound, pass through). */
const StatusReasons = {
  Accepted: 'Accepted',
  ResolvedRefs: 'ResolvedRefs',
  /** A referenced Secret is missing or does not opt in (label mailroute.io/smtp-auth: "true"); one reason for both. */
  SecretNotFound: 'SecretNotFound',
  /** The Secret opts in but has no usable username/password (so it is left out of mailroute-credentials). */
  InvalidSecret: 'InvalidSecret',
  Programmed: 'Programmed',
  /** Fresh relays exist but not all of them serve a revision with this generation yet. */
  Pending: 'Pending',
  /** No relay has a fresh heartbeat Lease. */
  NoRelays: 'NoRelays',
  /** The object is not in the routing table (it has an Accepted or ResolvedRefs problem). */
  NotInRoutingTable: 'NotInRoutingTable',
  /** The operator has not compiled this generation yet. */
  NotCompiled: 'NotCompiled',
  /** MailDomain: no accepted DeliveryPolicy routes its domain (mail for it is deferred with 451 4.3.5). */
  NoPolicy: 'NoPolicy',
  /**
   * The routing table holding this generation (or the credentials Secret its servers need) could not be written: the
   * namespace is missing, RBAC, a webhook refused it, too large. The message names the API error.
   */
  ApplyFailed: 'ApplyFailed',
  Ready: 'Ready',
  NotReady: 'NotReady',
  Active: 'Active',
  NoExpiry: 'NoExpiry',
  Expired: 'Expired',
  /** TestRecipient: spec.expiresAt is not an RFC 3339 date-time (the compile leaves the object out: InvalidTime). */
  InvalidTime: 'InvalidTime',
  NoRecipientCheck: 'NoRecipientCheck',
  RecipientsChecked: 'RecipientsChecked',
} as const;

export interface RelayView {
  name: string;
  revision: string | undefined;
}

export interface StatusFacts {
  kind: Kind;
  generation: number;
  /** Issues of this object from the last compile (empty: accepted with resolved references). */
  issues: readonly CompileIssue[];
  /**
   * Referenced auth Secrets that are missing or have not opted in (routing/secret-opt-in.ts): one message for both,
   * so status tells a tenant nothing about a Secret they may not read.
   */
  missingSecrets: readonly string[];
  /** Opted-in referenced Secrets without usable username/password keys, as "namespace/name: why". */
  invalidSecrets?: readonly string[];
  /** Generation of this object in the current routing table; undefined when it is not in the table. */
  compiledGeneration: number | undefined;
  /** Whether a compile has happened at all (false right after start). */
  compiled: boolean;
  /** Relays with a fresh heartbeat (RelayView.name is the heartbeat Lease's name). */
  relays: readonly RelayView[];
  /**
   * The relay pods meant to exist (the relay StatefulSet's desired replicas: <statefulset>-0 ..), or undefined when
   * no StatefulSet is known (a local run): then the relays with a fresh heartbeat are all there is to count.
   */
  expectedRelays?: readonly string[] | undefined;
  /** The generation of this object in a revision, or undefined when the revision is unknown or lacks it. */
  generationIn: (revision: string) => number | undefined;
  /** MailDomain: the backscatter warning ('' when the domain checks its recipients); undefined for other kinds. */
  backscatterRisk?: string | undefined;
  /** MailDomain: its domain, when it is in the routing table but no accepted DeliveryPolicy routes it. */
  noPolicyFor?: string | undefined;
  /**
   * Why the cluster lacks this generation's routing (RoutingState.applyFailure: `routing table not written: 404 ...`);
   * undefined when nothing this object needs failed to be written.
   */
  applyFailure?: string | undefined;
  /** TestRecipient spec.expiresAt */
  expiresAt?: string | undefined;
  /**
   * Other instants at which this object's status changes by the clock alone (a DeliveryPolicy's stage ends): the
   * reconcile is requeued at the next one after now, as at expiresAt (routing/schedule.ts nextInstant).
   */
  transitions?: readonly string[] | undefined;
  now: Date;
}

export interface StatusDecision {
  conditions: DesiredCondition[];
  /** Call again after this many ms: the next transition (TestRecipient expiry, the end of a policy's stage). */
  requeueAfterMs?: number;
  programmed: { ready: number; total: number };
}

function firstIssue(
  issues: readonly CompileIssue[],
  condition: CompileIssue['condition'],
): CompileIssue | undefined {
  return issues.find((i) => i.condition === condition);
}

/** How many relays a message names before it counts the rest ("r-0, r-1, r-2, 2 more"), as Kubernetes messages do. */
const NAMED_RELAYS = 3;

/** A revision as messages show it: its first 12 hex digits (as `mailroute check` and `mailroute diff` print it). */
function shortRevision(revision: string): string {
  return revision.slice(0, 12);
}

/** A relay that is alive (fresh, ready heartbeat) but serves a revision without this generation. */
interface LaggingRelay {
  /** The pod (the Lease name without its mailroute-relay- prefix). */
  pod: string;
  revision: string | undefined;
}

/**
 * "N/M relays programmed", then the relays that keep it below M: those that have not reported (missing or stale
 * Lease, or ready=false) and those alive on an older revision, with the revision they serve. Each list names at most
 * three relays and counts the rest.
 */
function programmedMessage(
  n: number,
  m: number,
  missing: readonly string[] = [],
  lagging: readonly LaggingRelay[] = [],
): string {
  const parts = [`${n}/${m} relays programmed`];
  if (missing.length > 0) {
    parts.push(`${bounded(missing).join(', ')} ${missing.length === 1 ? 'has' : 'have'} not reported`);
  }
  if (lagging.length > 0) {
    const named = lagging.map(
      (r) => `${r.pod} (${r.revision === undefined ? 'no revision' : shortRevision(r.revision)})`,
    );
    parts.push(`serving an older revision: ${bounded(named, 'and ').join(', ')}`);
  }
  return parts.join('; ');
}

function bounded(names: readonly string[], and = ''): string[] {
  return names.length > NAMED_RELAYS
    ? [...names.slice(0, NAMED_RELAYS), `${and}${names.length - NAMED_RELAYS} more`]
    : [...names];
}

const LEASE_PREFIX = relayLeaseName('');

function podOf(leaseName: string): string {
  return leaseName.startsWith(LEASE_PREFIX) ? leaseName.slice(LEASE_PREFIX.length) : leaseName;
}

/**
 * Ready/total relays for one generation, the expected relays that have no fresh heartbeat, and the counted relays
 * that have one but serve a revision without this generation (older, unknown to this operator, or none yet).
 */
function countProgrammed(f: Pick<StatusFacts, 'relays' | 'expectedRelays' | 'generation' | 'generationIn'>): {
  ready: number;
  total: number;
  missing: string[];
  lagging: LaggingRelay[];
} {
  const serves = (r: RelayView): boolean =>
    r.revision !== undefined && f.generationIn(r.revision) === f.generation;
  const lagging: LaggingRelay[] = [];
  let ready = 0;
  if (f.expectedRelays === undefined) {
    for (const r of f.relays) {
      if (serves(r)) ready++;
      else lagging.push({ pod: podOf(r.name), revision: r.revision });
    }
    return { ready, total: f.relays.length, missing: [], lagging };
  }
  const byLease = new Map(f.relays.map((r) => [r.name, r]));
  const missing: string[] = [];
  for (const pod of f.expectedRelays) {
    const r = byLease.get(relayLeaseName(pod));
    if (r === undefined) missing.push(pod);
    else if (serves(r)) ready++;
    else lagging.push({ pod, revision: r.revision });
  }
  return { ready, total: f.expectedRelays.length, missing, lagging };
}

export function decideStatus(f: StatusFacts): StatusDecision {
  const conditions: DesiredCondition[] = [];
  const notAccepted = firstIssue(f.issues, 'Accepted');
  conditions.push(
    notAccepted === undefined
      ? {
          type: ConditionTypes.Accepted,
          status: 'True',
          reason: StatusReasons.Accepted,
          message: 'valid, no conflict',
        }
      : {
          type: ConditionTypes.Accepted,
          status: 'False',
          reason: notAccepted.reason,
          message: `${notAccepted.field}: ${notAccepted.message}`,
        },
  );
  const unresolved = firstIssue(f.issues, 'ResolvedRefs');
  if (unresolved !== undefined) {
    conditions.push({
      type: ConditionTypes.ResolvedRefs,
      status: 'False',
      reason: unresolved.reason,
      message: `${unresolved.field}: ${unresolved.message}`,
    });
  } else if (f.missingSecrets.length > 0) {
    conditions.push({
      type: ConditionTypes.ResolvedRefs,
      status: 'False',
      reason: StatusReasons.SecretNotFound,
      message: `spec.servers[].authSecretRef: Secret ${f.missingSecrets.join(', ')} ${SECRET_NOT_USABLE}`,
    });
  } else if (f.invalidSecrets !== undefined && f.invalidSecrets.length > 0) {
    conditions.push({
      type: ConditionTypes.ResolvedRefs,
      status: 'False',
      reason: StatusReasons.InvalidSecret,
      message: `spec.servers[].authSecretRef: Secret ${f.invalidSecrets.join(', ')} (needs keys username, password)`,
    });
  } else {
    conditions.push({
      type: ConditionTypes.ResolvedRefs,
      status: 'True',
      reason: StatusReasons.ResolvedRefs,
      message: 'all references resolved',
    });
  }

  const { ready, total, missing, lagging } = countProgrammed(f);
  const msg = programmedMessage(ready, total, missing, lagging);
  let programmed: DesiredCondition;
  if (!f.compiled || (f.compiledGeneration !== undefined && f.compiledGeneration !== f.generation)) {
    programmed = {
      type: ConditionTypes.Programmed,
      status: 'Unknown',
      reason: StatusReasons.NotCompiled,
      // Without the relays on older revisions: every relay lacks a generation not compiled yet.
      message: `generation ${f.generation} not compiled yet; ${programmedMessage(ready, total, missing)}`,
    };
  } else if (f.compiledGeneration === undefined) {
    programmed = {
      type: ConditionTypes.Programmed,
      status: 'False',
      reason: StatusReasons.NotInRoutingTable,
      // No relay count: relays may still serve an older revision that had it, which is no news about this object.
      message: 'not in the routing table (see Accepted and ResolvedRefs)',
    };
  } else if (f.applyFailure !== undefined) {
    // Before NoPolicy and the relay count: until the table is written, no relay can be given this generation.
    programmed = {
      type: ConditionTypes.Programmed,
      status: 'False',
      reason: StatusReasons.ApplyFailed,
      message: f.applyFailure,
    };
  } else if (f.noPolicyFor !== undefined) {
    programmed = {
      type: ConditionTypes.Programmed,
      status: 'False',
      reason: StatusReasons.NoPolicy,
      message: `no accepted DeliveryPolicy routes ${f.noPolicyFor}: mail for it is deferred (451 4.3.5)`,
    };
  } else if (total === 0) {
    programmed = {
      type: ConditionTypes.Programmed,
      status: 'False',
      reason: StatusReasons.NoRelays,
      message: msg,
    };
  } else if (ready === total) {
    programmed = {
      type: ConditionTypes.Programmed,
      status: 'True',
      reason: StatusReasons.Programmed,
      message: msg,
    };
  } else {
    programmed = {
      type: ConditionTypes.Programmed,
      status: 'False',
      reason: StatusReasons.Pending,
      message: msg,
    };
  }
  conditions.push(programmed);

  const notTrue = conditions.find((c) => c.status !== 'True');
  conditions.push(
    notTrue === undefined
      ? { type: ConditionTypes.Ready, status: 'True', reason: StatusReasons.Ready, message: msg }
      : {
          type: ConditionTypes.Ready,
          status: 'False',
          reason: notTrue.reason,
          message: `${notTrue.type}: ${notTrue.message}`,
        },
  );

  const decision: StatusDecision = { conditions, programmed: { ready, total } };
  if (f.backscatterRisk !== undefined) {
    conditions.push(
      f.backscatterRisk === ''
        ? {
            type: ConditionTypes.BackscatterRisk,
            status: 'False',
            reason: StatusReasons.RecipientsChecked,
            message:
              'unknown recipients are known from accounts, recipientVerification or rejectUnknownRecipients',
          }
        : {
            type: ConditionTypes.BackscatterRisk,
            status: 'True',
            reason: StatusReasons.NoRecipientCheck,
            message: f.backscatterRisk,
          },
    );
  }
  if (f.kind === 'TestRecipient') {
    if (f.expiresAt === undefined) {
      conditions.push({
        type: ConditionTypes.Active,
        status: 'True',
        reason: StatusReasons.NoExpiry,
        message: 'no expiresAt',
      });
    } else {
      const expiresMs = parseInstant(f.expiresAt);
      // Active while expiresAt is still ahead: the same rule as resolve() (routing/schedule.ts).
      if (expiresMs === undefined) {
        // never "active until" a time nobody can read: the compile leaves the recipient out (Accepted, InvalidTime)
        conditions.push({
          type: ConditionTypes.Active,
          status: 'False',
          reason: StatusReasons.InvalidTime,
          message: `spec.expiresAt: ${JSON.stringify(f.expiresAt)} is not an RFC 3339 date-time; the recipient routes like any other until it is fixed`,
        });
      } else if (stageIndexAt([expiresMs], f.now.getTime()) === 0) {
        conditions.push({
          type: ConditionTypes.Active,
          status: 'True',
          reason: StatusReasons.Active,
          message: `active until ${f.expiresAt}`,
        });
      } else {
        conditions.push({
          type: ConditionTypes.Active,
          status: 'False',
          reason: StatusReasons.Expired,
          message: `expired at ${f.expiresAt}; routes like any other recipient`,
        });
      }
    }
  }
  const next = nextInstant([f.expiresAt, ...(f.transitions ?? [])], f.now);
  if (next !== undefined)
    decision.requeueAfterMs = Math.min(next.getTime() - f.now.getTime() + 1, WALL_CLOCK_RECHECK_MS);
  return decision;
}

/**
 * The longest a reconcile waits for a wall-clock instant (an expiresAt, a stage's end). The work queue's delay runs on
 * the monotonic clock, so after a step of the wall clock forward (NTP at boot, a resumed virtual machine) the status
 * would flip late by the size of the step; asked again at least this often, it flips within this much of the step.
 */
export const WALL_CLOCK_RECHECK_MS = 300_000;

/** Reasons of an object still coming up (or rolling out a change): no Warning, and no event before its first Ready. */
const PROGRESS_REASONS: ReadonlySet<string> = new Set([
  StatusReasons.Pending,
  StatusReasons.NoRelays,
  StatusReasons.NotCompiled,
]);

export interface StatusEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/**
 * The Events for one status write: they follow the Ready condition (whose message names the condition that is not
 * True), so each change of Ready gives one Event, with the message the status now shows. A new object gets none while
 * it is only coming up (Pending, NoRelays, NotCompiled): its first Event is its first Ready, or the problem that keeps
 * it from being Ready (a Warning). A TestRecipient's expiry (Active True -> False) gets its own Event.
 */
export function statusEvents(
  transitions: readonly {
    type: string;
    from: string | undefined;
    to: string;
    reason: string;
    message: string;
  }[],
): StatusEvent[] {
  const out: StatusEvent[] = [];
  for (const t of transitions) {
    if (t.type === ConditionTypes.Ready) {
      const progress = PROGRESS_REASONS.has(t.reason);
      if (t.from === undefined && t.to !== 'True' && progress) continue;
      out.push({
        type: t.to === 'True' || progress ? 'Normal' : 'Warning',
        reason: t.reason,
        message: `Ready=${t.to}: ${t.message}`,
      });
    } else if (t.type === ConditionTypes.Active && t.from !== undefined) {
      out.push({ type: 'Normal', reason: t.reason, message: `Active=${t.to}: ${t.message}` });
    }
  }
  return out;
}
