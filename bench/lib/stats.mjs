/** The q-quantile (0..1) of a list of numbers, linearly interpolated. */
export function quantile(values, q) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  const lowValue = sorted[low];
  return lowValue + (sorted[high] - lowValue) * (position - low);
}

export const median = (values) => quantile(values, 0.5);

/** `1.07×`, with two decimals (three below 0.1). */
export function formatRatio(value) {
  if (!Number.isFinite(value)) return "n/a";
  return `${value < 0.1 ? value.toFixed(3) : value.toFixed(2)}×`;
}

/** `12,345` */
export function formatInteger(value) {
  return Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "n/a";
}
