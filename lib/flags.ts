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

/** Where a flag's value came from: the command line, its MAILROUTE_<FLAG> variable, or the table's default. */
type FlagOrigin = 'argv' | 'env' | 'default';

export type ReadFlags<T extends FlagTable> =
  | {
      ok: true;
      help: boolean;
      get: (flag: keyof T & string) => string | undefined;
      /** So that an error about a bad value names what the admin set: `--listen` or `MAILROUTE_LISTEN`. */
      origin: (flag: keyof T & string) => FlagOrigin;
      /** `--listen`, or `MAILROUTE_LISTEN` when the value came from the environment: the name for an error. */
      nameOf: (flag: keyof T & string) => string;
    }
  | { ok: false; error: string };

/**
 * Parses argv against the table (unknown flags and positionals are errors); get() is flag, else env, else default.
 */
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
  const origin = (flag: keyof T & string): FlagOrigin => {
    if (typeof values[flag] === 'string') return 'argv';
    const e = env[envName(flag)];
    return e !== undefined && e !== '' ? 'env' : 'default';
  };
  const get = (flag: keyof T & string): string | undefined => {
    const from = origin(flag);
    if (from === 'argv') return values[flag] as string;
    if (from === 'env') return env[envName(flag)];
    return table[flag]?.default;
  };
  const nameOf = (flag: keyof T & string): string => (origin(flag) === 'env' ? envName(flag) : `--${flag}`);
  return { ok: true, help: values.help === true, get, origin, nameOf };
}

/**
 * The --help text: the usage line, then one row per flag with its default. The names are padded to the longest
 * (a fixed 24 columns ran --max-unknown-recipients-per-ip into its description), with at least two spaces after.
 */
export function flagUsage(usage: string, table: FlagTable): string {
  const entries = Object.entries(table).filter(([name]) => name !== 'help');
  const width = Math.max(24, ...entries.map(([name]) => name.length + 2));
  const rows = entries.map(([name, spec]) => {
    const def = spec.default !== undefined ? ` (default ${spec.default})` : '';
    return `  --${name.padEnd(width)}${spec.help}${def}`;
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
