// Small helpers shared by the offline commands (check, render, route): flag parsing errors without stack traces.
import { parseArgs, type ParseArgsConfig } from 'node:util';

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

/** Runs a command body; usage errors exit 2, unexpected errors exit 1 with one line (no stack trace). */
export async function guard(command: string, usage: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n${usage}`);
      return 2;
    }
    process.stderr.write(`mailroute ${command}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
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
