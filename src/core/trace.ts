/**
 * Trace points in QEMU's style.
 *
 * A trace point is declared once, the way QEMU's trace-events files declare
 * it: a name, C parameter declarations and a format string written with
 * QEMU's string-literal syntax, e.g.
 *
 *   ram_block_attributes_state_change(uint64_t offset, uint64_t size,
 *       const char *from, const char *to)
 *       "offset 0x%"PRIx64" size 0x%"PRIx64" from '%s' to '%s'"
 *
 * From that one declaration guestmem both prints a record exactly as QEMU's
 * log backend does and parses QEMU's log lines back into records, so a trace
 * from either side reads the same.
 *
 * Emitting costs one boolean test while a point is disabled.
 */
import { InvalidArgumentError, TraceParseError } from './errors.js';
import { toDisposable, type Disposable } from './event.js';

/** A value carried by a trace record. Integers above 2^53 are bigints. */
export type TraceArg = number | bigint | string | boolean;

/** One emitted (or parsed) trace event. */
export interface TraceRecord {
  /** The trace point's name. */
  readonly name: string;
  /** Its arguments, in declaration order. */
  readonly args: readonly TraceArg[];
  /** Wall-clock time in milliseconds since the epoch (fractional: microseconds). */
  readonly time: number;
  /** Thread id from a parsed log line, when it had one. */
  readonly tid?: number;
}

/** A C parameter of a trace point, e.g. `{ type: 'uint64_t', name: 'offset' }`. */
export interface TraceParam {
  /** The C type as declared, e.g. `uint64_t` or `const char *`. */
  readonly type: string;
  /** The parameter name. */
  readonly name: string;
}

/** Receives the records of enabled trace points. Must not throw (see {@link TraceRegistry.subscribe}). */
export type TraceSink = (record: TraceRecord) => void;

// --- printf subset ----------------------------------------------------------

type Piece =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'conv'; readonly flags: string; readonly width: number; readonly conv: string };

const CONVERSION = /%([-+ #0]*)(\d*)(?:hh|h|ll|l|z|j|t)?([diuxXpsc%])/g;

/** Splits a C format string into literal text and conversions. */
function compileFormat(format: string): Piece[] {
  const pieces: Piece[] = [];
  let last = 0;
  for (const m of format.matchAll(CONVERSION)) {
    const at = m.index;
    if (at > last) pieces.push({ kind: 'text', text: format.slice(last, at) });
    const conv = m[3] ?? '';
    if (conv === '%') pieces.push({ kind: 'text', text: '%' });
    else pieces.push({ kind: 'conv', flags: m[1] ?? '', width: m[2] ? Number(m[2]) : 0, conv });
    last = at + m[0].length;
  }
  if (last < format.length) pieces.push({ kind: 'text', text: format.slice(last) });
  if (format.replace(CONVERSION, '').includes('%')) {
    throw new InvalidArgumentError(`unsupported conversion in format ${JSON.stringify(format)}`);
  }
  return pieces;
}

function formatValue(piece: Extract<Piece, { kind: 'conv' }>, value: TraceArg): string {
  let text: string;
  switch (piece.conv) {
    case 's':
      text = String(value);
      break;
    case 'c':
      text = typeof value === 'number' ? String.fromCharCode(value) : String(value);
      break;
    case 'x':
    case 'X':
    case 'p': {
      const n = typeof value === 'boolean' ? Number(value) : value;
      const raw = typeof n === 'string' ? n : BigInt.asUintN(64, BigInt(n)).toString(16);
      text = piece.conv === 'X' ? raw.toUpperCase() : raw;
      if (piece.conv === 'p') text = `0x${text}`;
      else if (piece.flags.includes('#') && raw !== '0') text = `0x${text}`;
      break;
    }
    default: // d i u
      text = typeof value === 'boolean' ? String(Number(value)) : String(value);
  }
  if (text.length < piece.width) {
    const pad = piece.flags.includes('0') && !piece.flags.includes('-') && piece.conv !== 's' ? '0' : ' ';
    text = piece.flags.includes('-') ? text.padEnd(piece.width, ' ') : text.padStart(piece.width, pad);
  }
  return text;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function valuePattern(conv: string): string {
  switch (conv) {
    case 'x':
    case 'X':
      return '([0-9a-fA-F]+)';
    case 'p':
      return '(0x[0-9a-fA-F]+|\\(nil\\))';
    case 'd':
    case 'i':
      return '(-?\\d+)';
    case 'u':
      return '(\\d+)';
    case 'c':
      return '([\\s\\S])';
    default:
      return '([\\s\\S]*?)';
  }
}

function parseValue(conv: string, text: string): TraceArg {
  if (conv === 's' || conv === 'c') return text;
  let n: bigint;
  if (conv === 'p') n = text === '(nil)' ? 0n : BigInt(text);
  else if (conv === 'x' || conv === 'X') n = BigInt(`0x${text}`);
  else n = BigInt(text);
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

/**
 * Expands QEMU's string-literal format syntax (`"0x%"PRIx64" size"`) into a
 * plain C format string (`0x%lx size`).
 */
export function expandFormat(literal: string): string {
  const macros: Record<string, string> = {
    PRIx64: 'lx', PRIX64: 'lX', PRIu64: 'lu', PRId64: 'ld', PRIi64: 'li',
    PRIx32: 'x', PRIX32: 'X', PRIu32: 'u', PRId32: 'd', PRIi32: 'i',
    PRIx16: 'x', PRIu16: 'u', PRIx8: 'x', PRIu8: 'u',
  };
  let out = '';
  const token = /\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z_][A-Za-z0-9_]*))/y;
  let at = 0;
  while (at < literal.length) {
    token.lastIndex = at;
    const m = token.exec(literal);
    if (!m) {
      if (literal.slice(at).trim() === '') break;
      throw new InvalidArgumentError(`bad trace format literal ${literal}`);
    }
    if (m[1] !== undefined) out += m[1].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
    else {
      const macro = macros[m[2] ?? ''];
      if (macro === undefined) throw new InvalidArgumentError(`unknown format macro ${m[2] ?? ''} in ${literal}`);
      out += macro;
    }
    at = token.lastIndex;
  }
  return out;
}

/** Parses `uint64_t offset, const char *from` into parameters. */
function parseParams(decl: string): TraceParam[] {
  if (decl.trim() === '' || decl.trim() === 'void') return [];
  return decl.split(',').map((p) => {
    const m = /^\s*(.*?[\s*])([A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(p);
    if (!m) throw new InvalidArgumentError(`bad trace parameter declaration "${p}"`);
    return { type: (m[1] ?? '').trim(), name: m[2] ?? '' };
  });
}

// --- trace points -----------------------------------------------------------

/** One declared trace point. `A` is the tuple of its argument types. */
export class TracePoint<A extends readonly TraceArg[] = readonly TraceArg[]> {
  /** The event name, e.g. `ram_block_attributes_state_change`. */
  readonly name: string;
  /** The declared C parameters. */
  readonly params: readonly TraceParam[];
  /** The format as declared, in QEMU's literal syntax. */
  readonly formatLiteral: string;
  /** The expanded C format string. */
  readonly format: string;
  /** Set by the registry; while false, {@link emit} does nothing. */
  enabled = false;
  private readonly pieces: Piece[];
  private readonly registry: TraceRegistry;
  private pattern: RegExp | undefined;

  /** @internal use {@link TraceRegistry.define}. */
  constructor(registry: TraceRegistry, name: string, params: string, formatLiteral: string) {
    this.registry = registry;
    this.name = name;
    this.params = parseParams(params);
    this.formatLiteral = formatLiteral;
    this.format = expandFormat(formatLiteral);
    this.pieces = compileFormat(this.format);
    const convs = this.pieces.filter((p) => p.kind === 'conv').length;
    if (convs !== this.params.length) {
      throw new InvalidArgumentError(`trace point ${name}: ${this.params.length} parameters but ${convs} conversions`);
    }
  }

  /** Records an event, if enabled. */
  emit(...args: A): void {
    if (this.enabled) this.registry.dispatch({ name: this.name, args, time: performance.timeOrigin + performance.now() });
  }

  /** The message part of a record: the format applied to its arguments. */
  formatArgs(args: readonly TraceArg[]): string {
    let out = '';
    let i = 0;
    for (const piece of this.pieces) {
      if (piece.kind === 'text') out += piece.text;
      else out += formatValue(piece, args[i++] ?? '');
    }
    return out;
  }

  /** Parses a message back into arguments, or returns undefined if it does not match. */
  parseArgs(message: string): TraceArg[] | undefined {
    this.pattern ??= new RegExp(
      `^${this.pieces.map((p) => (p.kind === 'text' ? escapeRegExp(p.text) : valuePattern(p.conv))).join('')}$`,
    );
    const m = this.pattern.exec(message);
    if (!m) return undefined;
    const convs = this.pieces.filter((p): p is Extract<Piece, { kind: 'conv' }> => p.kind === 'conv');
    return convs.map((p, i) => parseValue(p.conv, m[i + 1] ?? ''));
  }

  /** The declaration in QEMU trace-events syntax. */
  toTraceEvents(): string {
    const params = this.params.map((p) => `${p.type}${p.type.endsWith('*') ? '' : ' '}${p.name}`).join(', ');
    return `${this.name}(${params || 'void'}) ${this.formatLiteral}`;
  }
}

/**
 * The set of declared trace points, which ones are enabled, and where their
 * records go. guestmem has one ({@link trace}), as QEMU has one trace-events
 * namespace.
 */
export class TraceRegistry {
  private readonly points = new Map<string, TracePoint>();
  private sinks: TraceSink[] = [];
  private readonly failures: { readonly error: unknown; readonly record: TraceRecord }[] = [];

  /** Declares a trace point; names are unique. */
  define<A extends readonly TraceArg[]>(name: string, params: string, formatLiteral: string): TracePoint<A> {
    if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new InvalidArgumentError(`bad trace point name '${name}'`);
    if (this.points.has(name)) throw new InvalidArgumentError(`trace point '${name}' is already defined`);
    const point = new TracePoint<A>(this, name, params, formatLiteral);
    this.points.set(name, point);
    return point;
  }

  /** The point named `name`, if declared. */
  get(name: string): TracePoint | undefined {
    return this.points.get(name);
  }

  /** All declared points, in declaration order. */
  list(): TracePoint[] {
    return [...this.points.values()];
  }

  /**
   * Enables the points whose names match `pattern` (`*` matches any run of
   * characters, as in QEMU's `-trace` option). Returns how many matched.
   */
  enable(pattern: string): number {
    return this.setEnabled(pattern, true);
  }

  /** Disables the points whose names match `pattern`; returns how many matched. */
  disable(pattern: string): number {
    return this.setEnabled(pattern, false);
  }

  /**
   * Sends every record of an enabled point to `sink`. A sink that throws is
   * unsubscribed (it would otherwise throw into whatever emitted the record);
   * its error is kept for {@link takeSinkFailures}.
   */
  subscribe(sink: TraceSink): Disposable {
    this.sinks.push(sink);
    return toDisposable(() => {
      this.sinks = this.sinks.filter((s) => s !== sink);
    });
  }

  /** Errors of sinks that threw and were unsubscribed, oldest first; clears the list. */
  takeSinkFailures(): { readonly error: unknown; readonly record: TraceRecord }[] {
    return this.failures.splice(0);
  }

  /** @internal called by {@link TracePoint.emit}. */
  dispatch(record: TraceRecord): void {
    for (const sink of this.sinks.slice()) {
      try {
        sink(record);
      } catch (error) {
        this.sinks = this.sinks.filter((s) => s !== sink);
        this.failures.push({ error, record });
      }
    }
  }

  /** Formats a record's message (without the log-line prefix). */
  formatMessage(record: TraceRecord): string {
    const point = this.points.get(record.name);
    if (!point) throw new InvalidArgumentError(`unknown trace point '${record.name}'`);
    return point.formatArgs(record.args);
  }

  /**
   * Formats a record as QEMU's log backend prints it:
   * `<tid>@<seconds>.<microseconds>:<name> <message>` when `tid` is given,
   * `<name> <message>` otherwise.
   */
  formatLine(record: TraceRecord, tid?: number): string {
    const message = this.formatMessage(record);
    if (tid === undefined) return `${record.name} ${message}`;
    const micros = Math.round(record.time * 1000);
    const seconds = Math.floor(micros / 1e6);
    const fraction = String(micros - seconds * 1e6).padStart(6, '0');
    return `${tid}@${seconds}.${fraction}:${record.name} ${message}`;
  }

  /**
   * Parses one line of QEMU log-backend output. Returns `undefined` for a
   * line of an event this registry does not declare (QEMU logs many).
   *
   * @throws TraceParseError for a known event whose message does not match its
   *         format, or a malformed prefix.
   */
  parseLine(line: string, lineNumber = 0): TraceRecord | undefined {
    const m = /^(?:(\d+)@(\d+)\.(\d{6}):)?([A-Za-z_][A-Za-z0-9_]*) ?(.*)$/.exec(line.replace(/\r?\n$/, ''));
    if (!m) throw new TraceParseError(lineNumber, line, 'not a trace line');
    const point = this.points.get(m[4] ?? '');
    if (!point) return undefined;
    const args = point.parseArgs(m[5] ?? '');
    if (!args) throw new TraceParseError(lineNumber, line, `does not match the format of ${point.name}: ${point.format}`);
    const time = m[2] === undefined ? 0 : Number(m[2]) * 1000 + Number(m[3]) / 1000;
    return m[1] === undefined ? { name: point.name, args, time } : { name: point.name, args, time, tid: Number(m[1]) };
  }

  /** Every declaration, in QEMU trace-events syntax. */
  toTraceEvents(): string {
    return this.list().map((p) => p.toTraceEvents()).join('\n') + '\n';
  }

  private setEnabled(pattern: string, on: boolean): number {
    const re = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`);
    let n = 0;
    for (const point of this.points.values()) {
      if (re.test(point.name)) {
        point.enabled = on;
        n++;
      }
    }
    return n;
  }
}

/** guestmem's trace points (declared in trace-events.ts). */
export const trace = new TraceRegistry();
