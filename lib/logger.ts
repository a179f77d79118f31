// The relay's and the operator's logger: pino, one line per event, in one of two formats (--log-format,
// MAILROUTE_LOG_FORMAT):
//   json   (default; what the chart runs): {"level":"info","time":"2026-12-02T12:00:00.000Z",...,"msg":"..."}
//   pretty (a terminal): 2026-12-02T12:00:00.000Z INFO  relay: relay started smtp=0.0.0.0:2525 http=...
// Both use ISO times and level names (not pino's epoch milliseconds and numbers).
import { writeSync } from 'node:fs';
import { pino, type Logger } from 'pino';

const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export function isLogFormat(v: string): v is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(v);
}

export interface LoggerOptions {
  level: string;
  format: LogFormat;
  base: Record<string, unknown>;
  /** Where pretty lines go (default: stdout, written synchronously like pino's own destination). */
  write?: (line: string) => void;
}

export function createLogger(o: LoggerOptions): Logger {
  const opts = {
    level: o.level,
    base: o.base,
    timestamp: isoTimeCached(),
    formatters: { level: (label: string) => ({ level: label }) },
  };
  switch (o.format) {
    case 'json':
      return o.write === undefined ? pino(opts) : pino(opts, { write: o.write });
    case 'pretty': {
      const write = o.write ?? ((line: string) => void writeSync(1, line));
      return pino(opts, { write: (json: string) => write(prettyLine(json)) });
    }
  }
}

/**
 * pino's `stdTimeFunctions.isoTime` (`,"time":"2026-12-02T12:00:00.000Z"`), with everything but the milliseconds
 * formatted once a second instead of once a line (a `Date` and `toISOString` per line were a tenth of the logging).
 */
export function isoTimeCached(now: () => number = () => Date.now()): () => string {
  let second = Number.NaN;
  let head = '';
  return () => {
    const ms = now();
    const s = Math.floor(ms / 1000);
    if (s !== second) {
      second = s;
      head = `,"time":"${new Date(s * 1000).toISOString().slice(0, -4)}`; // up to and with the '.' of ".000Z"
    }
    return `${head}${String(ms - s * 1000).padStart(3, '0')}Z"`;
  };
}

const FIRST = new Set(['level', 'time', 'msg', 'component']);

function show(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
  if (v !== null && typeof v === 'object' && 'message' in v && typeof v.message === 'string')
    return show(v.message);
  return JSON.stringify(v);
}

/** One JSON log line as `TIME LEVEL component: msg key=value ...` (newline-terminated); not JSON: unchanged. */
export function prettyLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const text = (v: unknown): string => (v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));
  const component = o.component === undefined ? '' : `${text(o.component)}: `;
  const head = `${text(o.time)} ${text(o.level).toUpperCase().padEnd(5)} ${component}${text(o.msg)}`;
  const rest = Object.entries(o)
    .filter(([k]) => !FIRST.has(k))
    .map(([k, v]) => `${k}=${show(v)}`);
  return `${[head, ...rest].join(' ')}\n`;
}
