// kube-apiserver's audit log, for suites that count the requests a component makes (lists, watches) as the server
// saw them. auditFlags() writes a policy that records request metadata in the given namespaces only and returns the
// kube-apiserver flags for it (pass them as apiServerFlags); readAudit() parses the log.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface AuditEvent {
  stage: 'ResponseStarted' | 'ResponseComplete' | 'Panic';
  verb: string;
  requestURI: string;
  objectRef?: { resource?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
  requestReceivedTimestamp: string;
  stageTimestamp: string;
}

/** Writes the policy into `dir` and returns the flags; the log is `${dir}/audit.log` (auditLogPath). */
export function auditFlags(dir: string, namespaces: readonly string[]): string[] {
  const policy = join(dir, 'audit-policy.yaml');
  writeFileSync(
    policy,
    [
      'apiVersion: audit.k8s.io/v1',
      'kind: Policy',
      'omitStages: [RequestReceived]',
      'rules:',
      '- level: Metadata',
      `  namespaces: [${namespaces.join(', ')}]`,
      '- level: None',
      '',
    ].join('\n'),
  );
  return [
    `--audit-policy-file=${policy}`,
    `--audit-log-path=${auditLogPath(dir)}`,
    '--audit-log-mode=blocking',
    '--audit-log-format=json',
  ];
}

function auditLogPath(dir: string): string {
  return join(dir, 'audit.log');
}

/** Every event logged so far (blocking mode: written before the request goes on). */
export function readAudit(dir: string): AuditEvent[] {
  const path = auditLogPath(dir);
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as AuditEvent);
}

/** The events of one verb on one resource in one namespace; `stage` as the server reports it. */
export function auditOf(
  events: readonly AuditEvent[],
  q: { verb: string; resource: string; namespace: string; stage: AuditEvent['stage'] },
): AuditEvent[] {
  return events.filter(
    (e) =>
      e.verb === q.verb &&
      e.stage === q.stage &&
      e.objectRef?.resource === q.resource &&
      e.objectRef.namespace === q.namespace,
  );
}
