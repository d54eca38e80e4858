/**
 * Plain-text rendering for the CLI's human output: aligned tables and a progress bar. No color,
 * so the output reads the same with `NO_COLOR` and in logs.
 *
 * @module
 */

/** Width of {@linkcode progressBar}'s bar, in characters between the brackets. */
export const PROGRESS_BAR_WIDTH = 30;

/** `rows` under `header`, each column padded to its widest cell, two spaces apart. */
export function formatTable(header: readonly string[], rows: readonly string[][]): string[] {
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => (row[i] ?? "").length))
  );
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) => i === cells.length - 1 ? cell : cell.padEnd(widths[i])).join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** A bar like `[##########--------------------]` for `done` of `total`. */
export function progressBar(done: number, total: number): string {
  const filled = total <= 0
    ? PROGRESS_BAR_WIDTH
    : Math.round(PROGRESS_BAR_WIDTH * Math.min(1, Math.max(0, done / total)));
  return `[${"#".repeat(filled)}${"-".repeat(PROGRESS_BAR_WIDTH - filled)}]`;
}
