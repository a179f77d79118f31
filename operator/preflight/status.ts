// Pure: MailDomain objects as the preflight sees them, the status it writes (status.servers[] and the
// ServersReachable condition), and when each domain is due for its next probe.
import { sha256Hex } from '../../routing/canonical.ts';
import { API_VERSION, assertNever, TLS_MODES, type TlsMode } from '../../routing/model.ts';
import { SMTP_AUTH_LABEL, SMTP_AUTH_LABEL_VALUE } from '../../routing/secret-opt-in.ts';
import type { SecretLookup } from '../../contract/credentials-secret.ts';
import { setConditions, type Condition } from '../kube/conditions.ts';
import type { ProbeOutcome, ProbeTarget, TlsReport } from './probe.ts';
import type { AcceptanceResult } from './acceptance.ts';

export const FIELD_MANAGER = 'mailroute-preflight';
const CONDITION_TYPE = 'ServersReachable';
const REASONS = { AllReachable: 'AllReachable', ProbeFailed: 'ProbeFailed' } as const;
type PreflightReason = (typeof REASONS)[keyof typeof REASONS];

export type { Condition };

export interface ServerStatus {
  name: string;
  reachable: boolean;
  tls: TlsReport;
  message: string;
  /** The local address the probe's connection left from: the address the server must allowlist. */
  localAddress?: string;
  /** The acceptance step (spec.servers[].probe.address): RCPT TO the probe address, and its reply. */
  acceptance?: { address: string; result: AcceptanceResult; reply: string };
  /** RFC 3339 */
  lastProbeTime: string;
}

/** A server of a MailDomain as the preflight reads it: where to probe, and what the acceptance step needs. */
type ServerView = { name: string } & ProbeTarget & {
    /** spec.servers[].authSecretRef.name (the Secret is in the MailDomain's namespace). */
    authSecretRef?: string;
    /** spec.servers[].probe.address */
    probeAddress?: string;
  };

/** What the preflight needs of one MailDomain, read defensively from the API object. */
export interface DomainView {
  namespace: string;
  name: string;
  /** spec.domain (lowercase), for the DomainClaim destinations of its servers. */
  domain?: string;
  generation: number;
  servers: ServerView[];
  previousServers: ServerStatus[];
  previousCondition?: Condition;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads a MailDomain API object; undefined when it is not one we can probe (no name, no servers list). */
export function viewMailDomain(obj: unknown): DomainView | undefined {
  if (!isRecord(obj) || !isRecord(obj.metadata)) return undefined;
  const { name, namespace, generation } = obj.metadata;
  if (typeof name !== 'string' || typeof namespace !== 'string') return undefined;
  const spec = isRecord(obj.spec) ? obj.spec : {};
  const rawServers = Array.isArray(spec.servers) ? spec.servers : [];
  const servers: DomainView['servers'] = [];
  for (const s of rawServers) {
    if (!isRecord(s) || typeof s.name !== 'string' || typeof s.host !== 'string') continue;
    const tls = (TLS_MODES as readonly unknown[]).includes(s.tls) ? (s.tls as TlsMode) : 'Opportunistic';
    const secret = isRecord(s.authSecretRef) ? s.authSecretRef.name : undefined;
    const probe = isRecord(s.probe) ? s.probe.address : undefined;
    servers.push({
      name: s.name,
      host: s.host,
      port: typeof s.port === 'number' ? s.port : 25,
      mx: s.mx === true,
      tls,
      ...(s.allowPlaintextAuth === true ? { allowPlaintextAuth: true } : {}),
      ...(typeof secret === 'string' ? { authSecretRef: secret } : {}),
      ...(typeof probe === 'string' ? { probeAddress: probe } : {}),
    });
  }
  const status = isRecord(obj.status) ? obj.status : {};
  const previousServers = (Array.isArray(status.servers) ? status.servers : []).filter(
    (s): s is ServerStatus =>
      isRecord(s) &&
      typeof s.name === 'string' &&
      typeof s.lastProbeTime === 'string' &&
      typeof s.reachable === 'boolean',
  );
  const previousCondition = (Array.isArray(status.conditions) ? status.conditions : []).find(
    (c): c is Condition => isRecord(c) && c.type === CONDITION_TYPE && typeof c.status === 'string',
  );
  return {
    namespace,
    name,
    ...(typeof spec.domain === 'string' ? { domain: spec.domain.toLowerCase() } : {}),
    generation: typeof generation === 'number' ? generation : 0,
    servers,
    previousServers,
    ...(previousCondition ? { previousCondition } : {}),
  };
}

/** Where the credentials of an authSecretRef come from: the Secret's username/password, or why there are none. */
export type CredentialsFor = (
  namespace: string,
  name: string,
) => { user: string; pass: string } | { error: string };

/** A Secret informer lookup (operator/credentials-secret.ts) as the acceptance step's credentials. Pure. */
export function credentialsFromLookup(
  namespace: string,
  name: string,
  found: SecretLookup,
): { user: string; pass: string } | { error: string } {
  const where = `Secret ${namespace}/${name}`;
  switch (found.state) {
    case 'ok':
      return { user: found.credentials.username, pass: found.credentials.password };
    case 'missing':
      return { error: `${where} not found, or not labelled ${SMTP_AUTH_LABEL}: "${SMTP_AUTH_LABEL_VALUE}"` };
    case 'invalid':
      return { error: `${where}: ${found.reason}` };
    case 'unknown':
      return { error: `${where} is outside the namespaces the operator reads (--secret-namespaces)` };
    default:
      return assertNever(found, 'secret lookup');
  }
}

/**
 * The operator's targets: a server with spec.servers[].probe.address gets the acceptance step (MAIL FROM:<> and RCPT
 * TO the address, then RSET: the periodic probe never sends a message), with AUTH when it has an authSecretRef.
 * Servers without a probe address are probed for reachability and TLS only, as before. Pure.
 */
export function withAcceptance(view: DomainView, credentials: CredentialsFor | undefined): DomainView {
  return {
    ...view,
    servers: view.servers.map((s) => {
      if (s.probeAddress === undefined) return s;
      const creds =
        s.authSecretRef === undefined
          ? undefined
          : (credentials?.(view.namespace, s.authSecretRef) ?? {
              error: `Secret ${view.namespace}/${s.authSecretRef} is not available to the preflight`,
            });
      return {
        ...s,
        acceptance: { address: s.probeAddress, sender: '' },
        ...(creds !== undefined ? { credentials: creds } : {}),
      };
    }),
  };
}

/**
 * Identifies what is probed: a change of hosts, ports or TLS modes makes the domain due at once, and so does a new
 * generation (so ServersReachable's observedGeneration follows the spec promptly).
 */
export function serversFingerprint(view: Pick<DomainView, 'servers' | 'generation'>): string {
  const canon = [
    view.generation,
    ...view.servers.map((s) => [
      s.name,
      s.host,
      s.port,
      s.mx,
      s.tls,
      s.authSecretRef ?? '',
      s.probeAddress ?? '',
    ]),
  ];
  return sha256Hex(JSON.stringify(canon)).slice(0, 16);
}

/**
 * A server passes when it is reachable, TLS did not fail where the mode requires it, and, with an acceptance probe,
 * the probe address was accepted.
 */
export function serverPasses(s: Pick<ServerStatus, 'reachable' | 'tls' | 'acceptance'>): boolean {
  return (
    s.reachable && s.tls !== 'failed' && (s.acceptance === undefined || s.acceptance.result === 'accepted')
  );
}

/** Why a server does not pass, for the condition message. Pure. */
function failureText(s: ServerStatus): string {
  if (!s.reachable) return `${s.name}: unreachable: ${s.message}`;
  if (s.tls === 'failed') return `${s.name}: tls failed: ${s.message}`;
  const a = s.acceptance;
  if (a !== undefined && a.result !== 'accepted') {
    const from = s.localAddress !== undefined ? ` (from ${s.localAddress})` : '';
    return `${s.name}: probe RCPT TO:<${a.address}> ${a.result}${from}: ${a.reply}`;
  }
  return `${s.name}: ${s.message}`;
}

/**
 * The ServersReachable condition, through the operator's condition helper (operator/kube/conditions.ts), which owns
 * lastTransitionTime (kept while the status does not change) and observedGeneration.
 */
export function decideCondition(
  servers: ServerStatus[],
  generation: number,
  previous: Condition | undefined,
  now: Date,
): Condition {
  const failing = servers.filter((s) => !serverPasses(s));
  const status = failing.length === 0 ? 'True' : 'False';
  const reason: PreflightReason = failing.length === 0 ? REASONS.AllReachable : REASONS.ProbeFailed;
  const message =
    failing.length === 0
      ? `${servers.length}/${servers.length} servers reachable`
      : failing.map(failureText).join('; ');
  const desired = {
    type: CONDITION_TYPE,
    status,
    reason,
    // metav1.Condition caps message at 32768 characters.
    message: message.length > 32_000 ? `${message.slice(0, 32_000)}...` : message,
  } as const;
  const update = setConditions(previous ? { conditions: [previous] } : undefined, [desired], generation, now);
  const cond = update.conditions[0];
  if (cond === undefined) throw new Error('setConditions returned no condition');
  return cond;
}

/**
 * The Event for a ServersReachable change: a Warning ServersUnreachable when it becomes False (a new MailDomain whose
 * servers fail too), a Normal ServersReachable when it recovers; nothing while it stays the same.
 */
export function reachabilityEvent(
  previous: string | undefined,
  now: Pick<Condition, 'status' | 'message'>,
): { type: 'Warning' | 'Normal'; reason: string; message: string } | undefined {
  if (now.status === previous) return undefined;
  if (now.status === 'False') return { type: 'Warning', reason: 'ServersUnreachable', message: now.message };
  if (previous === 'False') return { type: 'Normal', reason: 'ServersReachable', message: now.message };
  return undefined;
}

const cap = (text: string, max: number): string =>
  text.length > max ? `${text.slice(0, max - 4)}...` : text;

export function serverStatus(name: string, outcome: ProbeOutcome, at: Date): ServerStatus {
  // AUTH's outcome is part of the acceptance step: a failed AUTH is the reason the probe address got no reply.
  const a = outcome.acceptance;
  return {
    name,
    reachable: outcome.reachable,
    tls: outcome.tls,
    // The CRD caps status.servers[].message at 1024 characters.
    message: cap(
      outcome.auth?.ok === true ? `${outcome.message}; ${outcome.auth.message}` : outcome.message,
      1024,
    ),
    ...(outcome.localAddress !== undefined ? { localAddress: outcome.localAddress } : {}),
    ...(a !== undefined
      ? { acceptance: { address: a.address, result: a.result, reply: cap(a.reply, 1024) } }
      : {}),
    lastProbeTime: at.toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
}

/** The server-side apply body for the status subresource, under the field manager mailroute-preflight. */
export function statusApplyBody(
  domain: Pick<DomainView, 'namespace' | 'name'>,
  servers: ServerStatus[],
  condition: Condition,
): object {
  return {
    apiVersion: API_VERSION,
    kind: 'MailDomain',
    metadata: { name: domain.name, namespace: domain.namespace },
    status: { servers, conditions: [condition] },
  };
}

/** Per-domain schedule memory kept between scans. */
export interface ScheduleEntry {
  fingerprint: string;
  /** epoch ms */
  nextDue: number;
}

/**
 * When a domain is next due. A domain never seen is due now unless its status already holds a probe of the same
 * servers newer than one interval (an operator restart does not re-probe everything at once).
 */
export function isDue(
  view: DomainView,
  entry: ScheduleEntry | undefined,
  now: number,
  intervalMs: number,
): boolean {
  const fp = serversFingerprint(view);
  if (entry !== undefined) return entry.fingerprint !== fp || now >= entry.nextDue;
  if (view.previousCondition?.observedGeneration !== view.generation) return true;
  const names = view.servers.map((s) => s.name).sort();
  const prevNames = view.previousServers.map((s) => s.name).sort();
  if (names.length === 0 || JSON.stringify(names) !== JSON.stringify(prevNames)) return true;
  const oldest = Math.min(...view.previousServers.map((s) => Date.parse(s.lastProbeTime)));
  return !Number.isFinite(oldest) || now - oldest >= intervalMs;
}

/** Next due time with ±jitter (a fraction, 0.1 = ±10 %) so that many domains do not probe in lockstep. */
export function nextDue(now: number, intervalMs: number, jitter: number, random: () => number): number {
  return now + Math.round(intervalMs * (1 + jitter * (2 * random() - 1)));
}
