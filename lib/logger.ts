// The relay's and the operator's logger: pino, one line per event, in one of two formats (--log-format,
// MAILROUTE_LOG_FORMAT):
//   json   (default; what the chart runs): {"level":"info","time":"2026-12-02T12:00:00.000Z",...,"msg":"..."}
//   pretty (a terminal): 2026-12-02T12:00:00.000Z INFO  relay: relay started smtp=0.0.0.0:2525 http=...
// Both use ISO times and level names (not pino's epoch milliseconds and numbers).
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
  /**
   * Where lines go, each as it is logged (tests). Default: stdout, the lines of one turn of the event loop in one
   * write (stdoutLines).
   */
  write?: (line: string) => void;
}

export function createLogger(o: LoggerOptions): Logger {
  const opts = {
    level: o.level,
    base: o.base,
    timestamp: isoTimeCached(),
    formatters: { level: (label: string) => ({ level: label }) },
  };
  const write = o.write ?? stdoutLines().write;
  switch (o.format) {
    case 'json':
      return pino(opts, { write });
    case 'pretty':
      return pino(opts, { write: (json: string) => write(prettyLine(json)) });
  }
}

export interface LineBatcher {
  write: (line: string) => void;
  /** Writes what is pending now. */
  flush: () => void;
}

/** POSIX's PIPE_BUF on Linux: a write to a pipe up to this size is not interleaved with other writers' writes. */
export const ATOMIC_WRITE_BYTES = 4096;

/**
 * Collects lines and hands them to `out` in chunks: at the end of the event loop's turn (`schedule`, setImmediate),
 * before a line that would take the pending bytes past `maxBytes`, and on flush(). Order is kept, and a chunk is never
 * longer than `maxBytes` unless it is a single line, so the lines of `--workers` processes sharing one pipe do not
 * interleave (a write of up to PIPE_BUF bytes is atomic, as each line's own write was).
 * A line costs a string append instead of a system call: the relay logs one line per accepted message and one per
 * delivery leg, so a message to 10 recipients was 22 writes to stdout (in a pod a pipe to the container runtime, whose
 * reader each write wakes).
 */
export function lineBatcher(
  out: (chunk: string) => void,
  o: { schedule?: (fn: () => void) => void; maxBytes?: number } = {},
): LineBatcher {
  const schedule = o.schedule ?? ((fn: () => void) => void setImmediate(fn));
  const maxBytes = o.maxBytes ?? ATOMIC_WRITE_BYTES;
  let pending = '';
  let pendingBytes = 0;
  let scheduled = false;
  const flush = (): void => {
    if (pending === '') return;
    const chunk = pending;
    pending = '';
    pendingBytes = 0;
    out(chunk);
  };
  const onTurnEnd = (): void => {
    scheduled = false;
    flush();
  };
  const write = (line: string): void => {
    const bytes = Buffer.byteLength(line);
    if (pendingBytes + bytes > maxBytes) flush();
    pending += line;
    pendingBytes += bytes;
    if (!scheduled) {
      scheduled = true;
      schedule(onTurnEnd);
    }
  };
  return { write, flush };
}

let stdout: LineBatcher | undefined;

/**
 * The process's one batcher for stdout, shared by its loggers so their lines stay in order. It writes through pino's
 * synchronous destination (which retries EAGAIN, finishes partial writes and ignores a closed pipe), and what is
 * pending when the process exits is written then. What a SIGKILL can lose is the current turn's lines.
 */
function stdoutLines(): LineBatcher {
  if (stdout === undefined) {
    const dest = pino.destination({ dest: 1, sync: true });
    const b = lineBatcher((chunk) => void dest.write(chunk));
    process.on('exit', b.flush);
    stdout = b;
  }
  return stdout;
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
