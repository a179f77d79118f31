// The command-line flags of `mailroute relay` and `mailroute operator`: one table per command (name -> type,
// default, help), each flag also read from the environment variable MAILROUTE_<FLAG> (a flag wins; an empty
// variable counts as unset), one usage printer, and the duration parser every command uses.
import { parseArgs } from 'node:util';

export interface FlagSpec {
  type: 'string' | 'boolean';
  default?: string;
  help: string;
}

export type FlagTable = Readonly<Record<string, FlagSpec>>;

/** --max-message-size -> MAILROUTE_MAX_MESSAGE_SIZE */
export function envName(flag: string): string {
  return `MAILROUTE_${flag.toUpperCase().replaceAll('-', '_')}`;
}

export type ReadFlags<T extends FlagTable> =
  | { ok: true; help: boolean; get: (flag: keyof T & string) => string | undefined }
  | { ok: false; error: string };

/** Parses argv against the table (unknown flags and positionals are errors); get() is flag, else env, else default. */
export function readFlags<T extends FlagTable>(
  table: T,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ReadFlags<T> {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries(Object.entries(table).map(([k, f]) => [k, { type: f.type }]));
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  const get = (flag: keyof T & string): string | undefined => {
    const v = values[flag];
    if (typeof v === 'string') return v;
    const e = env[envName(flag)];
    if (e !== undefined && e !== '') return e;
    return table[flag]?.default;
  };
  return { ok: true, help: values.help === true, get };
}

/** The --help text: the usage line, then one row per flag with its default. */
export function flagUsage(usage: string, table: FlagTable): string {
  const rows = Object.entries(table)
    .filter(([name]) => name !== 'help')
    .map(([name, spec]) => {
      const def = spec.default !== undefined ? ` (default ${spec.default})` : '';
      return `  --${name.padEnd(24)}${spec.help}${def}`;
    });
  return `${usage}\n\nflags (each also read from MAILROUTE_<FLAG>):\n${rows.join('\n')}\n`;
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** "1500ms", "30s", "1.5m", "1h", "5d" -> milliseconds (rounded); a bare number is seconds; undefined: no duration. */
export function parseDuration(value: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m?.[1]) return undefined;
  const n = Number(m[1]) * (DURATION_UNITS[m[2] ?? 's'] ?? 1000);
  return Number.isFinite(n) ? Math.round(n) : undefined;
}
