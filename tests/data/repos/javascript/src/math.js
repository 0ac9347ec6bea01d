/** Clamp x into [lo, hi]. */
export function clamp(x, lo, hi) {
  return Math.min(hi, Math.max(lo, x));
}

export const lerp = (a, b, t) => a + (b - a) * t;
