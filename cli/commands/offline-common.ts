// Small helpers shared by the offline commands (check, render, route): flag parsing errors without stack traces.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DEFAULT_MANIFEST_LIMITS, parseBytes, type ManifestLimits } from '../../lib/manifests.ts';

type Parsed<T extends ParseArgsConfig['options']> = ReturnType<
  typeof parseArgs<{ options: T; allowPositionals: false; strict: true }>
>;

export class UsageError extends Error {}

export function parseFlags<T extends ParseArgsConfig['options']>(
  argv: string[],
  options: T,
  command: string,
): Parsed<T> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false, strict: true });
  } catch (err) {
    throw new UsageError(`mailroute ${command}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Runs a command body; usage errors exit 2, other errors exit `errorCode` (1; 2 for the commands whose 1 is an
 * answer, like diff's "changes") with one line (no stack trace).
 */
export async function guard(
  command: string,
  usage: string,
  body: () => Promise<number>,
  errorCode = 1,
): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n${usage}`);
      return 2;
    }
    process.stderr.write(`mailroute ${command}: ${err instanceof Error ? err.message : String(err)}\n`);
    return errorCode;
  }
}

export const fileFlag = {
  f: { type: 'string', short: 'f', multiple: true },
  filename: { type: 'string', multiple: true },
} as const;

export function filesFrom(
  values: { f?: string[] | undefined; filename?: string[] | undefined },
  command: string,
): string[] {
  const files = [...(values.f ?? []), ...(values.filename ?? [])];
  if (files.length === 0) throw new UsageError(`mailroute ${command}: -f PATH is required`);
  return files;
}

/** --max-manifest-size and --max-manifests-total: the input bounds (lib/manifests.ts ManifestLimits). */
export const limitFlags = {
  'max-manifest-size': { type: 'string' },
  'max-manifests-total': { type: 'string' },
} as const;

export function limitsFrom(
  values: { 'max-manifest-size'?: string | undefined; 'max-manifests-total'?: string | undefined },
  command: string,
): ManifestLimits {
  const get = (flag: 'max-manifest-size' | 'max-manifests-total', def: number): number => {
    const raw = values[flag];
    if (raw === undefined) return def;
    const n = parseBytes(raw);
    if (n === undefined)
      throw new UsageError(
        `mailroute ${command}: --${flag}: expected a size like 4MiB or 65536, got ${JSON.stringify(raw)}`,
      );
    return n;
  };
  return {
    maxFileBytes: get('max-manifest-size', DEFAULT_MANIFEST_LIMITS.maxFileBytes),
    maxTotalBytes: get('max-manifests-total', DEFAULT_MANIFEST_LIMITS.maxTotalBytes),
  };
}
