/**
 * Benchmark results: the JSON records of bench/results/latest.json and their
 * rendering as a terminal table and as the table in docs/benchmarks.md.
 */
import Table from 'cli-table3';

/** One figure. `ratio` = value / baseline.value (lower is better). */
export interface BenchResult {
  readonly id: string;
  readonly metric: string;
  readonly value: number;
  readonly unit: string;
  readonly baseline?: { readonly name: string; readonly value: number };
  readonly ratio?: number;
  /** The goal, e.g. `ratio <= 1.0` or `value <= 1048576`, when there is one. */
  readonly goal?: string;
  /** Whether the goal is met. */
  readonly met?: boolean;
  /** What else the reader should know (work done, checksums matched, ...). */
  readonly note?: string;
}

export interface Goal {
  readonly on: 'ratio' | 'value';
  readonly max: number;
}

/**
 * Builds a result, computing the ratio (unless `pairedRatio` gives it: the
 * median of per-round ratios of interleaved rounds) and checking the goal.
 */
export function result(fields: Omit<BenchResult, 'ratio' | 'met' | 'goal'> & { readonly target?: Goal; readonly pairedRatio?: number }): BenchResult {
  const { target, pairedRatio, ...rest } = fields;
  const ratio = pairedRatio ?? (rest.baseline && rest.baseline.value > 0 ? rest.value / rest.baseline.value : undefined);
  const measured = target?.on === 'ratio' ? ratio : rest.value;
  return {
    ...rest,
    ...(ratio !== undefined ? { ratio: round(ratio, 4) } : {}),
    ...(target ? { goal: `${target.on} <= ${target.max}`, met: measured !== undefined && measured <= target.max } : {}),
  };
}

/** The median (the upper one of an even count); 0 for no values. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function fmt(value: number, unit: string): string {
  if (unit === 'bytes') {
    if (value >= 1 << 20) return `${round(value / (1 << 20), 2)} MiB`;
    if (value >= 1 << 10) return `${round(value / (1 << 10), 1)} KiB`;
    return `${value} B`;
  }
  return `${value >= 100 ? round(value, 1) : round(value, 3)} ${unit}`;
}

/** The terminal table. */
export function toTable(results: readonly BenchResult[]): string {
  const table = new Table({ head: ['id', 'metric', 'ours', 'baseline', 'ratio', 'goal', ''] });
  for (const r of results) {
    table.push([
      r.id,
      r.metric,
      fmt(r.value, r.unit),
      r.baseline ? `${fmt(r.baseline.value, r.unit)} (${r.baseline.name})` : '',
      r.ratio !== undefined ? String(round(r.ratio, 3)) : '',
      r.goal ?? '',
      r.met === undefined ? '' : r.met ? 'met' : 'NOT MET',
    ]);
  }
  return table.toString();
}

/** The Markdown table for docs/benchmarks.md. */
export function toMarkdown(results: readonly BenchResult[]): string {
  const lines = ['| id | metric | ours | baseline | ratio | goal | met |', '|---|---|---|---|---|---|---|'];
  for (const r of results) {
    lines.push(`| \`${r.id}\` | ${r.metric} | ${fmt(r.value, r.unit)} | ${r.baseline ? `${fmt(r.baseline.value, r.unit)} (${r.baseline.name})` : ''} | `
      + `${r.ratio !== undefined ? round(r.ratio, 3) : ''} | ${r.goal ?? ''} | ${r.met === undefined ? '' : r.met ? 'yes' : '**no**'} |`);
  }
  return lines.join('\n');
}
