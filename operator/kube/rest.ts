// A small REST client over the KubeConfig's TLS/auth settings, for the calls the generated client makes awkward:
// server-side apply (application/apply-patch+yaml), the status subresource, compare-and-swap updates.
// Expected API failures are a typed result (ApiResult), never an exception; network errors are results too.

import { Agent, request, type RequestOptions } from 'node:https';
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';

export type ApiResult<T> =
  | { ok: true; status: number; body: T }
  | { ok: false; status: number; reason: string; message: string; body?: unknown };

interface RequestOpts {
  body?: unknown;
  contentType?: string;
  query?: Record<string, string>;
  timeoutMs?: number;
  accept?: string;
}

export const PARTIAL_METADATA_LIST = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';

export interface KubeRest {
  request<T>(method: string, path: string, opts?: RequestOpts): Promise<ApiResult<T>>;
}

export const APPLY_PATCH = 'application/apply-patch+yaml';
export const MERGE_PATCH = 'application/merge-patch+json';

export function createKubeRest(kc: KubeConfig): KubeRest {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new Error('kubeconfig: no current cluster');
  const base = new URL(cluster.server);
  const secure = base.protocol === 'https:';
  const agent = secure
    ? new Agent({ keepAlive: true, maxSockets: 16 })
    : new HttpAgent({ keepAlive: true, maxSockets: 16 });
  return {
    async request<T>(method: string, path: string, opts: RequestOpts = {}): Promise<ApiResult<T>> {
      const url = new URL(base.pathname.replace(/\/$/, '') + path, base);
      for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
      const ro: RequestOptions = { method, headers: { Accept: opts.accept ?? 'application/json' }, agent };
      await kc.applyToHTTPSOptions(ro);
      ro.agent = agent;
      const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
      const headers = (ro.headers ?? {}) as Record<string, string>;
      if (payload !== undefined) {
        headers['Content-Type'] = opts.contentType ?? 'application/json';
        headers['Content-Length'] = String(Buffer.byteLength(payload));
      }
      ro.headers = headers;
      const send = secure ? request : httpRequest;
      return new Promise<ApiResult<T>>((resolve) => {
        const req = send(url, ro, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) =>
            resolve({ ok: false, status: 0, reason: 'NetworkError', message: err.message }),
          );
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            let body: unknown = text;
            try {
              body = text === '' ? undefined : JSON.parse(text);
            } catch {
              // keep text
            }
            if (status >= 200 && status < 300) resolve({ ok: true, status, body: body as T });
            else {
              const st = body as { reason?: string; message?: string } | undefined;
              resolve({
                ok: false,
                status,
                reason: st?.reason ?? `HTTP${status}`,
                message: st?.message ?? text.slice(0, 500),
                body,
              });
            }
          });
        });
        req.setTimeout(opts.timeoutMs ?? 15_000, () =>
          req.destroy(new Error(`timeout after ${opts.timeoutMs ?? 15_000} ms`)),
        );
        req.on('error', (err) =>
          resolve({ ok: false, status: 0, reason: 'NetworkError', message: err.message }),
        );
        req.end(payload);
      });
    },
  };
}

export function describeFailure(r: { status: number; reason: string; message: string }): string {
  return `${r.status} ${r.reason}: ${r.message}`;
}
