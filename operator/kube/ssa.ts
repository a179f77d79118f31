// Server-side apply with one stable field manager, and core/v1 Events.

import type { ApiResult, KubeRest } from './rest.ts';
import { APPLY_PATCH } from './rest.ts';

const OPERATOR_FIELD_MANAGER = 'mailroute-operator';

/** PATCH (apply) `path` with `body`; force takes over fields another manager owns (we are their owner by design). */
export async function serverSideApply<T>(
  rest: KubeRest,
  path: string,
  body: object,
  fieldManager = OPERATOR_FIELD_MANAGER,
): Promise<ApiResult<T>> {
  return rest.request<T>('PATCH', path, {
    body,
    contentType: APPLY_PATCH,
    query: { fieldManager, force: 'true' },
  });
}

interface InvolvedObject {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid?: string;
  resourceVersion?: string;
}

type EventType = 'Normal' | 'Warning';

export interface EventRecorder {
  event(obj: InvolvedObject, type: EventType, reason: string, message: string): Promise<void>;
}

export interface EventRateLimit {
  /** events per second on average */
  qps: number;
  burst: number;
}

/**
 * Writes core/v1 Events (what `kubectl describe` shows). Failures are reported to onError, never thrown. A token
 * bucket (default 20/s, burst 100) keeps a mass status change (100,000 TestRecipients becoming Ready) from flooding
 * the API server with Events; events over the limit are dropped and counted (onDrop).
 */
export function createEventRecorder(
  rest: KubeRest,
  component: string,
  now: () => Date,
  onError: (err: string) => void,
  limit: EventRateLimit = { qps: 20, burst: 100 },
  onDrop: () => void = () => undefined,
): EventRecorder {
  let seq = 0;
  let tokens = limit.burst;
  let last = now().getTime();
  return {
    async event(obj, type, reason, message) {
      const t = now();
      tokens = Math.min(limit.burst, tokens + ((t.getTime() - last) / 1000) * limit.qps);
      last = t.getTime();
      if (tokens < 1) {
        onDrop();
        return;
      }
      tokens -= 1;
      const ts = t.toISOString().replace(/\.\d{3}Z$/, 'Z');
      const body = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: {
          name: `${obj.name}.${t.getTime().toString(16)}${(seq++ % 4096).toString(16)}`,
          namespace: obj.namespace,
        },
        involvedObject: obj,
        reason,
        message: message.slice(0, 1024),
        type,
        source: { component },
        reportingComponent: component,
        reportingInstance: component,
        firstTimestamp: ts,
        lastTimestamp: ts,
        count: 1,
      };
      const r = await rest.request('POST', `/api/v1/namespaces/${obj.namespace}/events`, { body });
      if (!r.ok) onError(`event ${reason} for ${obj.kind}/${obj.name}: ${r.status} ${r.message}`);
    },
  };
}
